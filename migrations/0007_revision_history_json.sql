-- Sluice schema, version 7: revision history stored as json, not jsonb.
--
-- A revision's change set and its checkpoint are written once and read back
-- whole (as text, parsed by the store through the model's schema:
-- control-plane/src/store/revision-history.ts); nothing queries inside them.
-- jsonb made Postgres parse each into its binary form on every write: at a
-- 10,000-route apply that is ~3 MB parsed twice (the change set in the commit,
-- the checkpoint just after it), ~80 ms of Postgres CPU each. json only checks
-- the text is valid JSON (about a fifth of that) and keeps it verbatim, so the
-- change set's size counted at commit is the size every replica reads back.
--
-- Existing rows convert as they are (jsonb's text is valid json). Readers parse
-- both through the schema, so a converted row reads back as it did.

-- The change set's jsonb_typeof check (named by Postgres in 0004) cannot take json.
ALTER TABLE revisions DROP CONSTRAINT revisions_changes_check;
ALTER TABLE revisions ALTER COLUMN snapshot TYPE json USING snapshot::json;
ALTER TABLE revisions ALTER COLUMN changes TYPE json USING changes::json;
-- json_typeof reads only the first token: the check costs nothing per byte.
ALTER TABLE revisions ADD CONSTRAINT revisions_changes_check CHECK (changes IS NULL OR json_typeof(changes) = 'object');
