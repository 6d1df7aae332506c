// Global rate limits through the whole request path: two real Envoys (each its own
// node group), Sluice's rate-limit service over gRPC, counters in a real Redis, a
// real upstream. Accuracy across the fleet under concurrency, the 429's headers and
// body, and a Redis outage (allow admits, deny refuses, counting resumes).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IoredisRunner } from '../../control-plane/src/ratelimit/ioredis-runner.ts';
import { MemoryCounterStore } from '../../control-plane/src/ratelimit/memory-store.ts';
import { RedisCounterStore } from '../../control-plane/src/ratelimit/redis-store.ts';
import { RateLimitServer } from '../../control-plane/src/ratelimit/server.ts';
import { DEFAULT_STORE_TIMEOUT_MS, RateLimitService, type RateLimitLog } from '../../control-plane/src/ratelimit/service.ts';
import type { CounterStore } from '../../control-plane/src/ratelimit/store.ts';
import { startGateway, type Gateway, type StateInput } from '../helpers/gateway.ts';
import { sleep } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { fetchVia, startHttpUpstream, type FetchResult, type HttpUpstream } from '../helpers/upstream.ts';

const LIMIT = 100;
const CLIENTS = 8;
const PER_CLIENT = 25; // 8 x 25 = 200 requests: twice the limit, 100 through each Envoy

let redis: TestRedis;
let upstream: HttpUpstream;

/** One fleet: two Envoys and one rate-limit service on the given store. */
interface Fleet {
  gw: Gateway;
  server: RateLimitServer;
  service: RateLimitService;
  logLines: Array<{ level: string; msg: string }>;
}

function state(revision: number): StateInput {
  const limited = (name: string, prefix: string, policy: string) => ({
    name,
    match: { path: { prefix } },
    action: { upstream: 'echo' },
    rate_limits: [policy],
  });
  return {
    revision,
    upstreams: [{ name: 'echo', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }],
    rate_limit_policies: [
      // Keyed by route alone: the route also gets the per-Envoy local shield (a bucket
      // of 100 per Envoy), which each Envoy's 100 requests exactly use up.
      { name: 'per-route', key: ['route'], limit: { requests: LIMIT, per: 'minute' } },
      { name: 'per-ip', key: ['client_ip'], limit: { requests: LIMIT, per: 'minute' } },
      { name: 'route-tenant', key: ['route', { header: 'x-tenant' }], limit: { requests: LIMIT, per: 'minute' } },
      { name: 'lenient', key: [{ header: 'x-client' }], limit: { requests: 3, per: 'minute' } },
      { name: 'strict', key: [{ header: 'x-client' }], limit: { requests: 1_000, per: 'minute' }, on_error: 'deny' },
    ],
    routes: [
      limited('by-route', '/by-route', 'per-route'),
      limited('by-ip', '/by-ip', 'per-ip'),
      limited('by-tenant', '/by-tenant', 'route-tenant'),
      limited('lenient', '/lenient', 'lenient'),
      limited('strict', '/strict', 'strict'),
    ],
  };
}

before(async () => {
  redis = await startRedis();
  upstream = await startHttpUpstream({ name: 'echo' });
});

after(async () => {
  await upstream?.close();
  await redis?.close();
});

async function redisStore(): Promise<CounterStore> {
  const runner = new IoredisRunner(redis.url, { maxReconnectDelayMs: 100 });
  assert.ok(await runner.connect());
  return new RedisCounterStore(runner);
}

