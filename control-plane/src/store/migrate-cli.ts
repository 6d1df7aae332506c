// `node --import tsx control-plane/src/store/migrate-cli.ts [--dir <folder>]`
// Applies pending migrations to DATABASE_URL (or to the embedded Postgres when
// it is unset) and exits 0; on failure prints the migration's name and the
// error to stderr and exits 1 (2 for bad configuration or usage).
import path from 'node:path';
import { parseArgs } from 'node:util';
import { configOrExit } from '../config/env.ts';
import { migrate } from './migrate.ts';
import { type Database, startDatabase } from './postgres.ts';

let dir: string | undefined;
try {
  const { values } = parseArgs({ options: { dir: { type: 'string' } } });
  dir = values.dir === undefined ? undefined : path.resolve(values.dir);
} catch (err) {
  process.stderr.write(`migrate: ${(err as Error).message}\nusage: migrate-cli [--dir <folder>]\n`);
  process.exit(2);
}

const config = configOrExit();
let db: Database | undefined;
let code = 0;
try {
  db = await startDatabase(config);
  const result = await migrate(db.url, { dir, log: (line) => process.stdout.write(`${line}\n`) });
  process.stdout.write(`migrations: ${result.applied.length} applied, ${result.alreadyApplied.length} already applied\n`);
} catch (err) {
  process.stderr.write(`migrate: ${err instanceof Error ? err.message : String(err)}\n`);
  code = 1;
} finally {
  await db?.stop();
}
// Explicit exit: a pg socket or the embedded server's pipes must not keep us alive.
process.exit(code);
