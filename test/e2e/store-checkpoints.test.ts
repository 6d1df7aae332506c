// Checkpoints off the write path, on a real Postgres: a revision due a
// checkpoint commits its change set only and gets the whole config afterwards,
// in the background. Held back, failed or never written (a crash), a checkpoint
// costs only replay length: every retained revision still rebuilds exactly,
// the next due commit tries again, and pruning keeps the checkpoint that exists.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { RouteSchema, UpstreamSchema, type Route, type Upstream } from '../../control-plane/src/model/index.ts';
import {
  ConfigStore, writeCheckpoint, type CheckpointWriter, type Draft, type RevisionHistorySettings, type RevisionSnapshot,
} from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { checkpointJson } from '../../control-plane/src/store/revision-history.ts';
import { createTestDatabase, stopTestPostgres } from '../helpers/postgres.ts';

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await stopTestPostgres();
});

async function freshPrisma(): Promise<PrismaClient> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  await migrate(db.url);
  const prisma = createPrisma(db.url);
  cleanups.push(() => prisma.$disconnect());
  return prisma;
}

/** A checkpoint every 3 revisions; no pruning unless a test calls prune(). */
const EVERY_3: Partial<RevisionHistorySettings> = { checkpointEveryRevisions: 3, retainRevisions: 0, retainMs: 0, auditRetainMs: 0, pruneEveryCommits: Number.MAX_SAFE_INTEGER };

const upstream = (name: string, port: number): Upstream => UpstreamSchema.parse({ name, endpoints: [{ host: '127.0.0.1', port }] });
const route = (name: string, prefix: string): Route => RouteSchema.parse({ name, match: { path: { prefix } }, action: { upstream: 'web' } });

/** The real writer, held until release() (and telling when it was first asked to write). */
function heldWriter(): { write: CheckpointWriter; release: () => void; asked: Promise<number> } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let askedFor!: (revision: number) => void;
  const asked = new Promise<number>((resolve) => (askedFor = resolve));
  const write: CheckpointWriter = async (prisma, revision, json) => {
    askedFor(revision);
    await gate;
    return writeCheckpoint(prisma, revision, json);
  };
  return { write, release, asked };
}

async function checkpointRows(prisma: PrismaClient): Promise<number[]> {
  const rows = await prisma.$queryRaw<Array<{ id: bigint }>>`SELECT id FROM revisions WHERE snapshot IS NOT NULL ORDER BY id`;
  return rows.map((row) => Number(row.id));
}

const text = (revision: number, snapshot: RevisionSnapshot | undefined) =>
  snapshot && JSON.stringify({ state: { revision, ...snapshot.config }, keys: snapshot.credential_keys });

/** Commits one route write at a time, recording what loadState gives at each revision. */
async function writeRoutes(store: ConfigStore, from: number, to: number, seen: Map<number, string>): Promise<void> {
  for (let i = from; i <= to; i += 1) {
    const plan = (d: Draft) => (i === 1 ? d.create('upstreams', upstream('web', 8000)) : d.create('routes', route(`r${i}`, `/r${i}`)));
    const result = await store.commit('t', `write ${i}`, plan);
    assert.equal(result.revision, i);
    const { state, keys } = await store.loadState();
    seen.set(state.revision, JSON.stringify({ state, keys }));
  }
}

/** Every recorded revision from `from` on, rebuilt by a store with a cold cache, equals what loadState gave then. */
async function assertRebuiltExactly(prisma: PrismaClient, seen: Map<number, string>, from = 1): Promise<void> {
  const cold = new ConfigStore(prisma, EVERY_3);
  for (const [revision, recorded] of seen) {
    if (revision >= from) assert.equal(text(revision, await cold.revisionSnapshot(revision)), recorded, `revision ${revision} rebuilt differently`);
  }
}

test('a write whose revision is due a checkpoint returns before the checkpoint is written; it lands after, and counting restarts from it', async () => {
  const prisma = await freshPrisma();
  const held = heldWriter();
  const store = new ConfigStore(prisma, EVERY_3, undefined, { writeCheckpoint: held.write });
  const seen = new Map<number, string>();
  await writeRoutes(store, 1, 4, seen); // 4 is due a checkpoint (3 change sets after 1): its writer is held, yet the commit returned
  assert.deepEqual(await checkpointRows(prisma), [1], 'revision 4 committed without its checkpoint');
  assert.equal(await held.asked, 4, 'revision 4 was due a checkpoint');
  await writeRoutes(store, 5, 5, seen); // a held checkpoint holds up no later write either
  await assertRebuiltExactly(prisma, seen);

  held.release();
  await store.checkpointsSettled();
  assert.deepEqual(await checkpointRows(prisma), [1, 4]);
  await writeRoutes(store, 6, 8, seen); // counted from 4: 7 is the next one due
  await store.checkpointsSettled();
  assert.deepEqual(await checkpointRows(prisma), [1, 4, 7]);
  await assertRebuiltExactly(prisma, seen);
});

