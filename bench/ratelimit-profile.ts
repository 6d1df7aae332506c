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
// decisions; CONCURRENCY decisions are in flight at once, or, with RATE, decisions
// start at that fixed rate (open loop, as Envoy sends them); medians over rounds.
// Redis' own CPU per decision (INFO cpu, the server process) and the script's run
// time inside Redis (INFO commandstats, evalsha + eval) are reported beside it:
// Redis shares the cores with the service.
//
// Run: node --import tsx bench/ratelimit-profile.ts
//   ROUNDS (default 5), N (decisions per round and arm, default 3000), CONCURRENCY (default 16),
//   RATE (decisions/s; default: closed loop at CONCURRENCY),
//   ARMS (comma-separated subset of in-process,codec,wire), ALGORITHMS (sliding,fixed),
//   COMPARE=/path/to/another/checkout (its control-plane/src/ratelimit runs interleaved, as "other");
//     e.g. the last commit: mkdir /tmp/base && git archive HEAD control-plane proto package.json | tar -x -C /tmp/base
//     && ln -s "$PWD/node_modules" /tmp/base/node_modules.
//   Profile: node --cpu-prof --cpu-prof-dir=bench/profiles --import tsx bench/ratelimit-profile.ts
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import type { State } from '../control-plane/src/model/index.ts';
import { messageType } from '../control-plane/src/proto/envoy.ts';
import { parseTestState } from '../test/helpers/gateway.ts';
import { startRedis } from '../test/helpers/redis.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const N = Number(process.env.N ?? 3_000);
const WARM = Number(process.env.WARM ?? 2_000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16);
const RATE = process.env.RATE ? Number(process.env.RATE) : undefined;
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
  // RATE_LIMIT_SERVICE_DEFINITION is in client.ts since the worker stopped loading the proto registry (server.ts before).
  const clientFile = existsSync(path.join(dir, 'client.ts')) ? 'client.ts' : 'server.ts';
  const [service, store, runner, server, client] = await Promise.all([load('service.ts'), load('redis-store.ts'), load('ioredis-runner.ts'), load('server.ts'), load(clientFile)]);
  return {
    RateLimitService: service['RateLimitService'] as Impl['RateLimitService'],
    RedisCounterStore: store['RedisCounterStore'] as Impl['RedisCounterStore'],
    IoredisRunner: runner['IoredisRunner'] as Impl['IoredisRunner'],
    RateLimitServer: server['RateLimitServer'] as Impl['RateLimitServer'],
    definition: client['RATE_LIMIT_SERVICE_DEFINITION'] as grpc.ServiceDefinition,
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

type One = () => Promise<{ overall_code?: string } | undefined>;

function checkOk(answer: { overall_code?: string } | undefined): void {
  if (answer && answer.overall_code !== 'OK') throw new Error(`decision was not OK: ${JSON.stringify(answer)}`);
}

/** Runs `one` count times: at RATE per second when set, else with CONCURRENCY in flight; checks every answer is OK. */
async function drive(count: number, one: One): Promise<void> {
  if (RATE !== undefined) return driveAtRate(count, one, RATE);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next += 1;
      checkOk(await one());
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

/** Open loop: starts the decisions due by the clock every millisecond or so, whatever is still in flight. */
async function driveAtRate(count: number, one: One, rate: number): Promise<void> {
  const started = performance.now();
  const pending: Array<Promise<void>> = [];
  let sent = 0;
  while (sent < count) {
    const due = Math.min(count, Math.floor(((performance.now() - started) * rate) / 1000) + 1);
    for (; sent < due; sent += 1) pending.push(one().then(checkOk));
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(pending);
}

/** Redis' CPU (user+sys, µs) and the counting script's run time inside it (µs, summed over calls). */
async function redisCounters(admin: Redis): Promise<{ cpu: number; script: number }> {
  const [cpu, stats] = [await admin.info('cpu'), await admin.info('commandstats')];
  const seconds = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(cpu)?.[1] ?? 0);
  const usec = (command: string) => Number(new RegExp(`cmdstat_${command}:calls=\\d+,usec=(\\d+)`).exec(stats)?.[1] ?? 0);
  return { cpu: (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6, script: usec('evalsha') + usec('eval') };
}

interface PerDecision {
  service: number;
  redis: number;
  script: number;
}

async function measure(count: number, one: One): Promise<PerDecision> {
  await drive(WARM, one);
  const [cpu, redisBefore] = [cpuMicros(), await redisCounters(admin)];
  await drive(count, one);
  const service = (cpuMicros() - cpu) / count;
  const redisAfter = await redisCounters(admin);
  return { service, redis: (redisAfter.cpu - redisBefore.cpu) / count, script: (redisAfter.script - redisBefore.script) / count };
}

async function runArm(impl: Impl, redisUrl: string, arm: Arm, algorithm: Algorithm): Promise<PerDecision> {
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
const admin = new Redis(redis.url);
const results = new Map<string, PerDecision[]>();
try {
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const arm of ARMS) {
      for (const algorithm of ALGORITHMS) {
        // Alternate the order each round so neither impl always runs warmer.
        const order = round % 2 ? [...impls].reverse() : impls;
        for (const [name, impl] of order) {
          const label = `${arm.padEnd(10)} ${algorithm.padEnd(7)} ${name}`;
          const perDecision = await runArm(impl, redis.url, arm, algorithm);
          results.set(label, [...(results.get(label) ?? []), perDecision]);
        }
      }
    }
    console.error(`round ${round + 1}/${ROUNDS} done`);
  }
} finally {
  admin.disconnect();
  await redis.close();
}
const load = RATE !== undefined ? `${RATE}/s open loop` : `${CONCURRENCY} in flight`;
console.log(`µs per decision (median of ${ROUNDS} rounds, ${N} decisions each, ${load}): service CPU [rounds] | Redis CPU | script time in Redis`);
for (const [label, values] of results) {
  const column = (pick: (v: PerDecision) => number) => median(values.map(pick)).toFixed(1);
  console.log(`${label}  ${column((v) => v.service)}  [${values.map((v) => v.service.toFixed(0)).join(' ')}]  |  ${column((v) => v.redis)}  |  ${column((v) => v.script)}`);
}
