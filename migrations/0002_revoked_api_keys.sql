-- Sluice schema, version 2: API-key revocations that outlive the config.
--
-- A revision snapshot keeps the key hashes of its credentials, so that a
-- rollback restores the config exactly. Without this table, rolling back to a
-- revision from before a key was deleted (or replaced) would bring that key
-- back to life. A hash recorded here is revoked for good: the config store
-- writes a row in the same transaction as the change that drops the key, and
-- refuses to carry a revoked hash into any later revision (a rolled-back
-- credential comes back without a usable key; a new one must be issued).

CREATE TABLE revoked_api_keys (
  key_hash   text PRIMARY KEY,
  -- Name of the credential the key belonged to (for operators; not unique).
  credential text NOT NULL,
  -- The revision that dropped the key; NULL for revocations found by the backfill below.
  revision   bigint REFERENCES revisions (id),
  revoked_at timestamptz NOT NULL DEFAULT now()
);

-- Keys dropped before this table existed: every hash some revision held that
-- no live credential holds now.
INSERT INTO revoked_api_keys (key_hash, credential)
SELECT key.value ->> 'hash', key.key
  FROM revisions, jsonb_each(CASE jsonb_typeof(snapshot -> 'credential_keys') WHEN 'object' THEN snapshot -> 'credential_keys' ELSE '{}'::jsonb END) AS key
 WHERE key.value ->> 'hash' IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM credentials WHERE credentials.key_hash = key.value ->> 'hash')
ON CONFLICT (key_hash) DO NOTHING;