test('a checkpoint that fails or is never written (a crash) costs only replay: every revision rebuilds exactly, and the next due commit tries again', async () => {
  const prisma = await freshPrisma();
  const failures: unknown[] = [];
  let calls = 0;
  const failOnce: CheckpointWriter = async (db, revision, json) => {
    calls += 1;
    if (calls === 1) throw new Error('Postgres went away');
    return writeCheckpoint(db, revision, json);
  };
  const store = new ConfigStore(prisma, EVERY_3, undefined, { writeCheckpoint: failOnce, onCheckpointError: (err) => failures.push(err) });
  const seen = new Map<number, string>();
  await writeRoutes(store, 1, 4, seen);
  await store.checkpointsSettled();
  assert.deepEqual(await checkpointRows(prisma), [1]);
  assert.equal(failures.length, 1, 'the failure was reported');
  await writeRoutes(store, 5, 5, seen); // still due: this one is written
  await store.checkpointsSettled();
  assert.deepEqual(await checkpointRows(prisma), [1, 5]);

  // A process that dies before writing any checkpoint: its revisions still rebuild, by longer replay.
  const crashed = new ConfigStore(prisma, EVERY_3, undefined, { writeCheckpoint: heldWriter().write });
  await writeRoutes(crashed, 6, 12, seen);
  assert.deepEqual(await checkpointRows(prisma), [1, 5]);
  await assertRebuiltExactly(prisma, seen);
  // Another replica catching up over the missing checkpoints reads the same head.
  const replica = new ConfigStore(prisma, EVERY_3);
  const { state, keys } = await replica.loadState();
  assert.equal(JSON.stringify({ state, keys }), seen.get(12));
});

test('pruning while a checkpoint is pending keeps the checkpoint that exists, so retained revisions rebuild exactly', async () => {
  const prisma = await freshPrisma();
  const held = heldWriter();
  const history = { ...EVERY_3, retainRevisions: 2 };
  const store = new ConfigStore(prisma, history, undefined, { writeCheckpoint: held.write });
  const seen = new Map<number, string>();
  await writeRoutes(store, 1, 8, seen); // 4 due (held); 7 due too, but one is written at a time

  const pending = await store.prune();
  assert.equal(pending?.oldestKept, 1, 'the only checkpoint before revisions 7 and 8 is 1: nothing goes');
  assert.equal(await held.asked, 4);
  await assertRebuiltExactly(prisma, seen, 7);

  held.release();
  await store.checkpointsSettled();
  const written = await store.prune();
  assert.equal(written?.oldestKept, 4, 'once 4 exists it is the boundary');
  assert.equal(await store.revisionSnapshot(3), undefined);
  await assertRebuiltExactly(prisma, seen, 7);
});

test('a checkpoint serialised a slice at a time is JSON.stringify of the snapshot', async () => {
  const routes = Array.from({ length: 7 }, (_, i) => route(`r${i}`, `/r${i}`));
  const snapshot: RevisionSnapshot = {
    config: { upstreams: [upstream('web', 8000)], routes, consumers: [], credentials: [], jwt_providers: [], rate_limit_policies: [] },
    credential_keys: { k: { hash: 'ab', prefix: 'sk_1' } },
  };
  for (const slice of [1, 2, 3, 7, 500]) assert.equal(await checkpointJson(snapshot, slice), JSON.stringify(snapshot));
});

test('a replica whose cached head was pruned meanwhile rebuilds from a checkpoint instead of replaying what is left', async () => {
  const prisma = await freshPrisma();
  const history = { ...EVERY_3, retainRevisions: 2 };
  const writer = new ConfigStore(prisma, history);
  const replica = new ConfigStore(prisma, history);
  const seen = new Map<number, string>();
  await writeRoutes(writer, 1, 2, seen);
  await replica.loadState(); // cached at 2
  await writer.commit('t', 'move r2', (d) => d.replace('routes', 'r2', route('r2', '/moved')));
  await writeRoutes(writer, 4, 10, seen);
  await writer.checkpointsSettled();
  assert.ok(((await writer.prune())?.oldestKept ?? 0) > 3, 'revisions 2 and 3 are pruned');
  const { state, keys } = await replica.loadState(); // 8 behind: would replay from what is left
  assert.equal(JSON.stringify({ state, keys }), seen.get(10));
});
