// CPU per ShouldRateLimit decision in Sluice's rate-limit service, with a real
// Redis and no Envoy: where a decision's time goes, for profiling and for
// before/after comparisons of control-plane/src/ratelimit.
//
//   in-process  service.shouldRateLimit() on an already-decoded request  (decision + Redis client)
//   codec       requestDeserialize(bytes) -> shouldRateLimit -> responseSerialize (what the wire path adds)
//   wire        a grpc-js client on loopback -> the RateLimitServer in this process
//               (the CPU includes the client's side too: compare arms, not absolutes)
//
// The request is the one Envoy sends for a Sluice route limit: (sluice_policy, bench)
// then (route, limited), hits_addend 1, under a limit no run reaches, so every
// decision is a full count-and-admit. CPU is process.cpuUsage (user+sys) divided by
// decisions; CONCURRENCY decisions are in flight at once; medians over rounds.
//
// Run: node --import tsx bench/ratelimit-profile.ts
//   ROUNDS (default 5), N (decisions per round and arm, default 3000), CONCURRENCY (default 16),
//   ARMS (comma-separated subset of in-process,codec,wire), ALGORITHMS (sliding,fixed),
//   COMPARE=/path/to/another/checkout (its control-plane/src/ratelimit runs interleaved, as "other").
//   Profile: node --cpu-prof --cpu-prof-dir=bench/profiles --import tsx bench/ratelimit-profile.ts
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import type { State } from '../control-plane/src/model/index.ts';
import { messageType } from '../control-plane/src/proto/envoy.ts';
import { parseTestState } from '../test/helpers/gateway.ts';
import { startRedis } from '../test/helpers/redis.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const N = Number(process.env.N ?? 3_000);
const WARM = Number(process.env.WARM ?? 2_000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16);
const ARMS = (process.env.ARMS ?? 'in-process,codec,wire').split(',') as Arm[];
const ALGORITHMS = (process.env.ALGORITHMS ?? 'sliding,fixed').split(',') as Algorithm[];
const DOMAIN = 'sluice';
const here = path.dirname(fileURLToPath(import.meta.url));

type Arm = 'in-process' | 'codec' | 'wire';
type Algorithm = 'sliding' | 'fixed';
const POLICY: Record<Algorithm, string> = { sliding: 'bench', fixed: 'bench-fixed' };

/** The surface of the ratelimit room this harness uses (so another checkout's copy can be loaded). */
interface Service {
  setState(state: State): void;
  shouldRateLimit(request: unknown): Promise<{ overall_code?: string }>;
  close(): Promise<void>;
}
interface Impl {
  RateLimitService: new (options: { store: unknown; domain: string }) => Service;
  RedisCounterStore: new (runner: unknown) => unknown;
  IoredisRunner: new (url: string) => { connect(): Promise<boolean> };
  RateLimitServer: new (service: Service) => { listen(host: string, port: number): Promise<number>; close(graceMs?: number): Promise<void> };
  definition: grpc.ServiceDefinition;
}

async function loadImpl(root: string): Promise<Impl> {
  const dir = path.join(root, 'control-plane/src/ratelimit');
  const load = async (file: string) => (await import(pathToFileURL(path.join(dir, file)).href)) as Record<string, unknown>;
  const [service, store, runner, server] = await Promise.all([load('service.ts'), load('redis-store.ts'), load('ioredis-runner.ts'), load('server.ts')]);
  return {
    RateLimitService: service['RateLimitService'] as Impl['RateLimitService'],
    RedisCounterStore: store['RedisCounterStore'] as Impl['RedisCounterStore'],
    IoredisRunner: runner['IoredisRunner'] as Impl['IoredisRunner'],
    RateLimitServer: server['RateLimitServer'] as Impl['RateLimitServer'],
    definition: server['RATE_LIMIT_SERVICE_DEFINITION'] as grpc.ServiceDefinition,
  };
}

