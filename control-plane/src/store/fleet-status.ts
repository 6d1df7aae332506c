// Fleet status shared through Postgres (migrations/0005_fleet_nodes.sql), so
// that every control-plane replica sees every Envoy, not only its own.
//
// Writer: each replica copies its in-memory node registry into fleet_nodes in
// batches (at most one statement per flush interval, carrying only the streams
// that changed or went away), and renews a lease with a heartbeat. Told which
// stream changed, a flush reads only those streams: a thousand ACKs cost one
// statement with their rows, not a thousand listings of the fleet. The same
// heartbeat marks the nodes of replicas whose lease expired as disconnected:
// a replica that dies stops renewing, and Postgres' clock decides when.
// Reader: the connected nodes of the other replicas, and how many of them have
// not yet synced a revision (what `?wait=applied` waits for).
//
// Postgres away: flushes and heartbeats fail quietly and are retried; the
// local view keeps working (admin/fleet.ts reads the local registry first).
import { rawRows, type PrismaClient } from './prisma.ts';

/** One Envoy stream as the registry describes it (xds/registry.ts NodeStatus fits). */
export interface FleetNodeRecord {
  streamId: number;
  nodeId: string;
  group: string;
  protocol: string;
  connectedAt: string;
  authenticated?: boolean;
  acked: { [typeUrl: string]: string | undefined };
  syncedRevision?: number;
  lastNack?: { typeUrl: string; revision: number; message: string; at: string };
  hasAcked: boolean;
  /** Set while the stream is behind (xds/registry.ts SlowMark). */
  slow?: { pendingSince: string; pendingTypes: string[]; writeBacklog: number };
}

export interface RemoteFleetNode extends FleetNodeRecord {
  replicaId: string;
}

export interface FleetTimings {
  /** Changes are written at most this often (one statement each time). */
  flushMs: number;
  /** The lease is renewed this often. */
  heartbeatMs: number;
  /** A replica silent for this long has its nodes marked disconnected. */
  leaseMs: number;
}

export const DEFAULT_FLEET_TIMINGS: FleetTimings = { flushMs: 150, heartbeatMs: 1_000, leaseMs: 5_000 };

/** Disconnected rows and dead replicas are deleted after this long (bounds the tables). */
const FORGET_AFTER_MS = 60 * 60 * 1_000;

export interface FleetStatusWriterOptions {
  prisma: PrismaClient;
  replicaId: string;
  /** The local nodes now (called on a full rewrite, or per flush when `node` is not given). */
  nodes: () => FleetNodeRecord[];
  /** One local stream now, or undefined once it closed: lets a flush read only the streams `changed` named. */
  node?: (streamId: number) => FleetNodeRecord | undefined;
  timings?: Partial<FleetTimings>;
  log?: { warn(message: string, fields?: Record<string, unknown>): void };
}

/** Row shape sent to Postgres as one JSON array per flush. */
interface NodeRow {
  stream_id: number;
  node_id: string;
  node_group: string;
  protocol: string;
  connected_at: string;
  authenticated: boolean;
  has_acked: boolean;
  acked: FleetNodeRecord['acked'];
  synced_revision: number | null;
  last_nack: FleetNodeRecord['lastNack'] | null;
  slow: FleetNodeRecord['slow'] | null;
}

function nodeRow(node: FleetNodeRecord): NodeRow {
  return {
    stream_id: node.streamId,
    node_id: node.nodeId,
    node_group: node.group,
    protocol: node.protocol,
    connected_at: node.connectedAt,
    authenticated: node.authenticated === true,
    has_acked: node.hasAcked,
    acked: node.acked,
    synced_revision: node.syncedRevision ?? null,
    last_nack: node.lastNack ?? null,
    slow: node.slow ?? null,
  };
}

// Upserts the changed streams and deletes the closed ones in one statement.
const FLUSH_SQL = `
WITH incoming AS (
  SELECT * FROM jsonb_to_recordset($2::jsonb) AS x(
    stream_id integer, node_id text, node_group text, protocol text, connected_at timestamptz,
    authenticated boolean, has_acked boolean, acked jsonb, synced_revision bigint, last_nack jsonb, slow jsonb)
), closed AS (
  -- Streams that closed; on a full rewrite ($4), every row of ours not written now.
  DELETE FROM fleet_nodes WHERE replica_id = $1
     AND (stream_id = ANY($3::integer[]) OR ($4::boolean AND stream_id NOT IN (SELECT stream_id FROM incoming)))
)
INSERT INTO fleet_nodes (replica_id, stream_id, node_id, node_group, protocol, connected_at,
                         authenticated, has_acked, acked, synced_revision, last_nack, slow, connected, updated_at)
SELECT $1, stream_id, node_id, node_group, protocol, connected_at,
       authenticated, has_acked, acked, synced_revision, last_nack, slow, true, now()
  FROM incoming
ON CONFLICT (replica_id, stream_id) DO UPDATE SET
  node_id = EXCLUDED.node_id, node_group = EXCLUDED.node_group, protocol = EXCLUDED.protocol,
  connected_at = EXCLUDED.connected_at, authenticated = EXCLUDED.authenticated,
  has_acked = EXCLUDED.has_acked, acked = EXCLUDED.acked, synced_revision = EXCLUDED.synced_revision,
  last_nack = EXCLUDED.last_nack, slow = EXCLUDED.slow, connected = true, updated_at = now()`;

