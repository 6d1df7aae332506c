// Throwaway Postgres databases for tests. With DATABASE_URL set, databases are
// created on that server; otherwise one embedded Postgres per test process is
// started on first use (initdb + start take about a second), in a temp folder
// that is deleted when it stops. SIGINT/SIGTERM/exit stop the server, so a
// killed test run leaves no postgres behind.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type EmbeddedPostgres, isAlive, startEmbeddedPostgres } from '../../control-plane/src/store/postgres.ts';

export interface TestDatabase {
  /** URL of a fresh, empty database. */
  url: string;
  name: string;
  /** Drops the database (disconnecting anyone still on it). */
  drop(): Promise<void>;
}

const tempPrefix = 'sluice-test-pg-';
let embedded: Promise<EmbeddedPostgres> | undefined;

/** This process's embedded server, started on first call (createTestDatabase uses it only when DATABASE_URL is unset). */
export function testPostgres(): Promise<EmbeddedPostgres> {
  embedded ??= (async () => {
    await sweepStaleClusters();
    const rootDir = await mkdtemp(path.join(tmpdir(), `${tempPrefix}${process.pid}-`));
    return startEmbeddedPostgres({ rootDir, database: 'postgres', persistent: false, fast: true, handleSignals: true });
  })();
  return embedded;
}

/** Stops this process's embedded server, if one was started. */
export async function stopTestPostgres(): Promise<void> {
  const started = embedded;
  embedded = undefined;
  if (started) await (await started).stop();
}

async function adminUrl(): Promise<string> {
  const external = process.env.DATABASE_URL;
  if (external !== undefined && external !== '') return external;
  return (await testPostgres()).adminUrl;
}

/** CREATE DATABASE with a random name; returns its URL and a drop() for cleanup. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = await adminUrl();
  const name = `sluice_test_${randomBytes(6).toString('hex')}`;
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  };
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Deletes temp clusters left by test processes that were SIGKILLed (the only
 * way to skip our cleanup): the folder names the owning pid; a folder is stale
 * when that process and its postmaster are both gone.
 */
async function sweepStaleClusters(): Promise<void> {
  const entries = await readdir(tmpdir()).catch(() => [] as string[]);
  for (const entry of entries) {
    const match = new RegExp(`^${tempPrefix}(\\d+)-`).exec(entry);
    if (!match || isAlive(Number(match[1]))) continue;
    const dir = path.join(tmpdir(), entry);
    const pidFile = path.join(dir, 'data', 'postmaster.pid');
    const postmaster = existsSync(pidFile) ? Number((await readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0]) : 0;
    if (postmaster > 0 && isAlive(postmaster)) continue;
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}
