// Prisma Client for the Sluice tables, running without native engines: the
// Rust-free `prisma-client` generator plus the node-postgres driver adapter.
// The client is generated into ./generated (git-ignored) by `npm run db:generate`,
// which npm install and scripts/setup.sh run.
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from './generated/client.ts';

export { Prisma, PrismaClient } from './generated/client.ts';

/** A client with its own connection pool; call `$disconnect()` when done. */
export function createPrisma(databaseUrl: string): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl }) });
}
