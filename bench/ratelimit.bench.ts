// Rate-limit decision latency, side by side in one run, each service counting in
// the same real Redis, each loaded by ghz at a constant rate with the same request
// (one descriptor, under its limit: every answer is OK):
//   sluice          Sluice's service, the policy's default algorithm (sliding window)
//   sluice-fixed    Sluice's service, a fixed_window policy (the algorithm envoyproxy/ratelimit has)
//   envoy-ratelimit envoyproxy/ratelimit (built by bench/setup.sh), YAML file config for the same limit
// at 1,000 and 2,500 decisions/s, arms interleaved in rounds. Budget (DESIGN.md):
// Sluice's p99 no worse than envoyproxy/ratelimit's at the same rate. Beside the
// latencies: CPU per decision of the service's process and of redis-server (INFO
// cpu), which share the machine's cores with each other and with ghz; unlike the
// p99s, these hold up when the machine is busy with other work.
//
// Then the latency a rate-limited route adds through a real Envoy: the same
// upstream behind a route with a global limit (Sluice's service) and one without,
// loaded by vegeta at a constant rate; and, for scale, the same limited route in
// an identical second Envoy whose rate-limit cluster is envoyproxy/ratelimit.
//
// Run: bash bench/setup.sh && node --import tsx bench/ratelimit.bench.ts
//   RATES (decisions/s, default 1000,2500; none: skip), DURATION_S (per arm per round, default 10),
//   ROUNDS (default 3), WARMUP_S (default 2), ROUTE_RATE (req/s through Envoy, default 1000)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { RequestPathWorker } from '../control-plane/src/request-path/host.ts';
import { requestPathState } from '../control-plane/src/request-path/protocol.ts';
import type { RateLimitLog } from '../control-plane/src/ratelimit/service.ts';
import { parseTestState, startGateway, type GatewayEnvoy, type StateInput } from '../test/helpers/gateway.ts';
import { freePort, sleep } from '../test/helpers/net.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { fetchVia } from '../test/helpers/upstream.ts';
import { allOutcomes, ghz, machine, median, processCpuMs, roundOrder, runProblems, SETTLE_MS, startPlainUpstream, tool, vegeta, type GhzCall, type LoadReport } from './load-tools.ts';

/** RATES=none skips the decision part (only the through-Envoy part runs). */
const RATES = process.env.RATES === 'none' ? [] : (process.env.RATES ?? '1000,2500').split(',').map(Number);
const DURATION_S = Number(process.env.DURATION_S ?? 10);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WARMUP_S = Number(process.env.WARMUP_S ?? 2);
const ROUTE_RATE = Number(process.env.ROUTE_RATE ?? 1_000);

const DOMAIN = 'sluice';
/** High enough that no run reaches it: every decision is a full count-and-admit. */
const LIMIT_PER_MINUTE = 1_000_000_000;

type ServiceArm = 'sluice' | 'sluice-fixed' | 'envoy-ratelimit';
const SERVICE_ARMS: readonly ServiceArm[] = ['sluice', 'sluice-fixed', 'envoy-ratelimit'];
type RouteArm = 'unlimited' | 'limited' | 'limited-reference';
const ROUTE_ARMS: readonly RouteArm[] = ['unlimited', 'limited', 'limited-reference'];

const quietLog: RateLimitLog = { info: () => {}, error: (msg, fields) => console.error(`ratelimit: ${msg} ${JSON.stringify(fields ?? {})}`) };

function benchState(upstreamPort: number): StateInput {
  return {
    revision: 1,
    upstreams: [{ name: 'origin', endpoints: [{ host: '127.0.0.1', port: upstreamPort }] }],
    rate_limit_policies: [
      { name: 'bench', key: ['route'], limit: { requests: LIMIT_PER_MINUTE, per: 'minute' } },
      { name: 'bench-fixed', key: ['route'], limit: { requests: LIMIT_PER_MINUTE, per: 'minute' }, algorithm: 'fixed_window' },
    ],
    routes: [
      { name: 'unlimited', match: { path: { prefix: '/unlimited' } }, action: { upstream: 'origin' } },
      { name: 'limited', match: { path: { prefix: '/limited' } }, action: { upstream: 'origin' }, rate_limits: ['bench'] },
      { name: 'limited-fixed', match: { path: { prefix: '/limited-fixed' } }, action: { upstream: 'origin' }, rate_limits: ['bench-fixed'] },
    ],
  };
}

/**
 * envoyproxy/ratelimit's file config for the same limit: Sluice's descriptor layout
 * is (sluice_policy, <policy>) then the policy's key, here (route, <route name>).
 */
