// The change feed: Postgres LISTEN on `sluice_revision`, fed by the trigger on
// the revisions table. Every control-plane replica listens, so a write on any
// of them reaches all. After a lost connection the feed reconnects and reports
// the newest revision once, since notifications sent meanwhile are gone.
import { EventEmitter } from 'node:events';
import pg from 'pg';

export const REVISION_CHANNEL = 'sluice_revision';

export interface ChangeFeedEvents {
  /** A revision was committed (or, after a reconnect, the newest one). */
  revision: [revision: number];
  /** The connection state changed. */
  connected: [connected: boolean];
}

export class ChangeFeed extends EventEmitter<ChangeFeedEvents> {
  private client?: pg.Client;
  private stopped = false;
  private retryTimer?: NodeJS.Timeout;
  connected = false;

  constructor(private readonly databaseUrl: string, private readonly retryMs = 500) {
    super();
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.databaseUrl });
    client.on('error', () => this.lost(client));
    client.on('end', () => this.lost(client));
    client.on('notification', (message) => {
      const revision = Number(message.payload);
      if (message.channel === REVISION_CHANNEL && Number.isSafeInteger(revision)) this.emit('revision', revision);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${REVISION_CHANNEL}`);
      const { rows } = await client.query<{ id: string | null }>('SELECT max(id)::text AS id FROM revisions');
      this.client = client;
      this.setConnected(true);
      this.emit('revision', Number(rows[0]?.id ?? 0));
    } catch {
      await client.end().catch(() => undefined);
      this.scheduleRetry();
    }
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.setConnected(false);
    client.end().catch(() => undefined);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), this.retryMs);
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    this.emit('connected', connected);
  }
}
