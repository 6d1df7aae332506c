-- Sluice schema, version 4: revisions as change sets, with retention.
--
-- Until now every revision row held the whole config (about 300 KB at 1,000
-- routes), so history grew by the config's size on every write. From here on a
-- row holds `changes`, what its commit changed (objects written and deleted,
-- credential keys set and dropped), and only every N revisions or M bytes of
-- change sets also the whole config in `snapshot` (a checkpoint). A revision
-- is rebuilt from the nearest checkpoint at or before it plus the change sets
-- after it (control-plane/src/store/revision-history.ts).
--
-- Existing rows keep their full snapshots and so become checkpoints as they
-- are: nothing is rewritten or lost. They have no change set (NULL), which is
-- fine: replay starts at a checkpoint and never needs one.

ALTER TABLE revisions ALTER COLUMN snapshot DROP NOT NULL;
ALTER TABLE revisions ADD COLUMN changes jsonb CHECK (changes IS NULL OR jsonb_typeof(changes) = 'object');
-- Every row can be read back: a checkpoint, a change set, or both.
ALTER TABLE revisions ADD CONSTRAINT revisions_payload_check CHECK (snapshot IS NOT NULL OR changes IS NOT NULL);

-- "The nearest checkpoint at or before n" is a backwards scan of this index.
CREATE INDEX revisions_checkpoint_idx ON revisions (id) WHERE snapshot IS NOT NULL;

-- Retention deletes old revisions; the audit log keeps its own, longer
-- retention, and revoked keys are kept for good, so neither may point at a
-- revision row by foreign key any more. Their `revision` columns stay, as the
-- number of the revision that made the change.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_revision_fkey;
ALTER TABLE revoked_api_keys DROP CONSTRAINT revoked_api_keys_revision_fkey;

-- Audit retention deletes by age.
CREATE INDEX audit_log_at_idx ON audit_log (at);