function referenceConfig(): string {
  return [
    `domain: ${DOMAIN}`,
    'descriptors:',
    '  - key: sluice_policy',
    '    value: bench',
    '    descriptors:',
    '      - key: route',
    '        rate_limit:',
    '          unit: minute',
    `          requests_per_unit: ${LIMIT_PER_MINUTE}`,
    '',
  ].join('\n');
}

/** envoyproxy/ratelimit on loopback ports, counting in `redisPort`, config from a YAML file. */
async function startReferenceService(redisPort: number): Promise<{ grpcPort: number; pid: number; stop(): Promise<void> }> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'sluice-ref-ratelimit-'));
  // Loaded from RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY/*.yaml.
  mkdirSync(path.join(root, 'ratelimit', 'config'), { recursive: true });
  writeFileSync(path.join(root, 'ratelimit', 'config', 'bench.yaml'), referenceConfig());
  const [httpPort, grpcPort, debugPort] = [await freePort(), await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOST: '127.0.0.1',
    PORT: String(httpPort),
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: String(grpcPort),
    DEBUG_HOST: '127.0.0.1',
    DEBUG_PORT: String(debugPort),
    USE_STATSD: 'false',
    LOG_LEVEL: 'warn',
    BACKEND_TYPE: 'redis',
    REDIS_SOCKET_TYPE: 'tcp',
    REDIS_URL: `127.0.0.1:${redisPort}`,
    RUNTIME_ROOT: root,
    RUNTIME_SUBDIRECTORY: 'ratelimit',
    RUNTIME_APPDIRECTORY: 'config',
    RUNTIME_WATCH_ROOT: 'false',
    RUNTIME_IGNOREDOTFILES: 'true',
  };
  const child: ChildProcess = spawn(tool('ratelimit'), [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000)));
  const kill = () => child.kill('SIGKILL');
  process.on('exit', kill);
  const stop = async (): Promise<void> => {
    process.off('exit', kill);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(root, { recursive: true, force: true });
  };
  // Ready once its HTTP health check answers 200 (it has loaded the config and reached Redis).
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`envoyproxy/ratelimit exited (${child.exitCode}):\n${output}`);
    const ok = await fetchVia(httpPort, '/healthcheck', { timeoutMs: 1_000 }).then((r) => r.status === 200, () => false);
    if (ok) return { grpcPort, pid: child.pid!, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`envoyproxy/ratelimit not healthy within 20 s:\n${output}`);
    }
    await sleep(100);
  }
}

/** The proto folders inside @grpc/grpc-js-xds (what Sluice loads its Envoy API from). */
function protoImportPaths(): string[] {
  const require = createRequire(import.meta.url);
  const deps = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((dir) => path.join(deps, dir));
}

function decisionCall(port: number, policy: string): GhzCall {
  return {
    target: `127.0.0.1:${port}`,
    call: 'envoy.service.ratelimit.v3.RateLimitService.ShouldRateLimit',
    proto: 'envoy/service/ratelimit/v3/rls.proto',
    importPaths: protoImportPaths(),
    data: { domain: DOMAIN, descriptors: [{ entries: [{ key: 'sluice_policy', value: policy }, { key: 'route', value: 'limited' }] }], hits_addend: 1 },
  };
}

/** One ShouldRateLimit through ghz; throws unless the answer is OK (the service knows the limit). */
async function probe(call: GhzCall, what: string): Promise<void> {
  const report = await ghz(call, 10, 1, 1);
  if (!allOutcomes(report, 'OK')) throw new Error(`${what}: ${JSON.stringify(report.outcomes)}`);
}

const fmt = (ms: number): string => ms.toFixed(3);

/** redis-server's CPU so far (user + sys, ms), from its own INFO. */
async function redisCpuMs(admin: Redis): Promise<number> {
  const info = await admin.info('cpu');
  const seconds = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? Number.NaN);
  return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1000;
}

/** CPU of one run, µs per decision: the service's process and redis-server. */
interface DecisionCpu {
  service: number;
  redis: number;
}

/** One run's line; `expected` is the outcome every request should have had (gRPC OK, HTTP 200). */
function line(label: string, report: LoadReport, cpu: string, expected: 'OK' | '200', rate: number): string {
  const bad = runProblems(report, expected, rate);
  return `${label} p50 ${fmt(report.p50Ms)} ms  p99 ${fmt(report.p99Ms)} ms  (${report.requests} at ${report.rate.toFixed(0)}/s; ${cpu})${bad}`;
}

