-- Sluice schema, version 6: a stream that cannot keep up is reported across replicas.
--
-- Set by the owning replica while the node's ADS stream is behind (a push left
-- unanswered past the server's threshold, or writes that do not drain):
-- {"pendingSince": <ISO time of the oldest unanswered push>, "pendingTypes":
-- [<type URLs in flight>], "writeBacklog": <responses not yet written out>};
-- null while it keeps up (xds/registry.ts SlowMark, store/fleet-status.ts).
ALTER TABLE fleet_nodes ADD COLUMN slow jsonb CHECK (slow IS NULL OR jsonb_typeof(slow) = 'object');
