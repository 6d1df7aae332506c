// Rate-limit policy behaviour through a real Envoy and Sluice's rate-limit service
// (counters in memory: one service): the per-Envoy local shield tripping at its
// bucket size, gateway-wide policies with a route opting out, and the rate-limit
// service itself going away (allow routes admit, deny routes answer 503) and
// coming back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryCounterStore } from '../../control-plane/src/ratelimit/memory-store.ts';
import { RateLimitServer } from '../../control-plane/src/ratelimit/server.ts';
import { RateLimitService } from '../../control-plane/src/ratelimit/service.ts';
import { startGateway, type Gateway, type StateInput } from '../helpers/gateway.ts';
import { sleep } from '../helpers/net.ts';
import { fetchVia, startHttpUpstream, type FetchResult, type HttpUpstream } from '../helpers/upstream.ts';

const SHIELD = 5;

let upstream: HttpUpstream;
let gw: Gateway;
let rlPort: number;
let server: RateLimitServer | undefined;

function startService(port: number): Promise<number> {
  const service = new RateLimitService({ store: new MemoryCounterStore(), domain: 'sluice', storeTimeoutMs: 200 });
  service.setState(current);
  server = new RateLimitServer(service);
  return server.listen('127.0.0.1', port);
}

const forward = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  match: { path: { prefix: `/${name}` } },
  action: { upstream: 'echo' },
  ...extra,
});

function state(): StateInput {
  return {
    revision: 1,
    upstreams: [{ name: 'echo', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }],
    rate_limit_policies: [
      // Keyed by route alone: each route also gets a local bucket of SHIELD per Envoy.
      // Per hour, so no refill can happen while the test runs.
      { name: 'shield', key: ['route'], limit: { requests: SHIELD, per: 'hour' } },
      // Every forwarding route, each counted on its own (route x client).
      { name: 'everyone', key: ['route', 'client_ip'], limit: { requests: 3, per: 'hour' }, scope: 'gateway' },
      { name: 'open', key: ['client_ip', { header: 'x-k' }], limit: { requests: 1_000, per: 'hour' } },
      { name: 'closed', key: ['client_ip', { header: 'x-k' }], limit: { requests: 1_000, per: 'hour' }, on_error: 'deny' },
    ],
    routes: [
      forward('shielded', { rate_limits: ['shield'], rate_limit_opt_out: ['everyone'] }),
      forward('a'),
      forward('b'),
      forward('free', { rate_limit_opt_out: ['everyone'] }),
      forward('allow', { rate_limits: ['open'], rate_limit_opt_out: ['everyone'] }),
      forward('deny', { rate_limits: ['open', 'closed'], rate_limit_opt_out: ['everyone'] }),
    ],
  };
}

let current: Awaited<ReturnType<Gateway['apply']>>;

before(async () => {
  upstream = await startHttpUpstream({ name: 'echo' });
  // The service's port is fixed before the gateway's config names it.
  const probe = new RateLimitServer(new RateLimitService({ store: new MemoryCounterStore(), domain: 'sluice' }));
  rlPort = await probe.listen('127.0.0.1', 0);
  await probe.close();
  gw = await startGateway({
    envoys: [{ nodeId: 'rl-policies' }],
    translateOptions: { ratelimit: { clusterName: 'sluice_ratelimit', host: '127.0.0.1', port: rlPort, domain: 'sluice' } },
  });
  current = await gw.apply(state());
  await startService(rlPort);
});

after(async () => {
  await gw?.stop();
  await server?.close();
  await upstream?.close();
});

const get = (path: string, headers: Record<string, string> = {}) => fetchVia(gw.envoys[0]!.port, path, { headers });

async function statuses(path: string, n: number, headers: Record<string, string> = {}): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i += 1) out.push((await get(path, headers)).status);
  return out;
}

describe('policies through one Envoy', () => {
  test('the local shield trips at its bucket size: exactly 5 of 8 admitted, the rest refused by Envoy itself', async () => {
    const results: FetchResult[] = [];
    for (let i = 0; i < SHIELD + 3; i += 1) results.push(await get('/shielded'));
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200, 429, 429, 429]);
    // Refused by the local bucket (its own body), before any call to the service.
    for (const r of results.slice(SHIELD)) assert.equal(r.body, 'local_rate_limited');
    const stats = await gw.envoys[0]!.handle.stats('sluice_local_ratelimit');
    const limited = Object.entries(stats).find(([name]) => name.endsWith('sluice_local_ratelimit.http_local_rate_limit.rate_limited'));
    assert.equal(limited?.[1], 3, JSON.stringify(stats));
  });

  test('a gateway-wide policy limits every route it is not opted out of, each route on its own count', async () => {
    for (const path of ['/a', '/b']) {
      const results: FetchResult[] = [];
      for (let i = 0; i < 4; i += 1) results.push(await get(path));
      assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 429], path);
      assert.equal((JSON.parse(results[3]!.body) as { policy: string }).policy, 'everyone');
      assert.equal(results[0]!.headers['x-ratelimit-limit'], '3');
    }
    // The opted-out route is not limited by it (and has no other policy).
    const free: FetchResult[] = [];
    for (let i = 0; i < 5; i += 1) free.push(await get('/free'));
    assert.deepEqual(free.map((r) => r.status), [200, 200, 200, 200, 200]);
    assert.equal(free[0]!.headers['x-ratelimit-limit'], undefined);
  });

  test('rate-limit service stopped: routes whose policies all say allow admit; a route with an on_error deny policy answers 503; service back: counting resumes', async () => {
    assert.equal((await get('/allow', { 'x-k': '1' })).headers['x-ratelimit-remaining'], '999');
    assert.equal((await get('/deny', { 'x-k': '2' })).headers['x-ratelimit-remaining'], '999');

    await server!.close();
    server = undefined;
    assert.deepEqual(await statuses('/allow', 3, { 'x-k': '1' }), [200, 200, 200], 'allow: admitted uncounted');
    assert.deepEqual(await statuses('/deny', 3, { 'x-k': '1' }), [503, 503, 503], 'deny: refused while nothing can count');
    const upstreamBefore = upstream.requests;
    await get('/deny', { 'x-k': '1' });
    assert.equal(upstream.requests, upstreamBefore, 'the refused request never reached the upstream');

    await startService(rlPort);
    // Envoy reconnects by itself: poll until a response carries counts again.
    let back: FetchResult | undefined;
    for (let attempt = 0; attempt < 300 && !back; attempt += 1) {
      const r = await get('/deny', { 'x-k': '3' });
      if (r.status === 200 && r.headers['x-ratelimit-remaining'] !== undefined) back = r;
      else await sleep(50);
    }
    assert.ok(back, 'the deny route admits and counts again once the service is back');
    assert.equal(back.headers['x-ratelimit-remaining'], '999', 'a fresh service: that was its first count for this key');
  });
});
