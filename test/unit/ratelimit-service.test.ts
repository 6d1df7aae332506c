// The rate-limit service: descriptors in Sluice's layout -> counters -> Envoy's
// answer (statuses, X-RateLimit-* / Retry-After headers, problem+json body), the
// failure modes with a real Redis taken down and brought back, and the gRPC face
// called by a real gRPC client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { parseState, type State } from '../../control-plane/src/model/index.ts';
import type { RateLimitRequest, RateLimitResponse } from '../../control-plane/src/proto/codec.ts';
import { IoredisRunner } from '../../control-plane/src/ratelimit/ioredis-runner.ts';
import { MemoryCounterStore } from '../../control-plane/src/ratelimit/memory-store.ts';
import { RedisCounterStore } from '../../control-plane/src/ratelimit/redis-store.ts';
import { RATE_LIMIT_SERVICE_DEFINITION } from '../../control-plane/src/ratelimit/client.ts';
import { RateLimitServer } from '../../control-plane/src/ratelimit/server.ts';
import { RateLimitService, type RateLimitLog } from '../../control-plane/src/ratelimit/service.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';
import { sleep } from '../helpers/net.ts';

let redis: TestRedis;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.close();
});

function state(revision: number, policies: unknown[]): State {
  const parsed = parseState({ revision, rate_limit_policies: policies });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  return parsed.value;
}

const POLICIES = [
  { name: 'per-route', key: ['route'], limit: { requests: 3, per: 'minute' } },
  { name: 'burst', key: ['route'], limit: { requests: 2, per: 'minute' }, burst: 3 },
  { name: 'per-tenant', key: ['route', { header: 'x-tenant' }], limit: { requests: 1, per: 'hour' }, algorithm: 'fixed_window' },
];

/** A descriptor as translate/filters.ts has Envoy build it. */
function descriptor(policy: string, ...entries: Array<[string, string]>) {
  return { entries: [{ key: 'sluice_policy', value: policy }, ...entries.map(([key, value]) => ({ key, value }))] };
}

function request(...descriptors: ReturnType<typeof descriptor>[]): RateLimitRequest {
  return { domain: 'sluice', descriptors };
}

function header(response: RateLimitResponse, name: string): string | undefined {
  return response.response_headers_to_add?.find((h) => h.key === name)?.value;
}

class MemoryLog implements RateLimitLog {
  readonly lines: Array<{ level: string; msg: string }> = [];
  info(msg: string): void {
    this.lines.push({ level: 'info', msg });
  }
  error(msg: string): void {
    this.lines.push({ level: 'error', msg });
  }
}

test('admits up to the limit with X-RateLimit-* headers, then answers OVER_LIMIT with Retry-After and a problem+json body naming the policy', async () => {
  const service = new RateLimitService({ store: new MemoryCounterStore(), domain: 'sluice' });
  service.setState(state(1, POLICIES));
  const call = () => service.shouldRateLimit(request(descriptor('per-route', ['route', 'orders'])));
  const remaining: Array<string | undefined> = [];
  for (let i = 0; i < 3; i += 1) {
    const ok = await call();
    assert.equal(ok.overall_code, 'OK');
    assert.equal(header(ok, 'x-ratelimit-limit'), '3');
    remaining.push(header(ok, 'x-ratelimit-remaining'));
    assert.ok(Number(header(ok, 'x-ratelimit-reset')) > 0 && Number(header(ok, 'x-ratelimit-reset')) <= 61);
  }
  assert.deepEqual(remaining, ['2', '1', '0']);
  const over = await call();
  assert.equal(over.overall_code, 'OVER_LIMIT');
  assert.equal(over.statuses?.[0]?.code, 'OVER_LIMIT');
  assert.equal(over.statuses?.[0]?.current_limit?.name, 'per-route');
  assert.equal(header(over, 'x-ratelimit-remaining'), '0');
  const retry = Number(header(over, 'retry-after'));
  assert.ok(retry >= 1 && retry <= 61, `retry-after ${retry}`);
  assert.equal(header(over, 'x-ratelimit-reset'), String(retry));
  assert.equal(header(over, 'content-type'), 'application/problem+json');
  const body = JSON.parse(String(over.raw_body)) as { status: number; policy: string; retry_after_s: number };
  assert.equal(body.status, 429);
  assert.equal(body.policy, 'per-route');
  assert.equal(body.retry_after_s, retry);
  // Another route's counter is separate.
  assert.equal((await service.shouldRateLimit(request(descriptor('per-route', ['route', 'users'])))).overall_code, 'OK');
  assert.deepEqual(service.metrics.snapshot().decisions, { 'per-route/ok': 4, 'per-route/over_limit': 1 });
});

