// Route propagation, Sluice side by side with the go-control-plane reference
// (bench/anchor.ts), in one run, samples interleaved, the same Envoy binary and
// the same number of Envoys (--concurrency 1) for each. Issue 12's acceptance.
//
// Sluice: admin API -> Postgres commit (fsync on) -> publisher -> translate ->
// ADS push -> every Envoy ACKed (?wait=applied returns then). The reference:
// HTTP -> snapshot cache -> ADS push -> every RDS stream ACKed (?wait=acked).
// Per sample we record the control plane's own "all ACKed" time and the first
// 200 at every gateway (each Envoy probed on its own connection every PROBE_MS).
//
// Run: bash bench/setup.sh && node --import tsx bench/propagation.bench.ts
// Settings (environment): SCENARIOS=new,bulk,rss  ENVOYS=1,10  ROUTES=1000,10000
//   SAMPLES=50  BULK_SAMPLES=5  BULK_ENVOYS=10  RSS_ENVOYS=10  RSS_ROUTES=10000
//   PROBE_MS=5  XDS=sotw|delta  CONTROL_PLANE=compiled|tsx (compiled, as production runs it: scripts/build.sh)
//   CONTROL_PLANE_NODE_ARGS='' (extra node flags for the control plane)  PRODUCTION_ENV=0 (without production's memory settings)
//   CANDIDATE=reference: an A/A run (new-route scenario only): a second reference
//     instance takes Sluice's place, to show how far two identical systems' figures
//     differ on this machine (the noise a ratio budget has to sit above)
import { execFileSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../control-plane/src/store/postgres.ts';
import { startControlPlane, type ControlPlane } from '../test/helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../test/helpers/envoy.ts';
import { sleep } from '../test/helpers/net.ts';
import { startHttpUpstream } from '../test/helpers/upstream.ts';
import { startAnchor, type Anchor } from './anchor.ts';
import {
  type EnvoyProbe,
  firstOkAtEvery,
  fmtDiff,
  fmtMs,
  fmtRatio,
  openProbes,
  processCpuMs,
  processMemory,
  processTreePssMiB,
  type Sample,
  summarize,
  type Summary,
  table,
  timedJson,
  treeCpuMs,
  verdict,
} from './propagation-lib.ts';

// ---- settings -----------------------------------------------------------------

function numbers(name: string, fallback: string): number[] {
  const list = (process.env[name] ?? fallback).split(',').map((s) => Number(s.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 0)) throw new Error(`${name} must be a comma-separated list of whole numbers`);
  return list.sort((a, b) => a - b);
}

function whole(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a whole number ≥ 1`);
  return value;
}

const SCENARIOS = new Set((process.env.SCENARIOS ?? 'new,bulk,rss').split(',').map((s) => s.trim()));
for (const name of SCENARIOS) if (!['new', 'bulk', 'rss'].includes(name)) throw new Error(`SCENARIOS: unknown scenario '${name}' (new, bulk, rss)`);
const ENVOYS = numbers('ENVOYS', '1,10');
const ROUTES = numbers('ROUTES', '1000,10000');

const SAMPLES = whole('SAMPLES', 50);
const BULK_SAMPLES = whole('BULK_SAMPLES', 5);
const BULK_ENVOYS = whole('BULK_ENVOYS', 10);
const PROBE_MS = whole('PROBE_MS', 5);
const RSS_ENVOYS = whole('RSS_ENVOYS', 10);
const RSS_ROUTES = whole('RSS_ROUTES', 10_000);
const DELTA = process.env.XDS === 'delta';
/** Sluice's GATEWAY_ROUTE_STATS for the run (README): per-route stats are Envoy work the reference does not do. */
const ROUTE_STATS = process.env.ROUTE_STATS ?? 'all';
const CANDIDATE = process.env.CANDIDATE ?? 'sluice';
if (!['sluice', 'reference'].includes(CANDIDATE)) throw new Error(`CANDIDATE: '${CANDIDATE}' (sluice, reference)`);
/** A/A: the reference against a second instance of itself. */
const A_A = CANDIDATE === 'reference';
if (A_A && [...SCENARIOS].some((s) => s !== 'new')) throw new Error('CANDIDATE=reference runs the new-route scenario only: set SCENARIOS=new');
/** Whose figures the budgets judge: Sluice's, or in an A/A run the second reference's. */
const CANDIDATE_LABEL = A_A ? 'reference-B' : 'Sluice';
const CONTROL_PLANE = process.env.CONTROL_PLANE ?? 'compiled';
if (!['compiled', 'tsx'].includes(CONTROL_PLANE)) throw new Error(`CONTROL_PLANE: '${CONTROL_PLANE}' (compiled, tsx)`);
/** Production runs the compiled build (scripts/start.sh, the Dockerfile); tsx is what the tests run. */
const COMPILED = CONTROL_PLANE === 'compiled';
/**
 * The environment production gives the compiled control plane (the Dockerfile's ENV,
 * scripts/start.sh; test/unit/runtime-env.test.ts keeps the three equal), so the
 * bench measures what runs: malloc settings and --expose-gc for main.ts's quiet collections.
 */
const PRODUCTION_ENV: Record<string, string> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072', NODE_OPTIONS: '--expose-gc' };
/** PRODUCTION_ENV=0 leaves it out (an A/B of those settings). */
const CONTROL_PLANE_ENV = COMPILED && process.env.PRODUCTION_ENV !== '0' ? PRODUCTION_ENV : {};
/** Extra node flags for the control plane, e.g. CONTROL_PLANE_NODE_ARGS='--cpu-prof' (space-separated). */
const CONTROL_PLANE_NODE_ARGS = (process.env.CONTROL_PLANE_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

/** Bounds every wait: a sample slower than this is reported as timed out, not waited on. */
const SAMPLE_TIMEOUT_MS = 30_000;
const BULK_TIMEOUT_MS = 240_000;
/** Pause between measurements, so one system's after-work (Envoy CPU, pruning) does not land in the other's sample. */
const SETTLE_MS = 100;
/** Most routes one untimed set-up request changes (see replaceInSteps). */
const SETUP_STEP = 2_000;

// ---- the two systems behind one interface ---------------------------------------

interface RouteSpec {
  name: string;
  prefix: string;
}

/** A write's outcome: its duration, or undefined with the reason when it failed or timed out. */
interface WriteResult {
  ms: Sample;
  error?: string;
}

interface System {
  label: string;
  /** The control-plane process, for RSS. */
  pid: number;
  /** Its database's postmaster (Sluice's Postgres), whose process tree's CPU is part of a change's cost. */
  databasePid?: number;
  /** Its Prometheus endpoint (Sluice's /metrics), for the V8 heap behind its RSS. */
  metricsUrl?: string;
  gatewayPort: number;
  envoys: EnvoyHandle[];
  nodeCluster: string;
  metricsSink: boolean;
  adsPort: number;
  /** The routes the control plane holds (as far as this bench's successful writes tell). */
  live: RouteSpec[];
  /** Adds one route; resolves once every Envoy ACKed it. */
  addRoute(route: RouteSpec): Promise<WriteResult>;
  /** Replaces all routes in one request; resolves once every Envoy ACKed. */
  replaceRoutes(routes: readonly RouteSpec[]): Promise<WriteResult>;
}

function failure(status: number, body: unknown): string {
  return `HTTP ${status}: ${JSON.stringify(body).slice(0, 300)}`;
}

/** Keeps `live` up to date with every successful write. */
function tracking(system: System): System {
  const { addRoute, replaceRoutes } = system;
  system.addRoute = async (route) => {
    const result = await addRoute(route);
    if (result.ms !== undefined) system.live.push(route);
    return result;
  };
  system.replaceRoutes = async (routes) => {
    const result = await replaceRoutes(routes);
    if (result.ms !== undefined) system.live = [...routes];
    return result;
  };
  return system;
}

function sluiceSystem(cp: ControlPlane, upstreamPort: number, databasePid: number): System {
  const headers = { authorization: `Bearer ${cp.token}` };
  const spec = (r: RouteSpec) => ({ name: r.name, match: { path: { prefix: r.prefix } }, action: { upstream: 'bench' } });
  const upstreams = [{ name: 'bench', endpoints: [{ host: '127.0.0.1', port: upstreamPort }] }];
  const write = async (method: string, pathAndQuery: string, body: unknown, okStatus: number, timeoutMs: number): Promise<WriteResult> => {
    try {
      const res = await timedJson(`${cp.adminUrl}${pathAndQuery}&timeout=${timeoutMs}`, method, body, headers, timeoutMs + 5_000);
      if (res.status !== okStatus) return { ms: undefined, error: failure(res.status, res.body) };
      if ((res.body as { applied?: boolean }).applied !== true) return { ms: undefined, error: `not applied within ${timeoutMs} ms` };
      return { ms: res.ms };
    } catch (err) {
      return { ms: undefined, error: String(err) };
    }
  };
  return tracking({
    label: 'Sluice',
    pid: cp.pid,
    databasePid,
    metricsUrl: `${cp.adminUrl}/metrics`,
    gatewayPort: cp.gatewayPort,
    envoys: [],
    live: [],
    nodeCluster: 'default',
    metricsSink: true, // the product's default bootstrap streams stats to the control plane
    adsPort: cp.xdsPort,
    addRoute: (route) => write('POST', '/v1/routes?wait=applied', spec(route), 201, SAMPLE_TIMEOUT_MS),
    replaceRoutes: (routes) => write('PUT', '/v1/config?wait=applied', { upstreams, routes: routes.map(spec) }, 200, BULK_TIMEOUT_MS),
  });
}

function referenceSystem(anchor: Anchor, label = 'reference'): System {
  const base = `http://127.0.0.1:${anchor.httpPort}`;
  const write = async (method: string, routes: readonly RouteSpec[], timeoutMs: number): Promise<WriteResult> => {
    try {
      const res = await timedJson(`${base}/routes?wait=acked&timeout=${timeoutMs}`, method, { routes }, {}, timeoutMs + 5_000);
      if (res.status !== 201) return { ms: undefined, error: failure(res.status, res.body) };
      if ((res.body as { acked?: boolean }).acked !== true) return { ms: undefined, error: `not acked within ${timeoutMs} ms` };
      return { ms: res.ms };
    } catch (err) {
      return { ms: undefined, error: String(err) };
    }
  };
  return tracking({
    label,
    pid: anchor.pid,
    gatewayPort: anchor.gatewayPort,
    envoys: [],
    live: [],
    nodeCluster: 'default', // the anchor's one node group (see its README)
    metricsSink: false, // the anchor serves no metrics service
    adsPort: anchor.xdsPort,
    addRoute: (route) => write('POST', [route], SAMPLE_TIMEOUT_MS),
    replaceRoutes: (routes) => write('PUT', routes, BULK_TIMEOUT_MS),
  });
}

// ---- fixture state -----------------------------------------------------------------

const preloaded = (count: number): RouteSpec[] => Array.from({ length: count }, (_, i) => ({ name: `r-${i}`, prefix: `/r/${i}/` }));

async function growFleet(system: System, count: number): Promise<void> {
  while (system.envoys.length < count) {
    const i = system.envoys.length;
    system.envoys.push(
      await startEnvoy({
        adsPort: system.adsPort,
        nodeId: `bench-${system.label.toLowerCase()}-${i}`,
        nodeCluster: system.nodeCluster,
        delta: DELTA,
        ...(system.metricsSink ? {} : { metricsSink: false as const }),
        startTimeoutMs: 60_000,
      }),
    );
  }
  for (const envoy of system.envoys) await envoy.waitReady(120_000);
}

/**
 * Untimed set-up: moves a system to exactly `target` in requests that change at
 * most SETUP_STEP routes each. Why: Sluice writes one row per changed object
 * inside one transaction with a 30 s limit, and on a busy machine with fsync on
 * a single 9,000-route change ran past it (HTTP 500). The timed bulk samples
 * stay one request each.
 */
async function replaceInSteps(system: System, target: readonly RouteSpec[]): Promise<void> {
  const wanted = new Set(target.map((r) => r.name));
  for (;;) {
    const have = new Set(system.live.map((r) => r.name));
    const removed = system.live.filter((r) => !wanted.has(r.name)).slice(0, SETUP_STEP);
    const added = target.filter((r) => !have.has(r.name));
    const dropped = new Set(removed.map((r) => r.name));
    const last = removed.length + added.length <= SETUP_STEP;
    const next = last ? target : [...system.live.filter((r) => !dropped.has(r.name)), ...added.slice(0, SETUP_STEP - removed.length)];
    const result = await system.replaceRoutes(next);
    if (result.ms === undefined) throw new Error(`${system.label}: setting up ${next.length} routes failed: ${result.error}`);
    if (last) return;
  }
}

/** Both systems: `envoys` Envoys each, exactly `routes` routes, all ACKed. */
async function arrange(systems: readonly System[], envoys: number, routes: number): Promise<void> {
  for (const system of systems) {
    // Routes first, then Envoys: a new Envoy joins with the table it will be measured on.
    await replaceInSteps(system, preloaded(routes));
    await growFleet(system, envoys);
  }
}

// ---- scenario 1: one new route ----------------------------------------------------------

interface NewRouteSamples {
  acked: Sample[];
  serving: Sample[];
  errors: string[];
}

let newRouteCounter = 0;

async function oneNewRoute(system: System, probes: readonly EnvoyProbe[], into: NewRouteSamples): Promise<void> {
  const k = newRouteCounter++;
  const route = { name: `n-${k}`, prefix: `/n/${k}/` };
  const started = performance.now();
  const [write, serving] = await Promise.all([
    system.addRoute(route),
    firstOkAtEvery(probes, `${route.prefix}probe`, started, PROBE_MS, SAMPLE_TIMEOUT_MS),
  ]);
  into.acked.push(write.ms);
  into.serving.push(serving);
  if (write.error) into.errors.push(write.error);
  if (serving === undefined) into.errors.push(`${route.name} not served by every Envoy within ${SAMPLE_TIMEOUT_MS} ms`);
}

interface NewRouteFigures {
  acked: Summary;
  serving: Summary;
  /** Control-plane CPU time over the samples, divided by their number. */
  cpuPerChangeMs: number;
  /** The same for its Envoys together (applying pushes, answering the probes). */
  envoyCpuPerChangeMs: number;
  /** The same for its database's processes (none for the reference). */
  databaseCpuPerChangeMs?: number;
}

type NewRouteResults = Map<string, Record<string, NewRouteFigures>>;

async function newRouteScenario(systems: readonly System[], envoys: number, routes: number, results: NewRouteResults): Promise<void> {
  const samples = new Map(systems.map((s) => [s.label, { acked: [], serving: [], errors: [] } as NewRouteSamples]));
  const probes = new Map<string, EnvoyProbe[]>();
  for (const system of systems) probes.set(system.label, await openProbes(system.gatewayPort, system.envoys.map((e) => e.pid)));
  const cpuBefore = new Map(systems.map((s) => [s.label, processCpuMs(s.pid)]));
  const envoyCpu = (system: System) => system.envoys.reduce((sum, envoy) => sum + processCpuMs(envoy.pid), 0);
  const envoyCpuBefore = new Map(systems.map((s) => [s.label, envoyCpu(s)]));
  const databaseCpu = (system: System) => (system.databasePid === undefined ? undefined : treeCpuMs(system.databasePid));
  const databaseCpuBefore = new Map(systems.map((s) => [s.label, databaseCpu(s)]));
  try {
    for (let i = 0; i < SAMPLES; i++) {
      // Alternate who goes first, so neither always runs right after the other's Envoys were busy.
      const order = i % 2 === 0 ? systems : [...systems].reverse();
      for (const system of order) {
        await oneNewRoute(system, probes.get(system.label)!, samples.get(system.label)!);
        await sleep(SETTLE_MS);
      }
    }
  } finally {
    for (const [label, list] of probes) {
      const reconnects = list.reduce((n, probe) => n + probe.reconnects, 0);
      if (reconnects > 0) console.log(`  ${label}: the probes reconnected ${reconnects} times`);
      for (const probe of list) probe.close();
    }
  }
  const entry: Record<string, NewRouteFigures> = {};
  for (const [label, s] of samples) {
    const system = systems.find((candidate) => candidate.label === label)!;
    // Both control planes run through the whole interleaved loop, so this also holds their idle work (small next to a change).
    const cpuPerChangeMs = (processCpuMs(system.pid) - cpuBefore.get(label)!) / SAMPLES;
    const envoyCpuPerChangeMs = (envoyCpu(system) - envoyCpuBefore.get(label)!) / SAMPLES;
    const databaseBefore = databaseCpuBefore.get(label);
    const databaseCpuPerChangeMs = databaseBefore === undefined ? undefined : (databaseCpu(system)! - databaseBefore) / SAMPLES;
    entry[label] = { acked: summarize(s.acked), serving: summarize(s.serving), cpuPerChangeMs, envoyCpuPerChangeMs, databaseCpuPerChangeMs };
    if (s.errors.length > 0) console.log(`  ${label}: ${s.errors.length} failed samples, first: ${s.errors[0]}`);
  }
  results.set(`${envoys}/${routes}`, entry);
  printNewRoute(envoys, routes, entry);
}

function printNewRoute(envoys: number, routes: number, entry: Record<string, NewRouteFigures>): void {
  const candidate = entry[CANDIDATE_LABEL]!;
  const ref = entry.reference!;
  const rows: string[][] = [];
  for (const metric of ['acked', 'serving'] as const) {
    const s = candidate[metric];
    const r = ref[metric];
    const what = metric === 'acked' ? 'all ACKed (the call returns)' : `first 200 at every gateway (probe ${PROBE_MS} ms)`;
    const triple = (x: Summary) => `${fmtMs(x.p50)} / ${fmtMs(x.p95)} / ${fmtMs(x.p99)}${x.failed ? ` (${x.failed} failed)` : ''}`;
    let budget: string;
    let ok: boolean;
    if (envoys === 1) {
      ok = s.p50 <= r.p50 + 8 && s.p99 <= r.p99 + 20;
      budget = 'p50 ≤ ref + 8 ms, p99 ≤ ref + 20 ms';
    } else {
      ok = s.p50 <= 1.15 * r.p50 && s.p99 <= 1.15 * r.p99;
      budget = 'ratio ≤ 1.15 at p50 and p99';
    }
    rows.push([what, triple(s), triple(r), `${fmtRatio(s.p50 / r.p50)} / ${fmtRatio(s.p99 / r.p99)}`, `${fmtDiff(s.p50 - r.p50)} / ${fmtDiff(s.p99 - r.p99)}`, budget, verdict(ok)]);
  }
  const cpu = (x: NewRouteFigures) => `${x.cpuPerChangeMs.toFixed(1)} ms`;
  rows.push(['control-plane CPU per change (mean)', cpu(candidate), cpu(ref), fmtRatio(candidate.cpuPerChangeMs / ref.cpuPerChangeMs), fmtDiff(candidate.cpuPerChangeMs - ref.cpuPerChangeMs), 'not budgeted', '']);
  const envoyCpu = (x: NewRouteFigures) => `${x.envoyCpuPerChangeMs.toFixed(1)} ms`;
  rows.push([`CPU of the ${envoys === 1 ? 'Envoy' : `${envoys} Envoys together`} per change (mean; with the probes)`, envoyCpu(candidate), envoyCpu(ref), fmtRatio(candidate.envoyCpuPerChangeMs / ref.envoyCpuPerChangeMs), fmtDiff(candidate.envoyCpuPerChangeMs - ref.envoyCpuPerChangeMs), 'not budgeted', '']);
  const databaseCpu = (x: NewRouteFigures) => (x.databaseCpuPerChangeMs === undefined ? '— (no database)' : `${x.databaseCpuPerChangeMs.toFixed(1)} ms`);
  rows.push(['database CPU per change (mean; Postgres, all its processes)', databaseCpu(candidate), databaseCpu(ref), '', '', 'not budgeted', '']);
  console.log(`\n### New route, ${envoys} Envoy${envoys === 1 ? '' : 's'}, ${routes.toLocaleString('en')} routes preloaded, ${SAMPLES} samples each\n`);
  console.log(table(['what', `${CANDIDATE_LABEL} p50 / p95 / p99`, 'reference p50 / p95 / p99', 'ratio p50 / p99', 'difference p50 / p99', 'budget', ''], rows));
}

/** At the largest route count, each figure within 1.5x of the same figure at the smallest. */
function printScaling(results: NewRouteResults): void {
  const small = ROUTES[0]!;
  const large = ROUTES.at(-1)!;
  if (small === large) return;
  const rows: string[][] = [];
  for (const envoys of ENVOYS) {
    const a = results.get(`${envoys}/${small}`);
    const b = results.get(`${envoys}/${large}`);
    if (!a || !b) continue;
    for (const metric of ['acked', 'serving'] as const) {
      for (const p of ['p50', 'p99'] as const) {
        const [sa, sb] = [a[CANDIDATE_LABEL]!, b[CANDIDATE_LABEL]!];
        const s = sb[metric][p] / sa[metric][p];
        const r = b.reference![metric][p] / a.reference![metric][p];
        rows.push([`${envoys} Envoy${envoys === 1 ? '' : 's'}, ${metric === 'acked' ? 'all ACKed' : 'first 200 everywhere'}, ${p}`, `${fmtMs(sa[metric][p])} → ${fmtMs(sb[metric][p])}`, fmtRatio(s), `${fmtMs(a.reference![metric][p])} → ${fmtMs(b.reference![metric][p])}`, fmtRatio(r), '≤ 1.5', verdict(s <= 1.5)]);
      }
    }
  }
  if (rows.length === 0) return;
  console.log(`\n### New route: ${large.toLocaleString('en')} vs ${small.toLocaleString('en')} routes preloaded\n`);
  console.log(table(['figure', CANDIDATE_LABEL, `${CANDIDATE_LABEL} ratio`, 'reference', 'reference ratio', `budget (${CANDIDATE_LABEL})`, ''], rows));
}

// ---- scenario 2: many routes in one request ---------------------------------------------

interface BulkCase {
  what: string;
  /** Untimed: the state before each sample. */
  before: number;
  /** Timed: one request that leaves this many routes. */
  after: number;
}

async function bulkScenario(systems: readonly System[]): Promise<void> {
  const smallest = ROUTES[0]!;
  const largest = ROUTES.at(-1)!;
  const cases: BulkCase[] = [{ what: `${smallest.toLocaleString('en')} routes in one request (from none)`, before: 0, after: smallest }];
  if (largest > smallest) cases.push({ what: `${smallest.toLocaleString('en')} → ${largest.toLocaleString('en')} routes in one request`, before: smallest, after: largest });
  const rows: string[][] = [];
  let sampleId = 0;
  for (const c of cases) {
    const times = new Map<string, Sample[]>(systems.map((s) => [s.label, []]));
    for (let i = 0; i < BULK_SAMPLES; i++) {
      const order = i % 2 === 0 ? systems : [...systems].reverse();
      for (const system of order) {
        await replaceInSteps(system, preloaded(c.before));
        await sleep(SETTLE_MS);
        // Fresh names per sample, so no cache holds a translation of them yet.
        const id = sampleId++;
        const added = Array.from({ length: c.after - c.before }, (_, j) => ({ name: `b${id}-${j}`, prefix: `/b${id}/${j}/` }));
        const result = await system.replaceRoutes([...preloaded(c.before), ...added]);
        times.get(system.label)!.push(result.ms);
        if (result.error) console.log(`  ${system.label}, ${c.what}: ${result.error}`);
        else await assertServed(system, added.at(-1)!.prefix);
        await sleep(SETTLE_MS);
      }
    }
    const s = summarize(times.get('Sluice')!);
    const r = summarize(times.get('reference')!);
    const fmt = (x: Summary) => `${fmtMs(x.median)} (${fmtMs(x.min)}–${fmtMs(x.max)})${x.failed ? `, ${x.failed} failed` : ''}`;
    rows.push([`${c.what}, live at ${BULK_ENVOYS} Envoys`, fmt(s), fmt(r), fmtRatio(s.median / r.median), '≤ 3×', verdict(s.median <= 3 * r.median)]);
  }
  console.log(`\n### Many routes in one request, ${BULK_ENVOYS} Envoys, ${BULK_SAMPLES} samples each (median, min–max)\n`);
  console.log(table(['what', 'Sluice', 'reference', 'ratio', 'budget', ''], rows));
}

/** After an ACKed bulk write, the last new route answers 200 at every Envoy (a check, untimed). */
async function assertServed(system: System, prefix: string): Promise<void> {
  const probes = await openProbes(system.gatewayPort, system.envoys.map((e) => e.pid));
  try {
    const served = await firstOkAtEvery(probes, `${prefix}probe`, performance.now(), 50, 10_000);
    if (served === undefined) console.log(`  ${system.label}: ${prefix} ACKed but not served by every Envoy within 10 s`);
  } finally {
    for (const probe of probes) probe.close();
  }
}

// ---- scenario 3: memory --------------------------------------------------------------------

interface MemoryReading {
  sluice: ReturnType<typeof processMemory>;
  /** What of Sluice's RSS is V8's heap (used / reserved) and external memory (Buffers), MiB. */
  sluiceHeap?: { usedMiB: number; totalMiB: number; externalMiB: number };
  reference: ReturnType<typeof processMemory>;
  postgres: ReturnType<typeof processTreePssMiB>;
}

async function readMemory(sluice: System, reference: System, postmasterPid: number): Promise<MemoryReading> {
  const reading: MemoryReading = { sluice: processMemory(sluice.pid), reference: processMemory(reference.pid), postgres: processTreePssMiB(postmasterPid) };
  if (sluice.metricsUrl) reading.sluiceHeap = await heapFromMetrics(sluice.metricsUrl);
  return reading;
}

/** V8 heap figures from prom-client's default process metrics. */
async function heapFromMetrics(url: string): Promise<MemoryReading['sluiceHeap']> {
  const text = await (await fetch(url, { signal: AbortSignal.timeout(5_000) })).text();
  const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20;
  return { usedMiB: gauge('nodejs_heap_size_used_bytes'), totalMiB: gauge('nodejs_heap_size_total_bytes'), externalMiB: gauge('nodejs_external_memory_bytes') };
}

/** Memory of both systems at one moment, after `what`. */
interface LabelledReading {
  what: string;
  budgetMiB: number;
  reading: MemoryReading;
}

/** How long RSS must stop falling, and the bounds of the wait, for a "settled" reading. */
const SETTLED_FLAT_MS = 10_000;
const SETTLED_MIN_MS = 30_000;
const SETTLED_MAX_MS = 90_000;

/**
 * Reads memory 3 s after `since` (the point the earlier results used), then waits until Sluice's RSS has not fallen by more than 1 MiB for
 * SETTLED_FLAT_MS, at least SETTLED_MIN_MS after `since` (V8's memory reducer
 * and malloc trimming act some seconds after the last work) and at most
 * SETTLED_MAX_MS, and reads again. Both systems are read at the same moments.
 */
async function readEarlyAndSettled(sluice: System, reference: System, postmasterPid: number, since: number, what: string, budgetMiB: number): Promise<LabelledReading[]> {
  await sleep(Math.max(0, since + 3_000 - performance.now()));
  const early: LabelledReading = { what: `${what}, 3 s after`, budgetMiB, reading: await readMemory(sluice, reference, postmasterPid) };
  let lowest = early.reading.sluice.rssMiB;
  let lowestAt = performance.now();
  for (;;) {
    await sleep(1_000);
    const now = performance.now();
    const rss = processMemory(sluice.pid).rssMiB;
    if (rss < lowest - 1) {
      lowest = rss;
      lowestAt = now;
    }
    const flat = now - lowestAt >= SETTLED_FLAT_MS && now - since >= SETTLED_MIN_MS;
    if (flat || now - since >= SETTLED_MAX_MS) {
      const label = `${what}, settled (${((now - since) / 1_000).toFixed(0)} s after${flat ? '' : ', still falling'})`;
      return [early, { what: label, budgetMiB, reading: await readMemory(sluice, reference, postmasterPid) }];
    }
  }
}

function printMemory(readings: readonly LabelledReading[]): void {
  const rows: string[][] = [];
  const mib = (n: number) => `${n.toFixed(0)} MiB`;
  for (const { what, reading: m, budgetMiB } of readings) {
    rows.push([`${what}: control-plane RSS (peak so far)`, `${mib(m.sluice.rssMiB)} (${mib(m.sluice.peakMiB)})`, `${mib(m.reference.rssMiB)} (${mib(m.reference.peakMiB)})`, fmtRatio(m.sluice.rssMiB / m.reference.rssMiB), `≤ ${budgetMiB} MiB`, verdict(m.sluice.rssMiB <= budgetMiB)]);
    const heap = m.sluiceHeap;
    if (heap) rows.push([`${what}: of that RSS, V8 heap used / reserved, external`, `${mib(heap.usedMiB)} / ${mib(heap.totalMiB)}, ${mib(heap.externalMiB)}`, '', '', 'not budgeted', '']);
    rows.push([`${what}: Sluice's Postgres, PSS of ${m.postgres.processes} processes`, mib(m.postgres.pssMiB), '— (no database)', '', 'not budgeted', '']);
  }
  console.log('\n### Control-plane memory (VmRSS of the running process)\n');
  console.log(table(['what', 'Sluice', 'reference', 'ratio', 'budget', ''], rows));
}

/** The settings that make a commit durable, as the server reports them. */
async function postgresDurability(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const names = ['fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'server_version'];
    const settings: string[] = [];
    for (const name of names) settings.push(`${name}=${(await client.query<{ v: string }>('SELECT current_setting($1) AS v', [name])).rows[0]?.v}`);
    return settings.join(' ');
  } finally {
    await client.end();
  }
}

// ---- main ---------------------------------------------------------------------------------

function machineLine(): string {
  const cpus = os.cpus();
  const [one, five] = os.loadavg();
  return `machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, ` +
    `load average ${one!.toFixed(1)} / ${five!.toFixed(1)} (1 / 5 min), ${new Date().toISOString()}`;
}

console.log(machineLine());
console.log(`settings: SCENARIOS=${[...SCENARIOS].join(',')} ENVOYS=${ENVOYS.join(',')} ROUTES=${ROUTES.join(',')} SAMPLES=${SAMPLES} BULK_SAMPLES=${BULK_SAMPLES} BULK_ENVOYS=${BULK_ENVOYS} RSS_ENVOYS=${RSS_ENVOYS} RSS_ROUTES=${RSS_ROUTES} PROBE_MS=${PROBE_MS} XDS=${DELTA ? 'delta' : 'sotw'} ROUTE_STATS=${ROUTE_STATS} CONTROL_PLANE=${CONTROL_PLANE} control-plane env: ${Object.entries(CONTROL_PLANE_ENV).map(([k, v]) => `${k}=${v}`).join(' ') || '(none)'} CONTROL_PLANE_NODE_ARGS=${CONTROL_PLANE_NODE_ARGS.join(' ')}`);

// A durable Postgres (fsync on: no `fast`), thrown away at the end.
const pgRoot = await mkdtemp(path.join(os.tmpdir(), 'sluice-bench-pg-'));
const db: EmbeddedPostgres = await startEmbeddedPostgres({ rootDir: pgRoot, database: 'sluice', persistent: false, fast: false, handleSignals: true });
const durability = await postgresDurability(db.url);
console.log(`Postgres: ${durability}`);
const postmasterPid = Number(readFileSync(path.join(db.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
const upstream = await startHttpUpstream({ name: 'bench' });
let cp: ControlPlane | undefined;
const anchors: Anchor[] = [];
const systems: System[] = [];
let exitCode = 0;

/** A reference instance, killed when this process exits (the Envoy and control-plane helpers do that for theirs; the anchor's does not). */
async function startReference(label?: string): Promise<System> {
  const anchor = await startAnchor({ upstreamPort: upstream.port });
  anchors.push(anchor);
  process.on('exit', () => {
    try {
      process.kill(anchor.pid, 'SIGKILL');
    } catch {
      // already stopped
    }
  });
  return referenceSystem(anchor, label);
}

try {
  let candidate: System;
  if (A_A) {
    candidate = await startReference(CANDIDATE_LABEL);
  } else {
    if (COMPILED) execFileSync('bash', ['scripts/build.sh', '--if-stale'], { stdio: 'inherit' });
    cp = await startControlPlane({ databaseUrl: db.url, env: { ...CONTROL_PLANE_ENV, GATEWAY_ROUTE_STATS: ROUTE_STATS }, compiled: COMPILED, nodeArgs: CONTROL_PLANE_NODE_ARGS });
    candidate = sluiceSystem(cp, upstream.port, postmasterPid);
  }
  // `sluice` is the system the budgets judge: Sluice, or in an A/A run the second reference.
  const sluice = candidate;
  const reference = await startReference();
  systems.push(sluice, reference);
  const started = performance.now();

  const memory: LabelledReading[] = [];
  if (SCENARIOS.has('rss')) {
    // Idle: 3 s after both control planes answered (past migrations and the first publish), then settled.
    memory.push(...(await readEarlyAndSettled(sluice, reference, postmasterPid, started, 'idle (no routes, no Envoys), start', 120)));
  }

  if (SCENARIOS.has('new')) {
    const results: NewRouteResults = new Map();
    for (const envoys of ENVOYS) {
      for (const routes of ROUTES) {
        await arrange(systems, envoys, routes);
        await newRouteScenario(systems, envoys, routes, results);
      }
    }
    printScaling(results);
  }

  if (SCENARIOS.has('bulk')) {
    await arrange(systems, BULK_ENVOYS, 0);
    await bulkScenario(systems);
  }

  if (SCENARIOS.has('rss')) {
    const envoys = RSS_ENVOYS;
    const routes = RSS_ROUTES;
    await arrange(systems, envoys, routes);
    // Loaded on a fresh process (rss alone) differs from loaded after the other scenarios' writes: say which.
    const before = [...SCENARIOS].filter((s) => s !== 'rss');
    const history = before.length === 0 ? 'fresh process' : `after the ${before.join(' and ')} scenario${before.length > 1 ? 's' : ''}`;
    memory.push(...(await readEarlyAndSettled(sluice, reference, postmasterPid, performance.now(), `${envoys} Envoys, ${routes.toLocaleString('en')} routes (${history}), arranged`, 300)));
    printMemory(memory);
  }
  console.log(`\n${machineLine()}`);
} catch (err) {
  exitCode = 1;
  console.error(err);
  if (cp) console.error(`control-plane output (tail):\n${cp.output().slice(-3_000)}`);
} finally {
  for (const system of systems) for (const envoy of system.envoys) await envoy.stop();
  await cp?.stop();
  for (const anchor of anchors) await anchor.stop();
  await upstream.close();
  await db.stop();
  process.exit(exitCode);
}