const state = parseTestState({
  revision: 1,
  upstreams: [{ name: 'origin', endpoints: [{ host: '127.0.0.1', port: 9 }] }],
  rate_limit_policies: [
    { name: 'bench', key: ['route'], limit: { requests: 1_000_000_000, per: 'minute' } },
    { name: 'bench-fixed', key: ['route'], limit: { requests: 1_000_000_000, per: 'minute' }, algorithm: 'fixed_window' },
  ],
  routes: [{ name: 'limited', match: { path: { prefix: '/limited' } }, action: { upstream: 'origin' }, rate_limits: ['bench', 'bench-fixed'] }],
});

function requestOf(algorithm: Algorithm): Record<string, unknown> {
  return { domain: DOMAIN, descriptors: [{ entries: [{ key: 'sluice_policy', value: POLICY[algorithm] }, { key: 'route', value: 'limited' }] }], hits_addend: 1 };
}

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/** Runs `one` count times with CONCURRENCY in flight; checks every answer is OK. */
async function drive(count: number, one: () => Promise<{ overall_code?: string } | undefined>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next += 1;
      const answer = await one();
      if (answer && answer.overall_code !== 'OK') throw new Error(`decision was not OK: ${JSON.stringify(answer)}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

async function measure(count: number, one: () => Promise<{ overall_code?: string } | undefined>): Promise<number> {
  await drive(WARM, one);
  const started = cpuMicros();
  await drive(count, one);
  return (cpuMicros() - started) / count;
}

async function runArm(impl: Impl, redisUrl: string, arm: Arm, algorithm: Algorithm): Promise<number> {
  const runner = new impl.IoredisRunner(redisUrl);
  if (!(await runner.connect())) throw new Error('Redis did not accept a connection');
  const service = new impl.RateLimitService({ store: new impl.RedisCounterStore(runner), domain: DOMAIN });
  service.setState(state);
  const type = messageType('envoy.service.ratelimit.v3.RateLimitRequest');
  const bytes = Buffer.from(type.encode(type.fromObject(requestOf(algorithm))).finish());
  const method = impl.definition['ShouldRateLimit']!;
  const decoded = method.requestDeserialize(bytes);
  try {
    if (arm === 'in-process') return await measure(N, () => service.shouldRateLimit(decoded));
    if (arm === 'codec') {
      return await measure(N, async () => {
        const response = await service.shouldRateLimit(method.requestDeserialize(bytes));
        method.responseSerialize(response);
        return response;
      });
    }
    const server = new impl.RateLimitServer(service);
    const port = await server.listen('127.0.0.1', 0);
    const Client = grpc.makeGenericClientConstructor(impl.definition, 'RateLimitService');
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Record<string, Function>;
    const call = (request: unknown) =>
      new Promise<{ overall_code?: string }>((resolve, reject) =>
        client['ShouldRateLimit']!.call(client, request, (err: Error | null, response: { overall_code?: string }) => (err ? reject(err) : resolve(response))),
      );
    const request = requestOf(algorithm);
    try {
      return await measure(N, () => call(request));
    } finally {
      (client as unknown as grpc.Client).close();
      await server.close(500);
    }
  } finally {
    await service.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const impls: Array<[string, Impl]> = [['this', await loadImpl(path.resolve(here, '..'))]];
if (process.env.COMPARE) impls.push(['other', await loadImpl(process.env.COMPARE)]);
const redis = await startRedis();
const results = new Map<string, number[]>();
try {
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const arm of ARMS) {
      for (const algorithm of ALGORITHMS) {
        // Alternate the order each round so neither impl always runs warmer.
        const order = round % 2 ? [...impls].reverse() : impls;
        for (const [name, impl] of order) {
          const label = `${arm.padEnd(10)} ${algorithm.padEnd(7)} ${name}`;
          const us = await runArm(impl, redis.url, arm, algorithm);
          results.set(label, [...(results.get(label) ?? []), us]);
        }
      }
    }
    console.error(`round ${round + 1}/${ROUNDS} done`);
  }
} finally {
  await redis.close();
}
console.log(`µs CPU per decision (median of ${ROUNDS} rounds, ${N} decisions each, ${CONCURRENCY} in flight)`);
for (const [label, values] of results) console.log(`${label}  ${median(values).toFixed(1)}  [${values.map((v) => v.toFixed(0)).join(' ')}]`);
