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
 * skipping Prisma's query pipeline; else through Prisma. Same SQL, same
 * parameters, same row shapes (json parsed, timestamps as Dates), except int8
 * (text from the pool: callers convert).
 */
export async function rawRows<T>(prisma: PrismaClient, sql: string, ...values: unknown[]): Promise<T[]> {
  const pool = poolOf(prisma);
  if (!pool) return prisma.$queryRawUnsafe<T[]>(sql, ...values);
  return (await pool.query(sql, values)).rows as T[];
}
