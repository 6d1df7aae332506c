// Where a one-route write with ?wait=applied spends its time (issue 12's
// "new route, 1 Envoy"): the real control plane on a durable Postgres (fsync
// on), one real Envoy, ROUTES routes preloaded, GATEWAY_ROUTE_STATS as the
// propagation bench runs it. WRITES sequential POST /v1/routes?wait=applied;
// prints p50/p95 of the client-side time, the median of each server phase
// (Server-Timing, switched on for this process only: admin/timing.ts) and the
// CPU the control plane and Postgres spent per write (less sensitive to other
// load on a shared machine than the latencies are).
//
// Run: node --import tsx bench/write-path.profile.ts
// Settings (environment): ROUTES=1000  WRITES=200  ENVOYS=1  ROUTE_STATS=traffic_split
//   CPU_PROF=<dir>: the control plane runs with --cpu-prof into <dir> (a .cpuprofile on exit)
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../control-plane/src/store/postgres.ts';
import { startControlPlane, type ControlPlane } from '../test/helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../test/helpers/envoy.ts';
import { startHttpUpstream } from '../test/helpers/upstream.ts';
import { fmtMs, percentile, processCpuMs, serverTiming, timedJson, treeCpuMs } from './propagation-lib.ts';

const ROUTES = Number(process.env.ROUTES ?? 1000);
const WRITES = Number(process.env.WRITES ?? 200);
const ENVOYS = Number(process.env.ENVOYS ?? 1);
const ROUTE_STATS = process.env.ROUTE_STATS ?? 'traffic_split';
const TIMEOUT_MS = 10_000;



const median = (values: number[]): number => percentile([...values].sort((a, b) => a - b), 50);

async function oneWrite(cp: ControlPlane, k: number, phases: Map<string, number[]>): Promise<number> {
  const spec = { name: `w-${k}`, match: { path: { prefix: `/w/${k}/` } }, action: { upstream: 'bench' } };
  const started = performance.now();
  const res = await fetch(`${cp.adminUrl}/v1/routes?wait=applied&timeout=${TIMEOUT_MS}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${cp.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(spec),
    signal: AbortSignal.timeout(TIMEOUT_MS + 5_000),
  });
  const body = (await res.json()) as { applied?: boolean };
  const ms = performance.now() - started;
  if (res.status !== 201 || body.applied !== true) throw new Error(`write ${k}: HTTP ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
  const timing = serverTiming(res.headers.get('server-timing'));
  timing.set('client-only', ms - (timing.get('total') ?? ms));
  for (const [phase, dur] of timing) phases.set(phase, [...(phases.get(phase) ?? []), dur]);
  return ms;
}

const pgRoot = await mkdtemp(path.join(os.tmpdir(), 'sluice-writepath-pg-'));
const db = await startEmbeddedPostgres({ rootDir: pgRoot, database: 'sluice', persistent: false, fast: false, handleSignals: true });
const upstream = await startHttpUpstream({ name: 'bench' });
let cp: ControlPlane | undefined;
const envoys: EnvoyHandle[] = [];
try {
  const nodeArgs = process.env.CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CPU_PROF}`] : [];
  cp = await startControlPlane({ databaseUrl: db.url, env: { GATEWAY_ROUTE_STATS: ROUTE_STATS, SLUICE_SERVER_TIMING: 'true' }, nodeArgs });
  const routes = Array.from({ length: ROUTES }, (_, i) => ({ name: `r-${i}`, match: { path: { prefix: `/r/${i}/` } }, action: { upstream: 'bench' } }));
  const config = { upstreams: [{ name: 'bench', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }], routes };
  const loaded = await timedJson(`${cp.adminUrl}/v1/config?wait=applied&timeout=60000`, 'PUT', config, { authorization: `Bearer ${cp.token}` }, 90_000);
  if (loaded.status !== 200) throw new Error(`preload: HTTP ${loaded.status} ${JSON.stringify(loaded.body).slice(0, 300)}`);
  for (let i = 0; i < ENVOYS; i++) envoys.push(await startEnvoy({ adsPort: cp.xdsPort, nodeId: `writepath-${i}`, startTimeoutMs: 60_000 }));
  for (const envoy of envoys) await envoy.waitReady(120_000);
  for (let k = 0; k < 10; k++) await oneWrite(cp, 1_000_000 + k, new Map()); // warm-up, not counted
  const phases = new Map<string, number[]>();
  const samples: number[] = [];
  const postmaster = Number(readFileSync(path.join(db.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const cpuBefore = { cp: processCpuMs(cp.pid), pg: treeCpuMs(postmaster) };
  for (let k = 0; k < WRITES; k++) samples.push(await oneWrite(cp, k, phases));
  const cpu = { cp: (processCpuMs(cp.pid) - cpuBefore.cp) / WRITES, pg: (treeCpuMs(postmaster) - cpuBefore.pg) / WRITES };
  const sorted = [...samples].sort((a, b) => a - b);
  console.log(`write path: ${WRITES} one-route writes with ?wait=applied, ${ROUTES} routes preloaded, ${ENVOYS} Envoy(s), ROUTE_STATS=${ROUTE_STATS}`);
  console.log(`client: p50 ${fmtMs(percentile(sorted, 50))}  p95 ${fmtMs(percentile(sorted, 95))}  p99 ${fmtMs(percentile(sorted, 99))}`);
  console.log(`CPU per write: control plane ${cpu.cp.toFixed(2)} ms, Postgres ${cpu.pg.toFixed(2)} ms (10 ms ticks, averaged)`);
  console.log('server phases (median ms; each from the previous mark):');
  for (const [phase, values] of phases) console.log(`  ${phase.padEnd(12)} ${median(values).toFixed(2)}`);
} finally {
  for (const envoy of envoys) await envoy.stop();
  await cp?.stop();
  await upstream.close();
  await db.stop();
}
