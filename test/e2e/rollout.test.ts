// Automated canary rollouts end to end, with real Postgres, real Envoys, real
// upstreams on loopback and a bounded load client.
//
// The first four tests run the rollout controller and the admin API (fastify,
// app.inject) in this process over a real config store and change feed that
// publish to a real Envoy. Their FleetStatsReader is EnvoyAdminStats below: the
// Envoy's own per-cluster counters read from its admin /stats (a real source,
// not a mock), sampled every 100 ms, so steps can be 1 s long. (The control
// plane's own window has 10 s buckets: a good canary through four steps there
// would take a minute.) It reads no latency percentiles, so these tests judge
// the 5xx threshold; latency rules are covered by test/unit/rollout-analysis.
//
// The last test runs the real control-plane process (main.ts's controller,
// judging the fleet window that the Envoy's metrics_service sink feeds) for a
// bad canary (20% 500s), a slow one (400 ms, judged by p99 from the merged
// histograms) and a restart mid-rollout.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../../control-plane/src/admin/app.ts';
import { RouteSchema, UpstreamSchema } from '../../control-plane/src/model/index.ts';
import type { RolloutView } from '../../control-plane/src/model/rollout.ts';
import { RolloutController } from '../../control-plane/src/rollout/controller.ts';
import { ChangeFeed } from '../../control-plane/src/store/change-feed.ts';
import { ConfigStore } from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import type { FleetStatsReader, WindowStats } from '../../control-plane/src/telemetry/fleet-stats.ts';
import { clusterName } from '../../control-plane/src/translate/names.ts';
import { startControlPlane } from '../helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { startGateway, type Gateway } from '../helpers/gateway.ts';
import { startLoad, type LoadResult } from '../helpers/load.ts';
import { sleep } from '../helpers/net.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';
import { fetchVia, startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

/** An Envoy's per-cluster response counters from its admin /stats, sampled every 100 ms, as window stats. */
class EnvoyAdminStats implements FleetStatsReader {
  private samples: Array<{ at: number; counters: Record<string, number> }> = [];
  private timer?: NodeJS.Timeout;
  constructor(private readonly envoy: EnvoyHandle) {}

  async start(): Promise<void> {
    await this.sample();
    this.timer = setInterval(() => void this.sample().catch(() => {}), 100);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async sample(): Promise<void> {
    const counters = await this.envoy.stats('^cluster\\.upstream_.*\\.upstream_rq_[1-5]xx$');
    this.samples.push({ at: Date.now(), counters });
    if (this.samples.length > 3000) this.samples.splice(0, 1000);
  }

  upstream(name: string, sinceMs: number): WindowStats {
    const latest = this.samples.at(-1);
    // Baseline: the last sample taken at or before the window began (a few requests
    // before it may count; they went to the same upstream).
    const baseline = [...this.samples].reverse().find((s) => s.at <= sinceMs) ?? this.samples[0];
    const count = (cls: number) => {
      const key = `cluster.${clusterName(name)}.upstream_rq_${cls}xx`;
      return (latest?.counters[key] ?? 0) - (baseline?.counters[key] ?? 0);
    };
    const [c1, c2, c3, c4, c5] = [1, 2, 3, 4, 5].map(count) as [number, number, number, number, number];
    return { requests: c1 + c2 + c3 + c4 + c5, status2xx: c2, status4xx: c4, status5xx: c5 };
  }

  route(): WindowStats {
    return { requests: 0, status2xx: 0, status4xx: 0, status5xx: 0 };
  }
}

let db: TestDatabase;
let prisma: PrismaClient;
let store: ConfigStore;
let gw: Gateway;
let feed: ChangeFeed;
let stats: EnvoyAdminStats;
let controller: RolloutController;
let admin: FastifyInstance;
const token = `test_${randomBytes(16).toString('hex')}`;
let stable: HttpUpstream;
let good: HttpUpstream;
let bad: HttpUpstream;
let slow: HttpUpstream;
let fleetRevision = 0;
let syncing: Promise<unknown> = Promise.resolve();

/** Publishes the store's newest revision to the Envoy (what main.ts's publisher does), one at a time. */
function syncFleet(): Promise<unknown> {
  syncing = syncing.then(async () => {
    const { state } = await store.loadState();
    if (state.revision <= fleetRevision) return;
    await gw.apply(state);
    fleetRevision = state.revision;
  }).catch((err: unknown) => console.log(`# fleet sync failed: ${String(err)}`));
  return syncing;
}

const plainRoute = (name: string) => RouteSchema.parse({ name, match: { path: { prefix: `/${name}` } }, action: { upstream: 'stable' } });

function startController(): RolloutController {
  return new RolloutController({ prisma, store, stats, pollMs: 100 });
}

before(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  prisma = createPrisma(db.url);
  store = new ConfigStore(prisma);
  await prisma.adminToken.create({ data: { name: 'ops', tokenHash: createHash('sha256').update(token).digest('hex'), role: 'write' } });
  stable = await startHttpUpstream({ name: 'stable' });
  good = await startHttpUpstream({ name: 'good' });
  bad = await startHttpUpstream({ name: 'bad', failureRatio: 0.2 });
  slow = await startHttpUpstream({ name: 'slow', latencyMs: 400 });
  gw = await startGateway({ envoys: [{ nodeId: 'rollout-1' }] });
  feed = new ChangeFeed(db.url);
  feed.on('revision', () => void syncFleet());
  await feed.start();
  await store.commit('setup', 'upstreams and routes', (draft) => {
    for (const u of [stable, good, bad]) draft.create('upstreams', UpstreamSchema.parse({ name: u.name, endpoints: [{ host: '127.0.0.1', port: u.port }] }));
    for (const name of ['shop', 'cart', 'ops', 'restart']) draft.create('routes', plainRoute(name));
  });
  await syncFleet();
  stats = new EnvoyAdminStats(gw.envoys[0]!.handle);
  await stats.start();
  controller = startController();
  await controller.start();
  admin = buildAdminApp({ store, prisma, registry: gw.registry, rollouts: controller });
});

after(async () => {
  await controller?.stop();
  stats?.stop();
  await admin?.close();
  await feed?.stop();
  await syncing;
  await gw?.stop();
  await prisma?.$disconnect();
  for (const u of [stable, good, bad, slow]) await u?.close();
  await db?.drop();
  await stopTestPostgres();
});

async function api(method: 'GET' | 'POST' | 'PUT', url: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await admin.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
  return { status: res.statusCode, body: res.body ? (JSON.parse(res.body) as unknown) : undefined };
}

async function rollout(id: string): Promise<RolloutView> {
  const res = await api('GET', `/v1/rollouts/${id}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as RolloutView;
}

/** Finished: no longer running, and no weight change still being committed. */
const settled = (r: RolloutView): boolean => r.state !== 'running' && r.weight === r.target_weight;

/**
 * Keeps a steady load on `path` in batches until `done()` (checked between
 * batches) or `maxBatches`; bounded either way. Returns the merged outcome.
 */
async function loadUntil(path: string, done: () => Promise<boolean>, maxBatches = 600, port = gw.envoys[0]!.port): Promise<LoadResult & { batches: number }> {
  const total: LoadResult & { batches: number } = { total: 0, failed: 0, failures: new Map(), byUpstream: new Map(), batches: 0 };
  for (let i = 0; i < maxBatches; i++) {
    const batchStarted = Date.now();
    const r = await startLoad({ port, path, requests: 200, concurrency: 4 }).result;
    // Paced: at most one batch per 100 ms (2,000 requests/s), so the bound is
    // also one of time (a minute) whatever this machine's speed.
    await sleep(Math.max(0, 100 - (Date.now() - batchStarted)));
    total.total += r.total;
    total.failed += r.failed;
    total.batches += 1;
    for (const [k, v] of r.failures) total.failures.set(k, (total.failures.get(k) ?? 0) + v);
    for (const [k, v] of r.byUpstream) total.byUpstream.set(k, (total.byUpstream.get(k) ?? 0) + v);
    if (await done()) break;
  }
  return total;
}

async function waitFleet(): Promise<void> {
  const head = await store.currentRevision();
  for (let i = 0; i < 200 && fleetRevision < head; i++) await syncFleet();
  assert.equal(fleetRevision, head, 'the Envoy holds the newest revision');
}

/**
 * Sizing (false failures well under 1 in 10,000 runs): the bad upstream fails
 * exactly every fifth request (not at random), so any 20 or more of its
 * answers hold at least 19% 500s, far over 5%, and the good ones never fail:
 * verdicts do not depend on luck. Only the time to collect 20 canary requests
 * does: Envoy's split is random, and at 5% of even 1,000 requests (a step
 * extended by holds, at this machine's slowest observed rates) the chance of
 * fewer than 20 is under 1e-7 (Binomial(1000, 0.05), 4.4 sd below its mean),
 * while max_holds 20 allows 21 step lengths before the rollout would pause.
 */
const ANALYSIS = { max_5xx_percent: 5, min_requests: 20, max_holds: 20 };

test('a good canary under steady load is promoted step by step to 100% with 0 failed requests; every step is an audited revision', async () => {
  const started = await api('POST', '/v1/routes/shop:rollout', { canary: 'good', steps: [5, 25, 50, 100], step_seconds: 1, analysis: ANALYSIS });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const id = (started.body as RolloutView).id;
  assert.equal((started.body as RolloutView).weight, 5);

  const second = await api('POST', '/v1/routes/shop:rollout', { canary: 'bad', steps: [100], step_seconds: 1, analysis: ANALYSIS });
  assert.equal(second.status, 409, 'one rollout per route at a time');

  const load = await loadUntil('/shop', async () => settled(await rollout(id)));
  const final = await rollout(id);
  const summary = JSON.stringify({ total: load.total, failed: load.failed, failures: [...load.failures], byUpstream: [...load.byUpstream], state: final.state, reason: final.reason, changes: final.changes });
  console.log(`# good canary: ${summary}`);
  assert.equal(final.state, 'succeeded', summary);
  assert.equal(load.failed, 0, summary);
  assert.deepEqual(final.changes.map((c) => c.weight), [5, 25, 50, 100]);
  assert.deepEqual(final.decisions.filter((d) => d.verdict === 'promote').map((d) => d.weight), [5, 25, 50, 100]);
  for (const d of final.decisions.filter((x) => x.verdict === 'promote')) assert.ok(d.canary.requests >= ANALYSIS.min_requests, JSON.stringify(d));

  // Each change is a revision authored by the rollout, with the route's new action in its audit rows.
  for (const change of final.changes) {
    const rev = await api('GET', `/v1/revisions/${change.revision}`);
    assert.equal((rev.body as { author: string }).author, `rollout:${id}`);
    assert.match((rev.body as { message: string }).message, new RegExp(`rollout ${id}: shop canary good at ${change.weight}%`));
  }
  const route = await store.get('routes', 'shop');
  assert.deepEqual((route?.spec as { action: unknown }).action, { upstream: 'good' });
  await waitFleet();
  const after100 = await startLoad({ port: gw.envoys[0]!.port, path: '/shop', requests: 100, concurrency: 4 }).result;
  assert.deepEqual([...after100.byUpstream], [['good', 100]], 'at 100% every request reaches the canary');
});

test('a bad canary (20% 500s) is rolled back to 100% stable at the step that showed it, the reason naming max_5xx_percent', async () => {
  const servedBefore = bad.requests;
  const started = await api('POST', '/v1/routes/cart:rollout', { canary: 'bad', steps: [10, 50, 100], step_seconds: 1, analysis: ANALYSIS });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const id = (started.body as RolloutView).id;
  const load = await loadUntil('/cart', async () => settled(await rollout(id)));
  const final = await rollout(id);
  const canaryServed = bad.requests - servedBefore;
  const summary = JSON.stringify({ total: load.total, failed: load.failed, canaryServed, failures: [...load.failures].map(([k, v]) => [k.slice(0, 40), v]), reason: final.reason, decisions: final.decisions.map((d) => [d.verdict, d.weight, d.canary]) });
  // The run's failed requests, reported: all are the canary's 500s, served while it held the first step's weight.
  console.log(`# bad canary: ${summary}`);
  assert.equal(final.state, 'failed', summary);
  assert.match(final.reason ?? '', /^rolled back: max_5xx_percent/);
  const rollback = final.decisions.at(-1)!;
  assert.equal(rollback.verdict, 'rollback');
  assert.equal(rollback.threshold, 'max_5xx_percent');
  assert.ok(rollback.canary.status5xx > 0 && rollback.canary.percent5xx > ANALYSIS.max_5xx_percent, JSON.stringify(rollback));
  // Rolled back at the first step (no promotion), in the same pass as the judgement:
  // the only weights ever committed are the first step's and 0.
  assert.deepEqual(final.decisions.map((d) => d.verdict).filter((v) => v !== 'hold'), ['rollback']);
  assert.deepEqual(final.changes.map((c) => c.weight), [10, 0]);
  assert.equal(rollback.weight, 10);
  // Every failure is one of the canary's 500s: exactly a fifth of what it served (its failure ratio).
  assert.ok(Math.abs(load.failed - canaryServed / 5) < 1, summary);
  assert.ok([...load.failures.keys()].every((k) => k.startsWith('status 500') && k.includes('"upstream":"bad"')), summary);
  const route = await store.get('routes', 'cart');
  assert.deepEqual((route?.spec as { action: unknown }).action, { upstream: 'stable' });
  await waitFleet();
  const afterRollback = await startLoad({ port: gw.envoys[0]!.port, path: '/cart', requests: 100, concurrency: 4 }).result;
  assert.equal(afterRollback.failed, 0);
  assert.deepEqual([...afterRollback.byUpstream], [['stable', 100]]);
});

test('operator actions: pause and resume, a manual :canary aborts the rollout and keeps its weights, :abort sends all traffic back to stable', async () => {
  const slow = { canary: 'good', steps: [10, 50, 100], step_seconds: 600, analysis: ANALYSIS };
  const first = await api('POST', '/v1/routes/ops:rollout', slow);
  assert.equal(first.status, 201, JSON.stringify(first.body));
  const id = (first.body as RolloutView).id;
  assert.equal((await api('POST', `/v1/rollouts/${id}:pause`)).status, 200);
  assert.equal((await rollout(id)).state, 'paused');
  assert.equal((await api('POST', `/v1/rollouts/${id}:pause`)).status, 409, 'pausing a paused rollout is a conflict');
  assert.equal((await api('POST', `/v1/rollouts/${id}:resume`)).status, 200);
  assert.equal((await rollout(id)).state, 'running');

  const manual = await api('POST', '/v1/routes/ops:canary', { weights: [{ upstream: 'stable', weight: 70 }, { upstream: 'good', weight: 30 }] });
  assert.equal(manual.status, 200, JSON.stringify(manual.body));
  const aborted = await rollout(id);
  assert.equal(aborted.state, 'aborted');
  assert.match(aborted.reason ?? '', /route changed by token:ops/);
  const route = await store.get('routes', 'ops');
  assert.deepEqual((route?.spec as { action: unknown }).action, { split: [{ upstream: 'stable', weight: 70 }, { upstream: 'good', weight: 30 }] }, 'the operator\'s weights stand');

  await store.commit('setup', 'reset ops', (draft) => draft.replace('routes', 'ops', plainRoute('ops')));
  const second = await api('POST', '/v1/routes/ops:rollout', slow);
  assert.equal(second.status, 201, JSON.stringify(second.body));
  const id2 = (second.body as RolloutView).id;
  const abort = await api('POST', `/v1/rollouts/${id2}:abort`);
  assert.equal(abort.status, 200, JSON.stringify(abort.body));
  assert.equal((abort.body as RolloutView).state, 'aborted');
  assert.deepEqual(((await store.get('routes', 'ops'))?.spec as { action: unknown }).action, { upstream: 'stable' });
  assert.deepEqual((abort.body as RolloutView).changes.map((c) => c.weight), [10, 0]);

  const list = await api('GET', '/v1/rollouts?route=ops');
  assert.deepEqual((list.body as { items: RolloutView[] }).items.map((r) => r.id), [id2, id]);
  assert.equal((await api('GET', '/v1/rollouts/not-a-uuid')).status, 400);
  const invalid = await api('POST', '/v1/routes/ops:rollout', { ...slow, steps: [50, 10] });
  assert.equal(invalid.status, 422);
  assert.ok(JSON.stringify(invalid.body).includes('"path":"steps.1"'), JSON.stringify(invalid.body));
  assert.equal((await api('POST', '/v1/routes/ops:rollout', { ...slow, canary: 'nope' })).status, 422);
});

test('a control-plane restart mid-rollout: a decided-but-uncommitted step is finished, a committed-but-unrecorded one recognised, both audited; the rollout continues', async () => {
  const started = await api('POST', '/v1/routes/restart:rollout', { canary: 'good', steps: [10, 50, 100], step_seconds: 600, analysis: ANALYSIS });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const id = (started.body as RolloutView).id;
  // The process dies after deciding step 2 (row written) and before committing it.
  await controller.stop();
  const row = await prisma.rollout.findUniqueOrThrow({ where: { id } });
  await prisma.rollout.update({ where: { id }, data: { step: 1, weight: 50, version: { increment: 1 } } });
  assert.equal(row.appliedWeight, 10);
  assert.deepEqual(((await store.get('routes', 'restart'))?.spec as { action: { split: unknown } }).action.split, [{ upstream: 'stable', weight: 90 }, { upstream: 'good', weight: 10 }]);

  controller = startController();
  await controller.start();
  const resumed = await rollout(id);
  assert.equal(resumed.state, 'running');
  assert.deepEqual(resumed.changes.map((c) => c.weight), [10, 50]);
  assert.match(resumed.changes[1]!.why, /restart/);
  const action = ((await store.get('routes', 'restart'))?.spec as { action: { split: unknown } }).action;
  assert.deepEqual(action.split, [{ upstream: 'stable', weight: 50 }, { upstream: 'good', weight: 50 }]);
  // Every revision that touched the route during the rollout was made by it.
  for (const change of resumed.changes) {
    const rev = await api('GET', `/v1/revisions/${change.revision}`);
    assert.equal((rev.body as { author: string }).author, `rollout:${id}`);
  }

  // Second crash, later in the step: the new weight was committed, the row not yet marked.
  await controller.stop();
  const committed = await store.commit(`rollout:${id}`, `rollout ${id}: restart canary good at 100% (step 3 of 3)`, (draft) =>
    draft.replace('routes', 'restart', { ...plainRoute('restart'), action: { upstream: 'good' } }));
  await prisma.rollout.update({ where: { id }, data: { step: 2, weight: 100, version: { increment: 1 } } });
  controller = startController();
  await controller.start();
  const again = await rollout(id);
  assert.equal(again.state, 'running');
  assert.deepEqual(again.changes.map((c) => [c.weight, c.revision]), [[10, resumed.changes[0]!.revision], [50, resumed.changes[1]!.revision], [100, committed.revision]]);
  assert.match(again.changes[2]!.why, /already in place/);
  assert.equal(await store.currentRevision(), committed.revision, 'nothing was committed twice');
  assert.equal((await api('POST', `/v1/rollouts/${id}:abort`)).status, 200);
});

test('the real control-plane process, judging its own fleet stats: a bad canary (20% 500s) and a slow one (400 ms) are rolled back; a restart mid-rollout continues it at the step its audit log explains', async () => {
  // Here the controller is main.ts's and the numbers come from the control
  // plane's own fleet window, fed by the Envoy's metrics_service sink (flushed
  // every second; the window's buckets are 10 s, so steps are 10 s long).
  const cpDb = await createTestDatabase();
  let cp = await startControlPlane({ databaseUrl: cpDb.url });
  const firstToken = cp.token;
  // A restarted process keeps the tokens in Postgres; its own bootstrap token is not created again.
  const call = (method: string, url: string, body?: unknown) => cp.api(method, url, body, { authorization: `Bearer ${firstToken}` });
  let envoy: EnvoyHandle | undefined;
  try {
    const gatewayPort = cp.gatewayPort;
    for (const [url, body] of [
      ['/v1/upstreams', { name: 'stable', endpoints: [{ host: '127.0.0.1', port: stable.port }] }],
      ['/v1/upstreams', { name: 'good', endpoints: [{ host: '127.0.0.1', port: good.port }] }],
      ['/v1/upstreams', { name: 'bad', endpoints: [{ host: '127.0.0.1', port: bad.port }] }],
      ['/v1/upstreams', { name: 'slow', endpoints: [{ host: '127.0.0.1', port: slow.port }] }],
      ['/v1/routes', { name: 'lag', match: { path: { prefix: '/lag' } }, action: { upstream: 'stable' } }],
      ['/v1/routes', { name: 'web', match: { path: { prefix: '/web' } }, action: { upstream: 'stable' } }],
      ['/v1/routes', { name: 'held', match: { path: { prefix: '/held' } }, action: { upstream: 'stable' } }],
    ] as const) assert.equal((await call('POST', url, body)).status, 201);
    envoy = await startEnvoy({ adsPort: cp.xdsPort, nodeId: 'rollout-cp-1', nodeCluster: 'default', metricsSink: { flushIntervalMs: 1_000 } });
    for (let i = 0; i < 200 && (await fetchVia(gatewayPort, '/web').catch(() => ({ status: 0 }))).status !== 200; i++) await sleep(50);

    const held = await call('POST', '/v1/routes/held:rollout', { canary: 'good', steps: [10, 50, 100], step_seconds: 600, analysis: ANALYSIS });
    assert.equal(held.status, 201, JSON.stringify(held.body));
    const heldId = (held.body as RolloutView).id;

    const servedBefore = bad.requests;
    const started = await call('POST', '/v1/routes/web:rollout', { canary: 'bad', steps: [10, 100], step_seconds: 10, analysis: ANALYSIS });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const id = (started.body as RolloutView).id;
    const lagStarted = await call('POST', '/v1/routes/lag:rollout', { canary: 'slow', steps: [10, 100], step_seconds: 10, analysis: { ...ANALYSIS, max_p99_increase_ms: 200 } });
    assert.equal(lagStarted.status, 201, JSON.stringify(lagStarted.body));
    const lagId = (lagStarted.body as RolloutView).id;
    const finished = (rid: string) => async () => settled((await call('GET', `/v1/rollouts/${rid}`)).body as RolloutView);
    const [load] = await Promise.all([loadUntil('/web', finished(id), 600, gatewayPort), loadUntil('/lag', finished(lagId), 600, gatewayPort)]);
    const final = (await call('GET', `/v1/rollouts/${id}`)).body as RolloutView;
    const lag = (await call('GET', `/v1/rollouts/${lagId}`)).body as RolloutView;
    console.log(`# slow canary, control-plane process: ${JSON.stringify({ reason: lag.reason, decisions: lag.decisions.map((d) => [d.verdict, d.weight, d.canary.p99Ms, d.stable.p99Ms]) })}`);
    assert.equal(lag.state, 'failed', JSON.stringify(lag));
    assert.match(lag.reason ?? '', /^rolled back: max_p99_increase_ms/);
    assert.deepEqual(lag.changes.map((c) => c.weight), [10, 0]);
    assert.deepEqual(((await call('GET', '/v1/routes/lag')).body as { spec: { action: unknown } }).spec.action, { upstream: 'stable' });
    const canaryServed = bad.requests - servedBefore;
    const summary = JSON.stringify({ total: load.total, failed: load.failed, canaryServed, reason: final.reason, decisions: final.decisions.map((d) => [d.verdict, d.weight, d.canary, d.stable.requests]) });
    console.log(`# bad canary, control-plane process: ${summary}`);
    assert.equal(final.state, 'failed', summary);
    assert.match(final.reason ?? '', /^rolled back: max_5xx_percent/);
    assert.deepEqual(final.changes.map((c) => c.weight), [10, 0], 'rolled back at the first step, in the pass that judged it');
    // The bad upstream fails exactly every 5th answer it gives, counted from its
    // first answer (which may fall before servedBefore): every failure is one of
    // the canary's own 500s, so failed is canaryServed / 5 rounded either way.
    assert.ok(Math.abs(load.failed - canaryServed / 5) < 1, summary);
    assert.deepEqual(((await call('GET', '/v1/routes/web')).body as { spec: { action: unknown } }).spec.action, { upstream: 'stable' });

    await cp.stop();
    cp = await startControlPlane({ databaseUrl: cpDb.url, gatewayPort });
    const after = (await call('GET', `/v1/rollouts/${heldId}`)).body as RolloutView;
    assert.equal(after.state, 'running', JSON.stringify(after));
    assert.equal(after.weight, 10);
    assert.deepEqual(after.changes.map((c) => c.weight), [10]);
    const route = (await call('GET', '/v1/routes/held')).body as { spec: { action: unknown } };
    assert.deepEqual(route.spec.action, { split: [{ upstream: 'stable', weight: 90 }, { upstream: 'good', weight: 10 }] });
    // The newest revision is one of the rollbacks from before the restart: nothing moved a route across it.
    const head = ((await call('GET', '/v1/revisions?limit=1')).body as { items: Array<{ revision: number; author: string }> }).items[0]!;
    const lastBefore = [[final.changes[1]!.revision, `rollout:${id}`], [lag.changes[1]!.revision, `rollout:${lagId}`]].sort((a, b) => Number(b[0]) - Number(a[0]))[0];
    assert.deepEqual([head.revision, head.author], lastBefore);
    const heldRevision = ((await call('GET', `/v1/revisions/${after.changes[0]!.revision}`)).body as { author: string }).author;
    assert.equal(heldRevision, `rollout:${heldId}`);

    const aborted = await call('POST', `/v1/rollouts/${heldId}:abort`);
    assert.equal(aborted.status, 200, JSON.stringify(aborted.body));
    assert.deepEqual(((await call('GET', '/v1/routes/held')).body as { spec: { action: unknown } }).spec.action, { upstream: 'stable' });
  } finally {
    await envoy?.stop();
    await cp.stop();
    await cpDb.drop();
  }
});
