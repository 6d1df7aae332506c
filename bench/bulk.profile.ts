// Where a bulk declarative apply (PUT /v1/config?wait=applied) spends its time
// (issue 12's "1,000 routes in one request" and "1,000 → 10,000 routes"): the
// control plane as production runs it (compiled, production's memory settings)
// on a durable Postgres (fsync on), ENVOYS real Envoys. Per case it prints the
// client-side time, the median of each server phase (Server-Timing: handler =
// body parse and the model's check, commit = the store, wait = until every
// Envoy ACKed), the CPU the control plane and Postgres spent, and with
// CPU_PROF=<dir> the functions with the most self and inclusive CPU time inside
// the timed requests only (the untimed set-up is left out).
//
// Run: bash scripts/build.sh && node --import tsx bench/bulk.profile.ts
// Settings (environment): ENVOYS=10  SAMPLES=3  ROUTES=1000,10000  ROUTE_STATS=traffic_split
//   CONTROL_PLANE=compiled|tsx  CPU_PROF=<dir>  TOP=25
//   CP_FLAGS="--trace-gc --trace-deopt"  extra node flags for the control plane; with --trace-gc
//     or --trace-deopt, per case the full collections between samples (before each timed
//     request) and the optimised functions V8 threw away inside the timed requests are counted
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../control-plane/src/store/postgres.ts';
import { startControlPlane, type ControlPlane } from '../test/helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../test/helpers/envoy.ts';
import { sleep } from '../test/helpers/net.ts';
import { startHttpUpstream } from '../test/helpers/upstream.ts';
import { fmtMs, percentile, processCpuMs, serverTiming, treeCpuMs } from './propagation-lib.ts';

const ENVOYS = Number(process.env.ENVOYS ?? 10);
const SAMPLES = Number(process.env.SAMPLES ?? 3);
const [SMALL, LARGE] = (process.env.ROUTES ?? '1000,10000').split(',').map(Number) as [number, number];
const ROUTE_STATS = process.env.ROUTE_STATS ?? 'traffic_split';
const COMPILED = (process.env.CONTROL_PLANE ?? 'compiled') === 'compiled';
const TOP = Number(process.env.TOP ?? 25);
const TIMEOUT_MS = 240_000;
const SETUP_STEP = 2_000;

interface RouteSpec {
  name: string;
  prefix: string;
}

const countMatches = (text: string, pattern: RegExp): number => text.match(pattern)?.length ?? 0;
const median = (values: number[]): number => percentile([...values].sort((a, b) => a - b), 50);
const preloaded = (count: number): RouteSpec[] => Array.from({ length: count }, (_, i) => ({ name: `r-${i}`, prefix: `/r/${i}/` }));

/** The monotonic clock V8's profiler stamps samples with, in µs. */
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

