// Applies migrations/*.sql in lexical order, each in its own transaction, and
// records them in sluice_migrations. The whole run holds a session advisory
// lock, so replicas starting together queue up and each migration is applied
// exactly once. We use `pg` directly (not `prisma migrate`, which needs a
// native schema engine that cannot be downloaded here).
//
// Rules for migration files: never edit one after it has been applied (the
// checksum check refuses to start), and no transaction control inside them
// (no BEGIN/COMMIT, no CREATE INDEX CONCURRENTLY): the runner owns the transaction.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/** <repo>/migrations (this file is control-plane/src/store/migrate.ts). */
export const defaultMigrationsDir = fileURLToPath(new URL('../../../migrations', import.meta.url));

/** Arbitrary fixed key ("sluice" in ASCII) shared by every replica. */
const lockKey = '126909663503205';

export interface MigrateOptions {
  /** Folder of *.sql files; defaults to <repo>/migrations. */
  dir?: string;
  /** Progress lines ("applied 0002_x.sql"); silent by default. */
  log?: (line: string) => void;
}

export interface MigrateResult {
  /** Names applied by this run, in order (empty when already up to date). */
  applied: string[];
  /** Names that were already applied before this run. */
  alreadyApplied: string[];
}

/** A migration that could not be applied or verified; `migration` is its file name. */
export class MigrationError extends Error {
  constructor(
    readonly migration: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`migration ${migration}: ${message}`, options);
    this.name = 'MigrationError';
  }
}

interface MigrationFile {
  name: string;
  sql: string;
  checksum: string;
}

export async function migrate(databaseUrl: string, options: MigrateOptions = {}): Promise<MigrateResult> {
  const files = await readMigrations(options.dir ?? defaultMigrationsDir);
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'sluice-migrate' });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1::bigint)', [lockKey]);
    try {
      return await applyPending(client, files, options.log ?? (() => {}));
    } finally {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [lockKey]);
    }
  } finally {
    await client.end();
  }
}

async function applyPending(client: pg.Client, files: MigrationFile[], log: (line: string) => void): Promise<MigrateResult> {
  // Created under the lock: concurrent CREATE TABLE IF NOT EXISTS can still collide.
  await client.query(`
    CREATE TABLE IF NOT EXISTS sluice_migrations (
      name       text PRIMARY KEY,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
  const rows = await client.query<{ name: string; checksum: string }>('SELECT name, checksum FROM sluice_migrations');
  const done = new Map(rows.rows.map((r) => [r.name, r.checksum]));

  const result: MigrateResult = { applied: [], alreadyApplied: [] };
  // Verify everything first, so an edited old file stops the run before anything new is applied.
  for (const file of files) {
    const recorded = done.get(file.name);
    if (recorded === undefined) continue;
    if (recorded !== file.checksum) {
      throw new MigrationError(file.name, `was changed after it was applied (checksum ${recorded} in the database, ${file.checksum} on disk); add a new migration instead`);
    }
    result.alreadyApplied.push(file.name);
  }
  // Rows for files we do not have are left alone: a newer release may have applied them.

  for (const file of files) {
    if (done.has(file.name)) continue;
    await client.query('BEGIN');
    try {
      await client.query(file.sql); // simple protocol: many statements in one call
      await client.query('INSERT INTO sluice_migrations (name, checksum) VALUES ($1, $2)', [file.name, file.checksum]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw new MigrationError(file.name, `failed and was rolled back: ${describe(err, file.sql)}`, { cause: err });
    }
    result.applied.push(file.name);
    log(`applied ${file.name}`);
  }
  return result;
}

async function readMigrations(dir: string): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.sql')).sort(); // code-unit order: locale-independent
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(path.join(dir, name), 'utf8');
      // Hash with normalised line endings so a CRLF checkout is not "changed".
      const checksum = createHash('sha256').update(sql.replace(/\r\n/g, '\n')).digest('hex');
      return { name, sql, checksum };
    }),
  );
}

/** Postgres error text plus the line it points at, when it says. */
function describe(err: unknown, sql: string): string {
  if (!(err instanceof Error)) return String(err);
  const position = Number((err as { position?: string }).position);
  if (!Number.isInteger(position) || position <= 0) return err.message;
  const line = sql.slice(0, position - 1).split('\n').length;
  return `${err.message} (line ${line})`;
}
