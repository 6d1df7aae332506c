// main.ts's quiet collections (issue 12, memory): with --expose-gc, as the image
// runs (the Dockerfile's NODE_OPTIONS), the control plane collects garbage once
// quiet after a publish that grew its heap, and the collection returns heap. The real compiled control plane, real Postgres.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startControlPlane, type ControlPlane } from '../helpers/control-plane.ts';
import { sleep } from '../helpers/net.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Collection { round: number; heapMiBBefore: number; heapMiBAfter: number }

let db: TestDatabase;
let cp: ControlPlane;

before(async () => {
  execFileSync('bash', [path.join(repoRoot, 'scripts/build.sh'), '--if-stale'], { stdio: 'inherit' });
  db = await createTestDatabase();
  cp = await startControlPlane({ databaseUrl: db.url, compiled: true, env: { NODE_OPTIONS: '--expose-gc', LOG_LEVEL: 'info' } });
});

after(async () => {
  await cp?.stop();
  await db?.drop();
  await stopTestPostgres();
});

function collections(): Collection[] {
  return cp.output().split('\n').filter((l) => l.includes('collected garbage once quiet')).map((l) => JSON.parse(l) as Collection);
}

/** Waits (bounded: 60 s) for more than `count` collections. */
async function moreThan(count: number): Promise<Collection[]> {
  for (let i = 0; i < 600 && collections().length <= count; i++) await sleep(100);
  return collections();
}

test('collects once quiet after a publish that grew the heap, and the collection returns heap', async () => {
  // Start-up's own compaction first (a second after start-up, bounded wait): one that ran in the middle of
  // the write below would leave less than the threshold of growth after it. A write that comes before
  // start-up's compaction is the unit tests' case (test/unit/quiet-collection.test.ts).
  for (let i = 0; i < 600 && !cp.output().includes('compacted the heap once quiet after start-up'); i++) await sleep(100);
  assert.ok(cp.output().includes('compacted the heap once quiet after start-up'), cp.output().slice(-2_000));
  const before = collections().length;

  // Thousands of routes in one write: the apply's garbage grows the heap well past the threshold (32 MiB).
  const routes = Array.from({ length: 10_000 }, (_, i) => ({ name: `r-${i}`, match: { path: { prefix: `/r/${i}/` } }, action: { upstream: 'u' } }));
  const res = await fetch(`${cp.adminUrl}/v1/config`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${cp.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ upstreams: [{ name: 'u', endpoints: [{ host: '127.0.0.1', port: 9 }] }], routes }),
    signal: AbortSignal.timeout(120_000), // a bound, not a timing: a busy shared machine is slow
  });
  assert.equal(res.status, 200, (await res.text()).slice(0, 500));

  const all = await moreThan(before);
  const afterPublish = all.slice(before);
  assert.ok(afterPublish.length >= 1, `a collection once quiet after the publish:\n${cp.output().slice(-2_000)}`);
  assert.equal(afterPublish[0]!.round, 1);
  assert.ok(afterPublish[0]!.heapMiBAfter < afterPublish[0]!.heapMiBBefore, `the collection returned heap: ${JSON.stringify(afterPublish[0])}`);
});
