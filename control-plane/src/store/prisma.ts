// Prisma Client for the Sluice tables, running without native engines: the
// Rust-free `prisma-client` generator plus the node-postgres driver adapter.
// The client is generated into ./generated (git-ignored) by `npm run db:generate`,
// which npm install and scripts/setup.sh run.
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from './generated/client.ts';

export { Prisma, PrismaClient } from './generated/client.ts';

/** The pool under each client createPrisma made (see poolOf). */
const pools = new WeakMap<PrismaClient, pg.Pool>();

/** A client with its own connection pool; call `$disconnect()` when done (it ends the pool too). */
export function createPrisma(databaseUrl: string): PrismaClient {
  const pool = new pg.Pool({ connectionString: databaseUrl });
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool, { disposeExternalPool: true }) });
  pools.set(prisma, pool);
  return prisma;
}

/**
 * The node-postgres pool under a client from createPrisma (the same
 * connections), while it is open; undefined otherwise. For the few raw
 * statements every write runs: sent through the pool they skip Prisma's query
 * pipeline, about 0.17 ms of CPU each. Anything transactional stays with Prisma.
 */
export function poolOf(prisma: PrismaClient): pg.Pool | undefined {
  const pool = pools.get(prisma);
  return pool && !pool.ending && !pool.ended ? pool : undefined;
}

/**
 * One raw statement's rows: through the node-postgres pool under `prisma` when
 * it has one (poolOf: not inside a transaction, whose client is not a pool's),
 * skipping Prisma's query pipeline, as a prepared statement (preparedName);
 * else through Prisma. Same SQL, same parameters, same row shapes (json
 * parsed, timestamps as Dates), except int8 (text from the pool: callers convert).
 */
export async function rawRows<T>(prisma: PrismaClient, sql: string, ...values: unknown[]): Promise<T[]> {
  const pool = poolOf(prisma);
  if (!pool) return prisma.$queryRawUnsafe<T[]>(sql, ...values);
  const name = preparedName(sql);
  if (name === undefined) return (await pool.query(sql, values)).rows as T[];
  try {
    return (await pool.query({ name, text: sql, values })).rows as T[];
  } catch (err) {
    // "cached plan must not change result type": a migration (another replica's, during an upgrade)
    // changed a column this connection's prepared statement returns. Once more, unprepared.
    if (isStalePlan(err)) return (await pool.query(sql, values)).rows as T[];
    throw err;
  }
}

/** Postgres refused to run a prepared plan whose result columns changed (raised before the statement does anything). */
function isStalePlan(err: unknown): boolean {
  const { code, message } = err as { code?: unknown; message?: unknown };
  return code === '0A000' && typeof message === 'string' && message.includes('cached plan must not change result type');
}

/**
 * The statements rawRows runs are a fixed set of shapes (the hot ones run on
 * every write, every ACK flush, every admin request), so each is prepared once
 * per connection under a name and Postgres skips parsing and planning it again:
 * about 40% of Postgres's CPU per one-route write (bench/write-path.profile.ts).
 * Bounded all the same: past the limit, texts run unprepared.
 */
function preparedName(sql: string): string | undefined {
  let name = preparedNames.get(sql);
  if (name === undefined && preparedNames.size < PREPARED_LIMIT) {
    name = `sluice_${preparedNames.size}`;
    preparedNames.set(sql, name);
  }
  return name;
}

const preparedNames = new Map<string, string>();
const PREPARED_LIMIT = 200;