// ---- the .cpuprofile over chosen windows ------------------------------------------

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Self and inclusive ms per function (name + file:line), counting only samples inside `windows` (µs, monotonic). */
function summariseProfile(profile: CpuProfile, windows: Array<[number, number]>): { self: Map<string, number>; inclusive: Map<string, number>; total: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const label = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${path.basename(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    if (!windows.some(([a, b]) => t >= a && t <= b)) continue;
    const leaf = byId.get(profile.samples[i]!)!;
    if (leaf.callFrame.functionName === '(idle)') continue;
    total += dt;
    self.set(label(leaf), (self.get(label(leaf)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const name = label(byId.get(id)!);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + dt);
    }
  }
  return { self, inclusive, total };
}

function printTop(title: string, map: Map<string, number>, per: number): void {
  console.log(`  ${title} (ms per request):`);
  for (const [name, ms] of [...map].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`    ${(ms / per).toFixed(1).padStart(8)}  ${name}`);
}

// ---- the run ---------------------------------------------------------------------------

const pgRoot = await mkdtemp(path.join(os.tmpdir(), 'sluice-bulk-pg-'));
const db = await startEmbeddedPostgres({ rootDir: pgRoot, database: 'sluice', persistent: false, fast: false, handleSignals: true });
const upstream = await startHttpUpstream({ name: 'bench' });
const profileDir = process.env.CPU_PROF;
let cp: ControlPlane | undefined;
const envoys: EnvoyHandle[] = [];
try {
  const extraFlags = (process.env.CP_FLAGS ?? '').split(/\s+/).filter((f) => f !== '');
  const nodeArgs = [...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), ...extraFlags];
  const env = { GATEWAY_ROUTE_STATS: ROUTE_STATS, SLUICE_SERVER_TIMING: 'true', ...(COMPILED ? { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072', NODE_OPTIONS: '--expose-gc' } : {}) };
  cp = await startControlPlane({ databaseUrl: db.url, env, nodeArgs, compiled: COMPILED });
  const headers = { authorization: `Bearer ${cp.token}` };
  const upstreams = [{ name: 'bench', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }];
  const put = async (routes: readonly RouteSpec[]) => {
    const body = { upstreams, routes: routes.map((r) => ({ name: r.name, match: { path: { prefix: r.prefix } }, action: { upstream: 'bench' } })) };
    const payload = JSON.stringify(body);
    const started = performance.now();
    const res = await fetch(`${cp!.adminUrl}/v1/config?wait=applied&timeout=${TIMEOUT_MS}`, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/json' },
      body: payload,
      signal: AbortSignal.timeout(TIMEOUT_MS + 5_000),
    });
    const text = await res.text();
    const ms = performance.now() - started;
    if (res.status !== 200 || (JSON.parse(text) as { applied?: boolean }).applied !== true) throw new Error(`PUT: HTTP ${res.status} ${text.slice(0, 300)}`);
    return { ms, timing: serverTiming(res.headers.get('server-timing') ?? undefined) };
  };
  let live: RouteSpec[] = [];
  const replaceInSteps = async (target: RouteSpec[]) => {
    const wanted = new Set(target.map((r) => r.name));
    for (;;) {
      const have = new Set(live.map((r) => r.name));
      const removed = live.filter((r) => !wanted.has(r.name)).slice(0, SETUP_STEP);
      const added = target.filter((r) => !have.has(r.name));
      const dropped = new Set(removed.map((r) => r.name));
      const last = removed.length + added.length <= SETUP_STEP;
      const next = last ? target : [...live.filter((r) => !dropped.has(r.name)), ...added.slice(0, SETUP_STEP - removed.length)];
      await put(next);
      live = next;
      if (last) return;
    }
  };
  for (let i = 0; i < ENVOYS; i++) envoys.push(await startEnvoy({ adsPort: cp.xdsPort, nodeId: `bulk-${i}`, startTimeoutMs: 60_000 }));
  for (const envoy of envoys) await envoy.waitReady(120_000);
  const postmaster = Number(readFileSync(path.join(db.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const cases = [
    { what: `${SMALL} routes from none`, before: 0, after: SMALL },
    { what: `${SMALL} -> ${LARGE} routes`, before: SMALL, after: LARGE },
  ];
  const windows = new Map<string, Array<[number, number]>>();
  let sampleId = 0;
  console.log(`bulk apply: PUT /v1/config?wait=applied, ${ENVOYS} Envoys, ${COMPILED ? 'compiled' : 'tsx'}, ROUTE_STATS=${ROUTE_STATS}, ${SAMPLES} samples per case`);
  for (const c of cases) {
    const phases = new Map<string, number[]>();
    const client: number[] = [];
    const cpu = { cp: 0, pg: 0 };
    windows.set(c.what, []);
    const traced = { fullGcs: 0, deopts: 0 };
    for (let s = 0; s < SAMPLES; s++) {
      const outputBefore = cp.output().length;
      await replaceInSteps(preloaded(c.before));
      await sleep(300);
      const outputAt = cp.output().length;
      traced.fullGcs += countMatches(cp.output().slice(outputBefore, outputAt), /Mark-Compact/g);
      const id = sampleId++;
      const target = [...preloaded(c.before), ...Array.from({ length: c.after - c.before }, (_, j) => ({ name: `b${id}-${j}`, prefix: `/b${id}/${j}/` }))];
      const before = { cp: processCpuMs(cp.pid), pg: treeCpuMs(postmaster), at: nowUs() };
      const res = await put(target);
      windows.get(c.what)!.push([before.at, nowUs()]);
      traced.deopts += countMatches(cp.output().slice(outputAt), /bailout \(kind: deopt-eager|marking dependent code/g);
      cpu.cp += processCpuMs(cp.pid) - before.cp;
      cpu.pg += treeCpuMs(postmaster) - before.pg;
      live = target;
      client.push(res.ms);
      for (const [phase, dur] of res.timing) phases.set(phase, [...(phases.get(phase) ?? []), dur]);
      await sleep(300);
    }
    console.log(`\n${c.what}: client median ${fmtMs(median(client))} (${client.map((ms) => ms.toFixed(0)).join(', ')} ms)`);
    console.log(`  CPU per request: control plane ${(cpu.cp / SAMPLES).toFixed(0)} ms, Postgres ${(cpu.pg / SAMPLES).toFixed(0)} ms`);
    console.log(`  server phases (median ms): ${[...phases].map(([p, v]) => `${p} ${median(v).toFixed(1)}`).join(', ')}`);
    if (extraFlags.length > 0) console.log(`  traced: ${traced.fullGcs} full collections before the timed requests, ${traced.deopts} deoptimisations inside them (${SAMPLES} samples)`);
  }
  await cp.stop();
  cp = undefined;
  if (profileDir) {
    // One file per thread (the main thread's and the request-path worker's); each summarised over the timed windows.
    const files = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile')).sort();
    if (files.length === 0) throw new Error(`no .cpuprofile in ${profileDir}`);
    for (const file of files) {
      const profile = JSON.parse(readFileSync(path.join(profileDir, file), 'utf8')) as CpuProfile;
      for (const [what, list] of windows) {
        const { self, inclusive, total } = summariseProfile(profile, list);
        if (total === 0) continue;
        console.log(`\nprofile, ${what}: ${(total / list.length).toFixed(0)} ms of CPU samples per request (${file})`);
        printTop('self', self, list.length);
        printTop('inclusive', inclusive, list.length);
      }
    }
  }
} finally {
  for (const envoy of envoys) await envoy.stop();
  await cp?.stop();
  await upstream.close();
  await db.stop();
}
