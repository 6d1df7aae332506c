-- Sluice schema, version 5: fleet status shared by every control-plane replica.
--
-- Each replica keeps its own Envoys' status in memory (xds/registry.ts) and
-- writes it here in batches (control-plane/src/store/fleet-status.ts), so that
-- /v1/fleet and `?wait=applied` on any replica see the whole fleet. A replica
-- holds a lease it renews with a heartbeat; when a replica dies, the others
-- mark its nodes disconnected once its lease has expired (judged by Postgres'
-- clock, so replicas' clocks need not agree).

CREATE TABLE fleet_replicas (
  replica_id       text PRIMARY KEY,
  started_at       timestamptz NOT NULL DEFAULT now(),
  lease_expires_at timestamptz NOT NULL
);

CREATE TABLE fleet_nodes (
  replica_id      text NOT NULL REFERENCES fleet_replicas (replica_id) ON DELETE CASCADE,
  -- The ADS stream on that replica (unique per replica, not across replicas).
  stream_id       integer NOT NULL,
  node_id         text NOT NULL,
  node_group      text NOT NULL,
  protocol        text NOT NULL,
  connected_at    timestamptz NOT NULL,
  authenticated   boolean NOT NULL DEFAULT false,
  has_acked       boolean NOT NULL DEFAULT false,
  -- Per xDS type URL, the version_info this node last ACKed.
  acked           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(acked) = 'object'),
  synced_revision bigint,
  last_nack       jsonb,
  -- False once the owning replica's lease expired (its nodes are gone with it).
  connected       boolean NOT NULL DEFAULT true,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (replica_id, stream_id)
);

-- What /v1/fleet and `?wait=applied` read: the connected nodes.
CREATE INDEX fleet_nodes_connected_idx ON fleet_nodes (node_id) WHERE connected;
