// The request-path services on their worker thread, as main.ts runs them: a
// revision installed through the host is what the next check answers from, the
// counters cross the thread at scrape time, and a thread that dies is replaced
// on the same ports with the latest revision.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { AUTHZ_CONTEXT } from '../../control-plane/src/model/index.ts';
import type { CheckResponse, RateLimitResponse } from '../../control-plane/src/proto/codec.ts';
import { AUTHORIZATION_SERVICE } from '../../control-plane/src/authz/client.ts';
import type { WireCheckRequest } from '../../control-plane/src/authz/wire.ts';
import { RATE_LIMIT_SERVICE_DEFINITION } from '../../control-plane/src/ratelimit/client.ts';
import { RequestPathWorker } from '../../control-plane/src/request-path/host.ts';
import { requestPathState } from '../../control-plane/src/request-path/protocol.ts';
import { generateApiKey } from '../../control-plane/src/store/api-keys.ts';
import { parseTestState } from '../helpers/gateway.ts';

const SECRET = 'request-path-worker-secret-0123456789abcdef';
const aliceKey = generateApiKey(SECRET);
const logged: Array<{ level: string; msg: string }> = [];
const log = {
  info: (msg: string) => logged.push({ level: 'info', msg }),
  warn: (msg: string) => logged.push({ level: 'warn', msg }),
  error: (msg: string) => logged.push({ level: 'error', msg }),
};

type CheckClient = grpc.Client & { Check: (req: WireCheckRequest, cb: (err: grpc.ServiceError | null, res?: CheckResponse) => void) => void };
type RateLimitClient = grpc.Client & { ShouldRateLimit: (req: unknown, cb: (err: grpc.ServiceError | null, res?: RateLimitResponse) => void) => void };
let host: RequestPathWorker;
let authz: CheckClient;
let ratelimit: RateLimitClient;

// Thousands of other consumers and keys, so each install is a real structured copy
// and index build on the worker, as with a production-sized config.
const OTHERS = 5_000;
const baseState = parseTestState({
  revision: 1,
  upstreams: [{ name: 'u', endpoints: [{ host: '127.0.0.1', port: 9 }] }],
  routes: [{ name: 'r', match: { path: { prefix: '/' } }, action: { upstream: 'u' }, auth: { mode: 'api_key' } }],
  consumers: [{ name: 'alice' }, ...Array.from({ length: OTHERS }, (_, i) => ({ name: `c${i}` }))],
  credentials: [{ name: 'alice-key', consumer: 'alice', kind: 'api_key' }, ...Array.from({ length: OTHERS }, (_, i) => ({ name: `k${i}`, consumer: `c${i}`, kind: 'api_key' as const }))],
  rate_limit_policies: [{ name: 'p', key: ['consumer'], limit: { requests: 100, per: 'minute' } }],
});
const otherKeys = Array.from({ length: OTHERS }, (_, i) => ({ credential: `k${i}`, keyHash: i.toString(16).padStart(64, '0') }));

function state(revision: number) {
  return { ...baseState, revision };
}

function install(revision: number, keys: boolean): Promise<void> {
  return host.install({ state: requestPathState(state(revision)), apiKeys: keys ? [...otherKeys, { credential: 'alice-key', keyHash: aliceKey.hash }] : otherKeys });
}

/** The HTTP status the check answers for alice's key (200 when allowed). */
function checkStatus(): Promise<number> {
  const request = { attributes: { request: { http: { headers: { 'x-api-key': aliceKey.key }, path: '/x', method: 'GET' } }, context_extensions: { [AUTHZ_CONTEXT.route]: 'r', [AUTHZ_CONTEXT.authMode]: 'api_key' } } };
  return new Promise((resolve, reject) =>
    authz.Check(request, (err, res) => {
      if (err) return reject(err);
      const code = res!.denied_response?.status?.code;
      resolve(code === undefined ? 200 : code === 'Unauthorized' ? 401 : code === 'ServiceUnavailable' ? 503 : -1);
    }),
  );
}

before(async () => {
  host = await RequestPathWorker.start({
    log,
    authz: { host: '127.0.0.1', port: 0, secret: SECRET },
    ratelimit: { host: '127.0.0.1', port: 0, domain: 'sluice' },
  });
  authz = new (grpc.makeGenericClientConstructor(AUTHORIZATION_SERVICE, 'Authorization'))(`127.0.0.1:${host.authzPort}`, grpc.credentials.createInsecure()) as unknown as CheckClient;
  ratelimit = new (grpc.makeGenericClientConstructor(RATE_LIMIT_SERVICE_DEFINITION, 'RateLimitService'))(`127.0.0.1:${host.ratelimitPort}`, grpc.credentials.createInsecure()) as unknown as RateLimitClient;
});

after(async () => {
  authz?.close();
  ratelimit?.close();
  await host?.close();
});

test('request-path worker: an installed revision is what the very next check answers from', async () => {
  assert.equal(await checkStatus(), 503, 'no State yet: fail closed');
  // No waiting beyond install(): the publisher hands the fleet a revision only after this resolves.
  for (let revision = 1; revision <= 20; revision++) {
    const keys = revision % 2 === 1;
    await install(revision, keys);
    assert.equal(await checkStatus(), keys ? 200 : 401, `revision ${revision}`);
  }
});

test('request-path worker: the services\' counters cross the thread at refresh', async () => {
  await install(21, true);
  await host.refreshMetrics();
  const before = host.metrics().authz.checks['allow/api_key'] ?? 0;
  for (let i = 0; i < 5; i++) assert.equal(await checkStatus(), 200);
  await host.refreshMetrics();
  assert.equal(host.metrics().authz.checks['allow/api_key'], before + 5);
});

test('request-path worker: a thread that dies is replaced on the same ports, answering from the latest revision', async () => {
  await install(22, false);
  await host.kill();
  // The replacement comes up after a short backoff: poll (bounded) until it answers.
  let status = -1;
  for (let attempt = 0; attempt < 100 && status !== 401; attempt++) {
    status = await checkStatus().catch(() => -1);
    if (status !== 401) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(status, 401, 'the new thread has revision 22 (no keys), not nothing (503)');
  assert.ok(logged.some((l) => l.level === 'error' && l.msg.includes('worker stopped')), 'the death is logged');
  await install(23, true);
  assert.equal(await checkStatus(), 200);
  const decision = await new Promise<RateLimitResponse>((resolve, reject) =>
    ratelimit.ShouldRateLimit({ domain: 'sluice', descriptors: [], hits_addend: 1 }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
  assert.equal(decision.overall_code, 'OK', 'the rate-limit service came back on its port too');
});

test('request-path worker: a revision that changes nothing the services read is not sent to the thread; one that does is', async () => {
  await install(30, true);
  const sent = host.posted;
  // Same consumer, credential, provider and policy objects and the same key hashes: a route edit.
  await install(31, true);
  await install(32, true);
  assert.equal(host.posted, sent, 'nothing new for the services: no round trip to the thread');
  assert.equal(await checkStatus(), 200);
  // Equal content in new objects is sent (only identity proves "unchanged").
  await host.install({ state: { ...requestPathState(state(33)), consumers: baseState.consumers.map((c) => ({ ...c })) }, apiKeys: [...otherKeys, { credential: 'alice-key', keyHash: aliceKey.hash }] });
  assert.equal(host.posted, sent + 1);
  // A revoked key is a change: sent, and the very next check refuses it.
  await install(34, false);
  assert.equal(host.posted, sent + 2);
  assert.equal(await checkStatus(), 401);
});