test('burst is headroom above the limit: requests + burst are admitted, and the headers report that capacity', async () => {
  const service = new RateLimitService({ store: new MemoryCounterStore(), domain: 'sluice' });
  service.setState(state(1, POLICIES));
  const results: string[] = [];
  const limits = new Set<string | undefined>();
  for (let i = 0; i < 7; i += 1) {
    const response = await service.shouldRateLimit(request(descriptor('burst', ['route', 'r'])));
    results.push(String(response.overall_code));
    limits.add(header(response, 'x-ratelimit-limit'));
  }
  assert.deepEqual(results, ['OK', 'OK', 'OK', 'OK', 'OK', 'OVER_LIMIT', 'OVER_LIMIT']);
  assert.deepEqual([...limits], ['5']);
});

test('several policies on one request are decided together; headers describe the tightest; unknown policies, other layouts and other domains are not limited', async () => {
  const service = new RateLimitService({ store: new MemoryCounterStore(), domain: 'sluice' });
  service.setState(state(1, POLICIES));
  const both = (tenant: string) =>
    request(descriptor('per-route', ['route', 'orders']), descriptor('per-tenant', ['route', 'orders'], ['header:x-tenant', tenant]), descriptor('gone-policy'), {
      entries: [{ key: 'other', value: 'x' }],
    });
  const first = await service.shouldRateLimit(both('a'));
  assert.equal(first.overall_code, 'OK');
  assert.equal(first.statuses?.length, 4, 'one status per descriptor');
  assert.equal(header(first, 'x-ratelimit-limit'), '1', 'the tenant policy has fewer left');
  const second = await service.shouldRateLimit(both('a'));
  assert.equal(second.overall_code, 'OVER_LIMIT');
  assert.deepEqual(second.statuses?.map((s) => s.code), ['OK', 'OVER_LIMIT', 'OK', 'OK']);
  // The refused request counted nothing on per-route: tenant b still gets 2 more of its 3.
  assert.equal((await service.shouldRateLimit(both('b'))).overall_code, 'OK');
  const routeOnly = await service.shouldRateLimit(request(descriptor('per-route', ['route', 'orders'])));
  assert.equal(header(routeOnly, 'x-ratelimit-remaining'), '0', 'per-route counted a, b and this one: 3 of 3');
  assert.equal((await service.shouldRateLimit({ domain: 'elsewhere', descriptors: [descriptor('per-route', ['route', 'orders'])] })).overall_code, 'OK');
});

test('a changed limit applies on the next State, keeping the count', async () => {
  const service = new RateLimitService({ store: new MemoryCounterStore(), domain: 'sluice' });
  service.setState(state(1, POLICIES));
  const call = () => service.shouldRateLimit(request(descriptor('per-route', ['route', 'x'])));
  for (let i = 0; i < 3; i += 1) assert.equal((await call()).overall_code, 'OK');
  assert.equal((await call()).overall_code, 'OVER_LIMIT');
  service.setState(state(2, [{ ...POLICIES[0], limit: { requests: 5, per: 'minute' } }]));
  assert.equal(service.stateRevision, 2);
  assert.equal((await call()).overall_code, 'OK');
  assert.equal((await call()).overall_code, 'OK');
  assert.equal((await call()).overall_code, 'OVER_LIMIT');
});

