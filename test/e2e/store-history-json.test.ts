// Issue 12: migrations/0007_revision_history_json.sql turns the revisions'
// change sets and checkpoints from jsonb into json. History written before the
// migration (jsonb: reformatted, keys reordered) must read back exactly as it
// did: every revision's config and keys, byte for byte as JSON, and the store
// keeps writing on top of it. Real Postgres (fsync on), no mocks.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ConfigStore } from '../../control-plane/src/store/config-store.ts';
import { defaultMigrationsDir, migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

let db: TestDatabase;
let oldMigrations: string;
const prismas: PrismaClient[] = [];

before(async () => {
  db = await createTestDatabase();
  // The schema as it was before 0007: the migrations up to 0006 only.
  oldMigrations = await mkdtemp(path.join(os.tmpdir(), 'sluice-migrations-0006-'));
  for (const file of await readdir(defaultMigrationsDir)) {
    if (file.endsWith('.sql') && file < '0007') await copyFile(path.join(defaultMigrationsDir, file), path.join(oldMigrations, file));
  }
});

after(async () => {
  for (const prisma of prismas) await prisma.$disconnect();
  await db?.drop();
  await stopTestPostgres();
  if (oldMigrations) await rm(oldMigrations, { recursive: true, force: true });
});

const upstream = (name: string, port = 8080) => ({ name, endpoints: [{ host: '127.0.0.1', port }] });
const route = (name: string, to: string, prefix = `/${name}/`) => ({ name, match: { path: { prefix } }, action: { upstream: to } });

test('history written as jsonb before 0007 reads back exactly after it, and writes go on', async () => {
  await migrate(db.url, { dir: oldMigrations });
  const before = createPrisma(db.url);
  prismas.push(before);
  const [column] = await before.$queryRaw<Array<{ type: string }>>`
    SELECT data_type AS type FROM information_schema.columns WHERE table_name = 'revisions' AND column_name = 'changes'`;
  assert.equal(column?.type, 'jsonb', 'the old schema');

  // Checkpoints every 3 revisions: history before the migration has both checkpoints and change sets.
  const oldStore = new ConfigStore(before, { checkpointEveryRevisions: 3 });
  const plans: Array<Parameters<ConfigStore['commit']>[2]> = [
    (d) => d.create('upstreams', upstream('hj-u') as never),
    (d) => d.create('routes', route('hj-b', 'hj-u', '/hj/"quoted"/') as never),
    (d) => d.create('routes', route('hj-a', 'hj-u') as never),
    (d) => d.replace('routes', 'hj-b', { ...route('hj-b', 'hj-u'), priority: 5 } as never),
    (d) => d.create('upstreams', upstream('hj-v', 8081) as never),
    (d) => d.delete('routes', 'hj-a'),
    (d) => d.create('routes', route('hj-c', 'hj-v') as never),
  ];
  const written = new Map<number, string>();
  for (const plan of plans) {
    const { revision } = await oldStore.commit('t', 'before 0007', plan);
    await oldStore.checkpointsSettled();
    written.set(revision, JSON.stringify(await oldStore.revisionSnapshot(revision)));
  }

  const { applied } = await migrate(db.url);
  assert.deepEqual(applied.filter((name) => name >= '0007'), ['0007_revision_history_json.sql']);

  // A fresh process (nothing cached) rebuilds every revision from the converted rows.
  const afterPrisma = createPrisma(db.url);
  prismas.push(afterPrisma);
  const store = new ConfigStore(afterPrisma, { checkpointEveryRevisions: 3 });
  for (const [revision, text] of written) assert.equal(JSON.stringify(await store.revisionSnapshot(revision)), text, `revision ${revision}`);
  const head = Math.max(...written.keys());
  const { state } = await store.loadState();
  assert.equal(state.revision, head);

  const next = await store.commit('t', 'after 0007', (d) => d.create('routes', route('hj-d', 'hj-u') as never));
  await store.checkpointsSettled();
  const rebuilt = new ConfigStore(afterPrisma);
  assert.equal(JSON.stringify(await rebuilt.revisionSnapshot(next.revision)), JSON.stringify(await store.revisionSnapshot(next.revision)));
  assert.deepEqual((await rebuilt.loadState()).state.routes.map((r) => r.name), ['hj-b', 'hj-c', 'hj-d']);
});