async function startFleet(store: CounterStore, name: string): Promise<Fleet> {
  const logLines: Fleet['logLines'] = [];
  const log: RateLimitLog = {
    info: (msg) => logLines.push({ level: 'info', msg }),
    error: (msg) => logLines.push({ level: 'error', msg }),
  };
  const service = new RateLimitService({
    store,
    domain: 'sluice',
    log,
    // The service's default (250 ms), under Envoy's filter timeout (RATELIMIT_TIMEOUT_MS,
    // 500 ms) so the policy's own failure mode answers before Envoy gives up. (80 ms
    // here made a Redis answer that was merely slow, on a machine under heavy load,
    // an outage: an admission without headers. A stopped Redis fails at once anyway.)
    storeTimeoutMs: DEFAULT_STORE_TIMEOUT_MS,
  });
  const server = new RateLimitServer(service);
  const port = await server.listen('127.0.0.1', 0);
  const gw = await startGateway({
    envoys: [{ nodeId: `${name}-a` }, { nodeId: `${name}-b`, delta: true }],
    translateOptions: { ratelimit: { clusterName: 'sluice_ratelimit', host: '127.0.0.1', port, domain: 'sluice' } },
  });
  service.setState(await gw.apply(state(1)));
  return { gw, server, service, logLines };
}

async function stopFleet(fleet: Fleet | undefined): Promise<void> {
  await fleet?.gw.stop();
  await fleet?.server.close();
}

/** 8 clients at once, half through each Envoy, each sending its requests back to back. */
async function burst(gw: Gateway, path: string, headers: Record<string, string> = {}): Promise<FetchResult[]> {
  const clients = Array.from({ length: CLIENTS }, async (_, client) => {
    const port = gw.envoys[client % 2]!.port;
    const results: FetchResult[] = [];
    for (let i = 0; i < PER_CLIENT; i += 1) results.push(await fetchVia(port, path, { headers }));
    return results;
  });
  return (await Promise.all(clients)).flat();
}

/** Envoy counts the calls it let through because the service failed or was slow. */
async function failOpenCount(gw: Gateway): Promise<number> {
  let total = 0;
  for (const envoy of gw.envoys) {
    const stats = await envoy.handle.stats('ratelimit');
    for (const [name, value] of Object.entries(stats)) if (/ratelimit\.(error|failure_mode_allowed)$/.test(name)) total += value;
  }
  return total;
}

async function assertExactlyTheLimit(gw: Gateway, path: string, policy: string, headers: Record<string, string> = {}): Promise<void> {
  const before = upstream.requests;
  const failOpenBefore = await failOpenCount(gw);
  const results = await burst(gw, path, headers);
  const failOpen = (await failOpenCount(gw)) - failOpenBefore;
  const admitted = results.filter((r) => r.status === 200);
  const limited = results.filter((r) => r.status === 429);
  const note = `(Envoy let ${failOpen} through on a service error or timeout)`;
  assert.equal(admitted.length, LIMIT, `admitted across both Envoys ${note}`);
  assert.equal(limited.length, CLIENTS * PER_CLIENT - LIMIT, `the rest are 429 ${note}`);
  assert.equal(upstream.requests - before, LIMIT, 'the upstream saw exactly the admitted requests');
  // Each admission saw a distinct count: the remaining values are exactly 99..0.
  const remaining = admitted.map((r) => Number(r.headers['x-ratelimit-remaining'])).sort((a, b) => a - b);
  assert.deepEqual(remaining, Array.from({ length: LIMIT }, (_, i) => i));
  for (const r of admitted) {
    assert.equal(r.headers['x-ratelimit-limit'], String(LIMIT));
    const reset = Number(r.headers['x-ratelimit-reset']);
    assert.ok(reset >= 1 && reset <= 61, `x-ratelimit-reset ${reset}`);
  }
  for (const r of limited) {
    assert.equal(r.headers['x-ratelimit-limit'], String(LIMIT));
    assert.equal(r.headers['x-ratelimit-remaining'], '0');
    const retryAfter = Number(r.headers['retry-after']);
    assert.ok(retryAfter >= 1 && retryAfter <= 61, `retry-after ${r.headers['retry-after']}`);
    assert.equal(r.headers['x-ratelimit-reset'], r.headers['retry-after']);
    assert.equal(r.headers['content-type'], 'application/problem+json');
    const body = JSON.parse(r.body) as { status: number; policy: string; retry_after_s: number };
    assert.equal(body.status, 429);
    assert.equal(body.policy, policy);
    assert.equal(body.retry_after_s, retryAfter);
  }
}