test('Redis down: allow policies admit, deny policies refuse with 429 problem+json; the outage and the recovery are each logged once; counting resumes without a restart', async () => {
  const runner = new IoredisRunner(redis.url, { commandTimeoutMs: 1_000, maxReconnectDelayMs: 100 });
  assert.ok(await runner.connect());
  const log = new MemoryLog();
  const service = new RateLimitService({
    store: new RedisCounterStore(runner),
    domain: 'sluice',
    log,
    storeTimeoutMs: 2_000,
  });
  // The policies' own on_error decides: 'burst' refuses, the others admit.
  service.setState(state(1, POLICIES.map((p) => (p.name === 'burst' ? { ...p, on_error: 'deny' } : p))));
  const allowPolicy = () => service.shouldRateLimit(request(descriptor('per-route', ['route', 'outage'])));
  const denyPolicy = () => service.shouldRateLimit(request(descriptor('burst', ['route', 'outage'])));
  try {
    assert.equal((await allowPolicy()).overall_code, 'OK');
    await redis.stop();
    for (let i = 0; i < 5; i += 1) {
      assert.equal((await allowPolicy()).overall_code, 'OK', 'allow admits past the limit of 3 while Redis is down');
      const refused = await denyPolicy();
      assert.equal(refused.overall_code, 'OVER_LIMIT');
      assert.equal(header(refused, 'retry-after'), '1');
      assert.equal((JSON.parse(String(refused.raw_body)) as { policy: string }).policy, 'burst');
    }
    await redis.start();
    // Poll until the client has reconnected and a call is counted again.
    const deadline = Date.now() + 15_000;
    while ((await allowPolicy()).response_headers_to_add === undefined) {
      assert.ok(Date.now() < deadline, 'counting resumed after Redis came back');
      await sleep(20);
    }
    // Redis came back empty: that call counted 1; two more, then over.
    assert.equal((await allowPolicy()).overall_code, 'OK');
    assert.equal((await allowPolicy()).overall_code, 'OK');
    assert.equal((await allowPolicy()).overall_code, 'OVER_LIMIT');
    assert.deepEqual(
      log.lines.map((l) => l.level),
      ['error', 'info'],
      `one outage line and one recovery line: ${JSON.stringify(log.lines)}`,
    );
    const metrics = service.metrics.snapshot();
    assert.ok(metrics.storeErrors >= 10);
    assert.ok((metrics.decisions['burst/error_denied'] ?? 0) >= 5);
    assert.ok((metrics.decisions['per-route/error_allowed'] ?? 0) >= 5);
  } finally {
    await service.close();
  }
});

// The client's own backstop is two minutes, so only the service's 200 ms deadline can
// answer within the test's limit (a test limit, not a speed assertion).
test('a slow store is an error after the bounded timeout, and the failure mode answers', { timeout: 20_000 }, async () => {
  const runner = new IoredisRunner(redis.url, { commandTimeoutMs: 120_000 });
  assert.ok(await runner.connect());
  const log = new MemoryLog();
  const service = new RateLimitService({ store: new RedisCounterStore(runner), domain: 'sluice', log, storeTimeoutMs: 200 });
  service.setState(state(1, POLICIES.map((p) => ({ ...p, on_error: 'deny' }))));
  const call = () => service.shouldRateLimit(request(descriptor('per-route', ['route', 'slow'])));
  try {
    assert.equal((await call()).overall_code, 'OK');
    redis.pause(); // connected, but nothing answers
    try {
      const refused = await call();
      assert.equal(refused.overall_code, 'OVER_LIMIT');
      assert.equal(header(refused, 'retry-after'), '1');
    } finally {
      redis.resume();
    }
    assert.deepEqual(log.lines.map((l) => l.level), ['error']);
  } finally {
    await service.close();
  }
});

test('gRPC: ShouldRateLimit answers a real gRPC client over loopback', async () => {
  const service = new RateLimitService({ store: new MemoryCounterStore(), domain: 'sluice' });
  service.setState(state(1, POLICIES));
  const server = new RateLimitServer(service);
  const port = await server.listen('127.0.0.1', 0);
  const Client = grpc.makeGenericClientConstructor(RATE_LIMIT_SERVICE_DEFINITION, 'RateLimitService');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (req: RateLimitRequest) =>
    new Promise<RateLimitResponse>((resolve, reject) => {
      const method = (client as unknown as Record<string, (r: RateLimitRequest, cb: (err: Error | null, res: RateLimitResponse) => void) => void>)['ShouldRateLimit']!;
      method.call(client, req, (err, res) => (err ? reject(err) : resolve(res)));
    });
  try {
    const codes: string[] = [];
    for (let i = 0; i < 4; i += 1) codes.push(String((await call(request(descriptor('per-route', ['route', 'g'])))).overall_code));
    assert.deepEqual(codes, ['OK', 'OK', 'OK', 'OVER_LIMIT']);
    const over = await call(request(descriptor('per-route', ['route', 'g'])));
    assert.equal(JSON.parse(Buffer.from(over.raw_body as Uint8Array).toString()).policy, 'per-route');
  } finally {
    client.close();
    await server.close();
  }
});
