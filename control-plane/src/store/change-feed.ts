// The change feed: Postgres LISTEN on `sluice_revision`, fed by the trigger on
// the revisions table. Every control-plane replica listens, so a write on any
// of them reaches all. After a lost connection the feed reconnects (jittered
// exponential backoff) and reports the newest revision once, since
// notifications sent meanwhile are gone.
//
// A LISTEN connection is idle by nature, so a connection that died without a
// FIN or RST (a NAT or firewall dropping state, a host gone) would otherwise go
// unnoticed for hours and the replica would silently stop hearing changes.
// Two guards: TCP keepalive on the socket, and a heartbeat query whose answer
// must come back within a timeout; either failing counts as a lost connection.
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from './backoff.ts';

export const REVISION_CHANNEL = 'sluice_revision';

/** application_name of the feed's connection (visible in pg_stat_activity). */
export const FEED_APPLICATION_NAME = 'sluice-change-feed';

export interface ChangeFeedEvents {
  /** A revision was committed (or, after a reconnect, the newest one). */
  revision: [revision: number];
  /** The connection state changed. */
  connected: [connected: boolean];
}

export interface ChangeFeedOptions {
  /** Reconnect delays. */
  backoff?: BackoffPolicy;
  /** How often the heartbeat query runs on the LISTEN connection, in ms. */
  heartbeatMs?: number;
  /** How long a heartbeat (and a connection attempt) may take before the connection counts as lost, in ms. */
  timeoutMs?: number;
  /** Idle time before the first TCP keepalive probe, in ms. */
  keepAliveDelayMs?: number;
}

export class ChangeFeed extends EventEmitter<ChangeFeedEvents> {
  private client?: pg.Client;
  private stopped = false;
  private retryTimer?: NodeJS.Timeout;
  private heartbeatTimer?: NodeJS.Timeout;
  /** Failed connection attempts since the last success (drives the backoff). */
  private failures = 0;
  private readonly backoff: BackoffPolicy;
  private readonly heartbeatMs: number;
  private readonly timeoutMs: number;
  private readonly keepAliveDelayMs: number;
  connected = false;

  constructor(private readonly databaseUrl: string, options: ChangeFeedOptions = {}) {
    super();
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.heartbeatMs = options.heartbeatMs ?? 5_000;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.keepAliveDelayMs = options.keepAliveDelayMs ?? 10_000;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeatTimer);
    const client = this.client;
    this.client = undefined;
    this.setConnected(false);
    // Bounded: on a half-open socket the goodbye may never be answered.
    if (client) await withTimeout(client.end(), this.timeoutMs).catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.databaseUrl,
      application_name: FEED_APPLICATION_NAME,
      keepAlive: true,
      keepAliveInitialDelayMillis: this.keepAliveDelayMs,
      connectionTimeoutMillis: this.timeoutMs,
    });
    client.on('error', () => this.lost(client));
    client.on('end', () => this.lost(client));
    client.on('notification', (message) => {
      const revision = Number(message.payload);
      if (message.channel === REVISION_CHANNEL && Number.isSafeInteger(revision)) this.emit('revision', revision);
    });
    try {
      await client.connect();
      await withTimeout(client.query(`LISTEN ${REVISION_CHANNEL}`), this.timeoutMs);
      const { rows } = await withTimeout(client.query<{ id: string | null }>('SELECT max(id)::text AS id FROM revisions'), this.timeoutMs);
      if (this.stopped) {
        await client.end().catch(() => undefined);
        return;
      }
      this.client = client;
      this.failures = 0;
      this.startHeartbeat(client);
      this.setConnected(true);
      this.emit('revision', Number(rows[0]?.id ?? 0));
    } catch {
      void client.end().catch(() => undefined);
      this.failures += 1;
      this.scheduleRetry();
    }
  }

  /** SELECT 1 every heartbeatMs; no answer within timeoutMs means the connection is gone. */
  private startHeartbeat(client: pg.Client): void {
    clearInterval(this.heartbeatTimer);
    let inFlight = false;
    this.heartbeatTimer = setInterval(() => {
      if (inFlight || this.client !== client) return;
      inFlight = true;
      withTimeout(client.query('SELECT 1'), this.timeoutMs).then(
        () => (inFlight = false),
        () => this.lost(client),
      );
    }, this.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    clearInterval(this.heartbeatTimer);
    this.setConnected(false);
    // Not awaited: on a half-open socket the goodbye may never be answered.
    void client.end().catch(() => undefined);
    this.failures += 1;
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), backoffDelay(this.failures, this.backoff));
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    this.emit('connected', connected);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
