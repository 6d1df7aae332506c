// Issue 12, writes that cost O(change): what a commit stores and what it checks.
// - The change set stored with a revision (the only history most revisions
//   have) is exactly the one the writer computes from the diff (changeSetOf),
//   kinds, order, deletions and keys included, whichever way the change was
//   worked out (object writes: from the objects written; a whole config: in full).
// - It is stored as the text the writer sent (a json column, not jsonb), and
//   so is a checkpoint: a replica reading them back counts the bytes the
//   writer counted, and Postgres never parses them into jsonb.
// - A declarative apply the model validated in full is not validated again by
//   the store; a plan that edits the config after replacing it is.
// Real Postgres (fsync on), no mocks.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DeclarativeConfigSchema, validateState } from '../../control-plane/src/model/index.ts';
import { ConfigStore, StoreError, type CredentialKey } from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { changeSetOf, checkpointJson } from '../../control-plane/src/store/revision-history.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

let db: TestDatabase;
let prisma: PrismaClient;

before(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  prisma = createPrisma(db.url);
});

after(async () => {
  await prisma?.$disconnect();
  await db?.drop();
  await stopTestPostgres();
});

const upstream = (name: string, port = 8080) => ({ name, endpoints: [{ host: '127.0.0.1', port }] });
const route = (name: string, to: string, prefix = `/${name}`) => ({ name, match: { path: { prefix } }, action: { upstream: to } });
const key = (n: number): CredentialKey => ({ prefix: `sk_${n}`, hash: `hash-${n}-${'x'.repeat(20)}` });

test('the change set stored with each revision is exactly the writer\'s (kinds, order, deletions, keys)', async () => {
  const store = new ConfigStore(prisma);
  type Plan = Parameters<ConfigStore['commit']>[2];
  const plans: Plan[] = [
    (d) => {
      for (const name of ['cs-b', 'cs-a', 'cs-c']) d.create('upstreams', upstream(name) as never);
      for (const name of ['cs-r3', 'cs-r1', 'cs-r2']) d.create('routes', route(name, 'cs-a') as never);
      d.create('consumers', { name: 'cs-alice' } as never);
      d.create('credentials', { name: 'cs-key-1', consumer: 'cs-alice', kind: 'api_key' } as never, key(1));
      d.create('credentials', { name: 'cs-key-2', consumer: 'cs-alice', kind: 'api_key' } as never, key(2));
    },
    (d) => {
      d.replace('routes', 'cs-r2', route('cs-r2', 'cs-b') as never);
      d.delete('routes', 'cs-r3');
      d.delete('upstreams', 'cs-c');
      d.create('routes', route('cs-r0', 'cs-b') as never);
      d.delete('credentials', 'cs-key-1');
      d.issueKey('cs-key-2', key(3));
    },
    (d) => d.delete('consumers', 'cs-alice'), // cascades to its credential and key
    (d) => {
      d.delete('routes', 'cs-r1');
      d.delete('routes', 'cs-r2');
    },
  ];
  for (const plan of plans) {
    const before = (await store.loadState()).keys;
    const result = await store.commit('t', 'mixed', plan);
    assert.equal(result.changed, true);
    const afterKeys = (await store.loadState()).keys;
    const stored = await store.changeSet(result.revision);
    assert.deepEqual(stored, changeSetOf(result.diff, before, afterKeys), `revision ${result.revision}`);
    // The order inside each kind is the diff's (name order), not just the same members.
    for (const [kind, objects] of Object.entries(stored!.put)) {
      assert.deepEqual(objects!.map((o) => o.name), result.diff.filter((d) => d.kind === kind && d.op !== 'delete').map((d) => d.name));
    }
  }
});

test('a change set and a checkpoint are stored as the exact text the writer sent (json, not reformatted)', async () => {
  const store = new ConfigStore(prisma, { checkpointEveryRevisions: 1 }); // every revision due a checkpoint
  await store.commit('t', 'upstream', (d) => d.create('upstreams', upstream('vt-u') as never));
  await store.checkpointsSettled();
  const keysBefore = (await store.loadState()).keys;
  // A spec with characters JSON escapes, and keys in the schema's order (jsonb would reorder them by length).
  const result = await store.commit('t', 'route', (d) => d.create('routes', route('vt-r', 'vt-u', '/vt/"quoted"/back\\slash/') as never));
  await store.checkpointsSettled();
  const { keys: keysAfter } = await store.loadState();
  const [row] = await prisma.$queryRaw<Array<{ changes: string; snapshot: string | null }>>`
    SELECT changes::text AS changes, snapshot::text AS snapshot FROM revisions WHERE id = ${BigInt(result.revision)}`;
  assert.equal(row!.changes, JSON.stringify(changeSetOf(result.diff, keysBefore, keysAfter)));
  assert.equal(row!.snapshot, await checkpointJson((await store.revisionSnapshot(result.revision))!));
});

test('a whole config the model validated is not checked twice, but an edit after replacing it is', async () => {
  const store = new ConfigStore(prisma);
  const config = DeclarativeConfigSchema.parse({ upstreams: [upstream('vw-u')], routes: [route('vw-r', 'vw-u')] });
  assert.deepEqual(validateState({ revision: 0, ...config }), []);
  const applied = await store.commit('t', 'apply', (d) => d.replaceAll(config, undefined, { parsed: true, validated: true }));
  assert.equal(applied.changed, true);
  await assert.rejects(
    store.commit('t', 'apply, then break it', (d) => {
      d.replaceAll(config, undefined, { parsed: true, validated: true });
      d.replace('routes', 'vw-r', route('vw-r', 'vw-missing') as never);
    }),
    (err: unknown) => err instanceof StoreError && err.code === 'invalid' && err.issues.some((i) => i.message.includes("unknown upstream 'vw-missing'")),
  );
  const { state } = await store.loadState();
  assert.equal(state.routes.find((r) => r.name === 'vw-r')?.action.upstream, 'vw-u', 'nothing was written');
});