// Renews this replica's lease, marks the nodes of expired replicas
// disconnected, and forgets what has been gone for long.
const HEARTBEAT_SQL = `
WITH renewed AS (
  INSERT INTO fleet_replicas (replica_id, lease_expires_at)
  VALUES ($1, now() + make_interval(secs => $2::double precision / 1000))
  ON CONFLICT (replica_id) DO UPDATE SET lease_expires_at = EXCLUDED.lease_expires_at
  RETURNING replica_id
), expired AS (
  UPDATE fleet_nodes SET connected = false, updated_at = now()
   WHERE connected AND replica_id IN (SELECT replica_id FROM fleet_replicas WHERE lease_expires_at < now() AND replica_id <> $1)
), forgotten AS (
  DELETE FROM fleet_replicas WHERE lease_expires_at < now() - make_interval(secs => $3::double precision / 1000) AND replica_id <> $1
)
SELECT (SELECT count(*)::int FROM renewed) AS renewed,
       -- Our own rows marked disconnected: our lease lapsed (a long stall) while we were alive.
       (SELECT count(*)::int FROM fleet_nodes WHERE replica_id = $1 AND NOT connected) AS lost`;

export class FleetStatusWriter {
  private readonly timings: FleetTimings;
  /** What Postgres holds for each local stream (as JSON), to send only what changed. */
  private written = new Map<number, string>();
  private dirty = false;
  /** Streams changed since the last flush; `everything` when a change did not say which (then all are compared). */
  private dirtyStreams = new Set<number>();
  private everythingDirty = false;
  private flushTimer?: NodeJS.Timeout;
  private heartbeatTimer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private leaseHeld = false;
  /** The next flush writes every local stream and drops every other row of ours. */
  private fullRewrite = true;
  private writeFailing = false;
  private stopped = false;

  constructor(private readonly options: FleetStatusWriterOptions) {
    this.timings = { ...DEFAULT_FLEET_TIMINGS, ...options.timings };
  }

  get replicaId(): string {
    return this.options.replicaId;
  }

  /** Takes the lease (so rows have an owner) and starts the heartbeat. */
  async start(): Promise<void> {
    await this.renewLease();
    this.heartbeatTimer = setInterval(() => void this.renewLease(), this.timings.heartbeatMs);
    this.heartbeatTimer.unref();
    this.schedule();
  }

  /** The registry changed (for `streamId`, or anything): write within one flush interval (changes in between coalesce). */
  changed(streamId?: number): void {
    if (streamId === undefined || !this.options.node) this.everythingDirty = true;
    else this.dirtyStreams.add(streamId);
    this.schedule();
  }