tool('ghz');
tool('vegeta');
const redis = await startRedis();
const upstream = await startPlainUpstream();
const state = parseTestState(benchState(upstream.port));
// The service runs as the product runs it: on the request-path worker thread.
const requestPath = await RequestPathWorker.start({
  log: { ...quietLog, warn: () => {} },
  authz: { host: '127.0.0.1', port: 0 },
  ratelimit: { host: '127.0.0.1', port: 0, redisUrl: redis.url, domain: DOMAIN },
});
await requestPath.install({ state: requestPathState(state), apiKeys: [] });
const sluice = { port: requestPath.ratelimitPort, close: () => requestPath.close() };
const reference = await startReferenceService(redis.port);
const redisAdmin = new Redis(redis.url);
try {
  const calls: Record<ServiceArm, GhzCall> = {
    sluice: decisionCall(sluice.port, 'bench'),
    'sluice-fixed': decisionCall(sluice.port, 'bench-fixed'),
    'envoy-ratelimit': decisionCall(reference.grpcPort, 'bench'),
  };
  for (const arm of SERVICE_ARMS) await probe(calls[arm], arm);

  console.log(`machine: ${machine()}`);
  console.log(`decision latency: rates ${RATES.join(', ')}/s, ${DURATION_S} s per arm per round, ${ROUNDS} rounds, one connection, Redis ${redis.url}`);
  for (const arm of SERVICE_ARMS) if (RATES.length > 0) await ghz(calls[arm], RATES[0]!, WARMUP_S);

  const decisions = new Map<string, LoadReport[]>();
  const cpus = new Map<string, DecisionCpu[]>();
  const servicePid = (arm: ServiceArm) => (arm === 'envoy-ratelimit' ? reference.pid : process.pid);
  for (let round = 0; round < ROUNDS; round++) {
    for (const rate of RATES) {
      for (const arm of roundOrder(SERVICE_ARMS, round)) {
        await sleep(SETTLE_MS);
        const before = { service: processCpuMs(servicePid(arm)), redis: await redisCpuMs(redisAdmin) };
        const report = await ghz(calls[arm], rate, DURATION_S);
        const perDecision = (ms: number) => (ms * 1000) / Math.max(1, report.requests);
        const cpu = { service: perDecision(processCpuMs(servicePid(arm)) - before.service), redis: perDecision((await redisCpuMs(redisAdmin)) - before.redis) };
        const key = `${arm}@${rate}`;
        decisions.set(key, [...(decisions.get(key) ?? []), report]);
        cpus.set(key, [...(cpus.get(key) ?? []), cpu]);
        const cpuText = `CPU per decision: service ${cpu.service.toFixed(0)} us, Redis ${cpu.redis.toFixed(0)} us`;
        console.log(line(`round ${round + 1} ${String(rate).padStart(5)}/s ${arm.padEnd(15)}`, report, cpuText, 'OK', rate));
      }
    }
  }
  console.log('\n| rate | service | p50 ms | p99 ms | p99 vs envoyproxy/ratelimit | service CPU µs/decision | Redis CPU µs/decision |');
  console.log('|---|---|---|---|---|---|---|');
  for (const rate of RATES) {
    const reference99 = median(decisions.get(`envoy-ratelimit@${rate}`)!.map((r) => r.p99Ms));
    for (const arm of SERVICE_ARMS) {
      const reports = decisions.get(`${arm}@${rate}`)!;
      const armCpu = cpus.get(`${arm}@${rate}`)!;
      const p99 = median(reports.map((r) => r.p99Ms));
      const errors = reports.some((r) => runProblems(r, 'OK', rate) !== '') ? ' (not comparable!)' : '';
      const vs = arm === 'envoy-ratelimit' ? '—' : `${(p99 / reference99).toFixed(2)}x`;
      const cpuColumns = `${median(armCpu.map((c) => c.service)).toFixed(0)} | ${median(armCpu.map((c) => c.redis)).toFixed(0)}`;
      console.log(`| ${rate}/s | ${arm}${errors} | ${fmt(median(reports.map((r) => r.p50Ms)))} | ${fmt(p99)} | ${vs} | ${cpuColumns} |`);
    }
  }

  // ---- through Envoy: a limited route against the same route unlimited ----------
  // Two identical Envoys, one calling Sluice's service and one envoyproxy/ratelimit,
  // so a slow limited route can be told apart from a slow service.
  const toSluice = await startGateway({
    envoys: [{ nodeId: 'ratelimit-bench-sluice' }],
    translateOptions: { ratelimit: { clusterName: 'sluice_ratelimit', host: '127.0.0.1', port: sluice.port, domain: DOMAIN } },
  });
  const toReference = await startGateway({
    envoys: [{ nodeId: 'ratelimit-bench-reference' }],
    translateOptions: { ratelimit: { clusterName: 'sluice_ratelimit', host: '127.0.0.1', port: reference.grpcPort, domain: DOMAIN } },
  });
  try {
    await toSluice.apply(benchState(upstream.port));
    await toReference.apply(benchState(upstream.port));
    const envoyOf: Record<RouteArm, GatewayEnvoy> = { unlimited: toSluice.envoys[0]!, limited: toSluice.envoys[0]!, 'limited-reference': toReference.envoys[0]! };
    const pathOf: Record<RouteArm, string> = { unlimited: '/unlimited', limited: '/limited', 'limited-reference': '/limited' };
    /** Envoy's ratelimit.<result> counters (summed over its clusters). */
    const callResults = async (envoy: GatewayEnvoy, result: 'ok' | 'error'): Promise<number> => {
      const stats = await envoy.handle.stats('ratelimit');
      return Object.entries(stats).reduce((sum, [name, value]) => (name.endsWith(`ratelimit.${result}`) ? sum + value : sum), 0);
    };
    for (const arm of ['limited', 'limited-reference'] as const) {
      const res = await fetchVia(envoyOf[arm].port, pathOf[arm]);
      if (res.status !== 200 || (await callResults(envoyOf[arm], 'ok')) < 1) throw new Error(`${arm}: the route did not consult its rate-limit service (${res.status})`);
    }
    const targets = (arm: RouteArm) => [{ url: `http://127.0.0.1:${envoyOf[arm].port}${pathOf[arm]}` }];
    console.log(`\nthrough Envoy (--concurrency 1) at ${ROUTE_RATE} req/s, ${DURATION_S} s per arm per round, ${ROUNDS} rounds`);
    for (const arm of ROUTE_ARMS) await vegeta(targets(arm), ROUTE_RATE, WARMUP_S);
    const routes: Record<RouteArm, LoadReport[]> = { unlimited: [], limited: [], 'limited-reference': [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const arm of roundOrder(ROUTE_ARMS, round)) {
        await sleep(SETTLE_MS);
        const envoy = envoyOf[arm];
        const before = { envoy: processCpuMs(envoy.handle.pid), sluice: processCpuMs(process.pid), errors: await callResults(envoy, 'error') };
        const report = await vegeta(targets(arm), ROUTE_RATE, DURATION_S);
        routes[arm].push(report);
        const perRequest = (ms: number) => ((ms * 1000) / Math.max(1, report.requests)).toFixed(0);
        // Envoy admits a request whose check failed or timed out (failure_mode_allow, counted
        // in ratelimit.error): a 200 alone does not prove the limit was consulted.
        const failOpen = (await callResults(envoy, 'error')) - before.errors;
        if (failOpen > 0) report.outcomes['admitted after a failed or late check'] = failOpen;
        const cpu = `CPU per request: Envoy ${perRequest(processCpuMs(envoy.handle.pid) - before.envoy)} us, Sluice ${perRequest(processCpuMs(process.pid) - before.sluice)} us`;
        console.log(line(`round ${round + 1} ${arm.padEnd(17)}`, report, cpu, '200', ROUTE_RATE));
      }
    }
    const added = (arm: RouteArm, pick: (r: LoadReport) => number) => median(routes[arm].map((r, i) => pick(r) - pick(routes.unlimited[i]!)));
    console.log('\n| route | p50 ms | p99 ms | added p50 ms | added p99 ms |');
    console.log('|---|---|---|---|---|');
    for (const arm of ROUTE_ARMS) {
      const errors = routes[arm].some((r) => runProblems(r, '200', ROUTE_RATE) !== '') ? ' (not comparable!)' : '';
      const extra = arm === 'unlimited' ? '— | —' : `${fmt(added(arm, (r) => r.p50Ms))} | ${fmt(added(arm, (r) => r.p99Ms))}`;
      console.log(`| ${arm}${errors} | ${fmt(median(routes[arm].map((r) => r.p50Ms)))} | ${fmt(median(routes[arm].map((r) => r.p99Ms)))} | ${extra} |`);
    }
    // Envoy's side of its calls to each service: queueing (pending), timeouts, connections.
    for (const [label, envoy] of [['Sluice', envoyOf.limited], ['envoyproxy/ratelimit', envoyOf['limited-reference']]] as const) {
      const calls = await envoy.handle.stats('cluster\\.sluice_ratelimit\\.(upstream_rq_total|upstream_rq_timeout|upstream_rq_pending_total|upstream_rq_pending_overflow|upstream_cx_total)$');
      console.log(`Envoy's calls to ${label}: ${Object.entries(calls).map(([name, value]) => `${name.replace(/^cluster\.sluice_ratelimit\./, '')}=${value}`).join(' ')}`);
    }
  } finally {
    await toSluice.stop();
    await toReference.stop();
  }
} finally {
  redisAdmin.disconnect();
  await reference.stop();
  await sluice.close();
  await upstream.close();
  await redis.close();
}
process.exit(0);