for (const kind of ['redis', 'memory'] as const) {
  describe(`counters in ${kind === 'redis' ? 'Redis' : 'memory (one service replica)'}`, () => {
    let fleet: Fleet;
    before(async () => {
      fleet = await startFleet(kind === 'redis' ? await redisStore() : new MemoryCounterStore(), `rl-${kind}`);
    });
    after(() => stopFleet(fleet));

    test('limit 100/minute keyed by route: 8 concurrent clients through two Envoys get exactly 100 admitted, the rest 429 with Retry-After and X-RateLimit-*', async () => {
      await assertExactlyTheLimit(fleet.gw, '/by-route/x', 'per-route');
    });

    test('limit 100/minute keyed by client IP: exactly 100 admitted across both Envoys', async () => {
      await assertExactlyTheLimit(fleet.gw, '/by-ip/x', 'per-ip');
    });

    test('limit 100/minute keyed by route x header: exactly 100 for one tenant; another tenant has its own 100', async () => {
      await assertExactlyTheLimit(fleet.gw, '/by-tenant/x', 'route-tenant', { 'x-tenant': 'acme' });
      const other = await fetchVia(fleet.gw.envoys[0]!.port, '/by-tenant/x', { headers: { 'x-tenant': 'globex' } });
      assert.equal(other.status, 200);
      assert.equal(other.headers['x-ratelimit-remaining'], String(LIMIT - 1));
    });

    if (kind === 'memory') return;

    test('Redis stopped mid-test: allow policies admit, deny policies refuse with 429; Redis back: counting resumes; each transition logged once', async () => {
      const port = fleet.gw.envoys[0]!.port;
      const lenient = (client: string) => fetchVia(port, '/lenient/x', { headers: { 'x-client': client } });
      const strict = (client: string) => fetchVia(port, '/strict/x', { headers: { 'x-client': client } });
      const statuses = async (send: () => Promise<FetchResult>, n: number) => {
        const out: number[] = [];
        for (let i = 0; i < n; i += 1) out.push((await send()).status);
        return out;
      };
      assert.deepEqual(await statuses(() => lenient('before'), 4), [200, 200, 200, 429], 'counting before the outage');
      assert.equal((await strict('before')).status, 200);
      assert.equal(fleet.logLines.length, 0);

      await redis.stop();
      assert.deepEqual(await statuses(() => lenient('during'), 6), [200, 200, 200, 200, 200, 200], 'allow: admitted past the limit of 3');
      const refused = await strict('during');
      assert.equal(refused.status, 429, 'deny: refused while the counters cannot be read');
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal((JSON.parse(refused.body) as { policy: string }).policy, 'strict');
      assert.equal((await strict('during')).status, 429);

      await redis.start();
      // Poll (the client reconnects by itself) until a response carries counts again.
      let first: FetchResult | undefined;
      for (let attempt = 0; attempt < 300 && first === undefined; attempt += 1) {
        const r = await lenient('after');
        if (r.headers['x-ratelimit-remaining'] !== undefined) first = r;
        else await sleep(50);
      }
      assert.ok(first, 'counting resumed after Redis came back, without a restart');
      assert.equal(first.status, 200);
      assert.equal(first.headers['x-ratelimit-remaining'], '2', 'the restarted Redis is empty: that was the first counted request');
      assert.deepEqual(await statuses(() => lenient('after'), 3), [200, 200, 429]);
      assert.equal((await strict('after')).status, 200, 'deny policies admit again');
      assert.deepEqual(
        fleet.logLines.map((l) => l.level),
        ['error', 'info'],
        `the outage and the recovery, once each: ${JSON.stringify(fleet.logLines)}`,
      );
      const metrics = fleet.service.metrics.snapshot();
      assert.ok((metrics.decisions['strict/error_denied'] ?? 0) >= 2);
      assert.ok((metrics.decisions['lenient/error_allowed'] ?? 0) >= 6);
      assert.equal(metrics.overLimit['per-route'], CLIENTS * PER_CLIENT - LIMIT);
    });
  });
}