  /** Flushes within one flush interval; a flush still running when the timer fires is waited for, then flushed again. */
  private schedule(): void {
    this.dirty = true;
    if (this.flushTimer || this.stopped) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      if (this.flushing) return void this.flushing.then(() => this.schedule());
      this.flushing = this.flush().finally(() => (this.flushing = undefined));
    }, this.timings.flushMs);
    this.flushTimer.unref();
  }

  /** Stops writing and removes this replica's rows (its nodes are no longer connected here). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.flushTimer);
    clearInterval(this.heartbeatTimer);
    await this.flushing;
    await this.options.prisma.fleetReplica.deleteMany({ where: { replicaId: this.options.replicaId } }).catch(() => undefined);
  }

  private async flush(): Promise<void> {
    if (!this.dirty || this.stopped || !this.leaseHeld) return;
    this.dirty = false;
    const full = this.fullRewrite;
    this.fullRewrite = false;
    const scanAll = full || this.everythingDirty;
    const streams = this.dirtyStreams;
    this.everythingDirty = false;
    this.dirtyStreams = new Set();
    const delta = scanAll ? this.diffAll(full) : this.diffSome(streams);
    if (delta.changed.length === 0 && delta.closed.length === 0 && !full) return;
    try {
      // Through the pool (rawRows): a flush follows every push's ACKs, while the fleet is still applying it.
      await rawRows(this.options.prisma, FLUSH_SQL, this.options.replicaId, JSON.stringify(delta.changed), delta.closed, full);
      if (full) this.written.clear();
      for (const [streamId, json] of delta.now) this.written.set(streamId, json);
      for (const streamId of delta.closed) this.written.delete(streamId);
      this.writeFailing = false;
    } catch (err) {
      this.fullRewrite ||= full;
      // Compare these again next time (what Postgres holds is unchanged).
      if (scanAll) this.everythingDirty = true;
      else for (const streamId of streams) this.dirtyStreams.add(streamId);
      if (!this.writeFailing) this.options.log?.warn('fleet status: write failed; retrying', { error: String(err) }); // once per outage
      this.writeFailing = true;
      this.schedule();
    }
  }

  /** Every local stream against what Postgres holds (or, on a full rewrite, against nothing). */
  private diffAll(full: boolean): FlushDelta {
    const now = new Map<number, string>();
    const changed: NodeRow[] = [];
    for (const node of this.options.nodes()) {
      const row = nodeRow(node);
      const json = JSON.stringify(row);
      now.set(node.streamId, json);
      if (full || this.written.get(node.streamId) !== json) changed.push(row);
    }
    const closed = [...this.written.keys()].filter((streamId) => !now.has(streamId));
    return { now, changed, closed };
  }

  /** Only the streams that changed: O(changed), whatever the fleet's size. */
  private diffSome(streams: Set<number>): FlushDelta {
    const now = new Map<number, string>();
    const changed: NodeRow[] = [];
    const closed: number[] = [];
    for (const streamId of streams) {
      const node = this.options.node!(streamId);
      if (!node) {
        if (this.written.has(streamId)) closed.push(streamId);
        continue;
      }
      const row = nodeRow(node);
      const json = JSON.stringify(row);
      now.set(streamId, json);
      if (this.written.get(streamId) !== json) changed.push(row);
    }
    return { now, changed, closed };
  }

  /** One heartbeat (the timer calls it): renew the lease, expire others', rewrite ours if it had lapsed. */
  async renewLease(): Promise<void> {
    if (this.stopped) return;
    try {
      const rows = await rawRows<{ lost: number }>(this.options.prisma, HEARTBEAT_SQL, this.options.replicaId, this.timings.leaseMs, FORGET_AFTER_MS);
      if (!this.leaseHeld || (rows[0]?.lost ?? 0) > 0) {
        // (Re)gained the lease: others may have marked our rows disconnected meanwhile, so write everything again.
        this.leaseHeld = true;
        this.fullRewrite = true;
        this.schedule();
      }
    } catch (err) {
      if (this.leaseHeld) this.options.log?.warn('fleet status: lease renewal failed', { error: String(err) });
      this.leaseHeld = false;
    }
  }
}

interface FlushDelta {
  /** What each compared stream looks like now (as written). */
  now: Map<number, string>;
  changed: NodeRow[];
  closed: number[];
}

/** The connected nodes of every other replica (each judged by its own replica). */
export async function remoteFleetNodes(prisma: PrismaClient, replicaId: string): Promise<RemoteFleetNode[]> {
  const rows = await prisma.fleetNode.findMany({
    where: { connected: true, replicaId: { not: replicaId } },
    orderBy: [{ nodeId: 'asc' }, { connectedAt: 'desc' }],
  });
  return rows.map((row) => ({
    replicaId: row.replicaId,
    streamId: row.streamId,
    nodeId: row.nodeId,
    group: row.nodeGroup,
    protocol: row.protocol,
    connectedAt: row.connectedAt.toISOString(),
    authenticated: row.authenticated,
    acked: ackedMap(row.acked),
    ...(row.syncedRevision === null ? {} : { syncedRevision: Number(row.syncedRevision) }),
    ...(isNack(row.lastNack) ? { lastNack: row.lastNack } : {}),
    hasAcked: row.hasAcked,
    ...(isSlow(row.slow) ? { slow: row.slow } : {}),
  }));
}

/**
 * How many connected nodes on other replicas count (authenticated or ACKed
 * once) and have not synced `revision`; nodes in `localNodeIds` are left out
 * (this replica judges them from its own registry).
 */
export async function remoteNodesBehind(prisma: PrismaClient, replicaId: string, revision: number, localNodeIds: string[]): Promise<number> {
  // Raw, and through the pool when there is one (rawRows): asked on every `?wait=applied` write.
  const sql = `SELECT count(*)::int AS behind FROM fleet_nodes
    WHERE connected AND replica_id <> $1 AND NOT (node_id = ANY($2::text[]))
      AND (authenticated OR has_acked) AND (synced_revision IS NULL OR synced_revision < $3)`;
  const [row] = await rawRows<{ behind: number }>(prisma, sql, replicaId, localNodeIds, BigInt(revision));
  return row?.behind ?? 0;
}

function ackedMap(value: unknown): FleetNodeRecord['acked'] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return {};
  const out: FleetNodeRecord['acked'] = {};
  for (const [type, version] of Object.entries(value)) if (typeof version === 'string') out[type] = version;
  return out;
}

function isSlow(value: unknown): value is NonNullable<FleetNodeRecord['slow']> {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.pendingSince === 'string' && typeof v.writeBacklog === 'number'
    && Array.isArray(v.pendingTypes) && v.pendingTypes.every((t) => typeof t === 'string');
}

function isNack(value: unknown): value is NonNullable<FleetNodeRecord['lastNack']> {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.typeUrl === 'string' && typeof v.revision === 'number' && typeof v.message === 'string' && typeof v.at === 'string';
}
