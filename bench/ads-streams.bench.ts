// A thousand ADS streams per process, Sluice side by side with the
// go-control-plane reference (bench/anchor.ts), same synthetic client
// (test/helpers/synthetic-ads.ts), samples interleaved:
//   (a) one route change pushed to every stream: from the write to the last
//       stream's ACK (budget: Sluice <= 0.5x the reference);
//   (b) Sluice's `?wait=applied` return time against that push itself, in the
//       same sample (budget <= 1.5x);
//   (c) RSS with the streams connected, and memory per stream
//       ((RSS with streams - RSS before) / streams), for both.
// Run: node --import tsx bench/ads-streams.bench.ts   (STREAMS, SAMPLES, ROUTES)
// Needs bench/setup.sh (the reference binary). Loopback only.
import os from 'node:os';
import { readFile } from 'node:fs/promises';
import { startAnchor, type Anchor } from './anchor.ts';
import { startControlPlane, type ControlPlane } from '../test/helpers/control-plane.ts';
import { createTestDatabase, stopTestPostgres } from '../test/helpers/postgres.ts';
import { startSyntheticFleet, type SyntheticFleet } from '../test/helpers/synthetic-ads.ts';
import { startHttpUpstream } from '../test/helpers/upstream.ts';
import { sleep } from '../test/helpers/net.ts';

const STREAMS = Number(process.env.STREAMS ?? 1_000);
const SAMPLES = Number(process.env.SAMPLES ?? 15);
/** Routes present before the samples (both systems get the same count). */
const ROUTES = Number(process.env.ROUTES ?? 10);
const TIMEOUT_MS = 120_000;

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? NaN) * 1024;
}

/** Time from `started` to the last stream's ACK of a route table naming `route` (performance.now() clock). */
async function pushMs(fleet: SyntheticFleet, route: string, started: number): Promise<number> {
  await fleet.waitForRoute(route, { timeoutMs: TIMEOUT_MS });
  let last = 0;
  for (const stream of fleet.streams) last = Math.max(last, fleet.ackedRoute(stream.index, route)!.ackedAt);
  return last - started;
}

interface System {
  name: string;
  pid: number;
  xdsPort: number;
  /** Writes one route; resolves with when the write call returned (performance.now()), if it waited. */
  write(route: string, wait: boolean): Promise<void>;
}

function sluice(cp: ControlPlane): System {
  return {
    name: 'sluice',
    pid: cp.pid,
    xdsPort: cp.xdsPort,
    async write(route, wait) {
      const query = wait ? `?wait=applied&timeout=${TIMEOUT_MS}` : '';
      const res = await cp.api('POST', `/v1/routes${query}`, { name: route, match: { path: { prefix: `/${route}/` } }, action: { upstream: 'bench' } });
      if (res.status !== 201 || (res.body as { applied?: boolean }).applied === false) throw new Error(`sluice POST /v1/routes: ${res.status} ${JSON.stringify(res.body)}`);
    },
  };
}

function reference(anchor: Anchor): System {
  return {
    name: 'reference',
    pid: anchor.pid,
    xdsPort: anchor.xdsPort,
    async write(route, wait) {
      const out = await anchor.apply([{ name: route, prefix: `/${route}/` }], { wait, timeoutMs: TIMEOUT_MS });
      if (wait && out.acked === false) throw new Error('reference: not acked');
    },
  };
}

const db = await createTestDatabase();
const upstream = await startHttpUpstream({ name: 'bench' });
const cp = await startControlPlane({ databaseUrl: db.url });
const anchor = await startAnchor({ upstreamPort: upstream.port });
const fleets: SyntheticFleet[] = [];
try {
  const put = await cp.api('PUT', '/v1/config', {
    upstreams: [{ name: 'bench', endpoints: [{ host: '127.0.0.1', port: upstream.port }] }],
    routes: Array.from({ length: ROUTES }, (_, i) => ({ name: `existing-${i}`, match: { path: { prefix: `/existing/${i}/` } }, action: { upstream: 'bench' } })),
  });
  if (put.status !== 200) throw new Error(`PUT /v1/config: ${put.status} ${JSON.stringify(put.body)}`);
  await anchor.apply(Array.from({ length: ROUTES }, (_, i) => ({ name: `existing-${i}`, prefix: `/existing/${i}/` })), { replace: true });

  const systems = [sluice(cp), reference(anchor)];
  const rss = new Map<string, { before: number; after: number }>();
  const fleetOf = new Map<string, SyntheticFleet>();
  for (const system of systems) {
    await sleep(500); // let the idle process settle before the "before" reading
    const before = await rssBytes(system.pid);
    const fleet = await startSyntheticFleet({ port: system.xdsPort, streams: STREAMS, nodePrefix: `${system.name}-synthetic`, group: 'default', openTimeoutMs: TIMEOUT_MS });
    fleets.push(fleet);
    fleetOf.set(system.name, fleet);
    await fleet.waitForRoute('existing-0', { timeoutMs: TIMEOUT_MS });
    await sleep(1_000);
    rss.set(system.name, { before, after: await rssBytes(system.pid) });
  }

  const push = new Map<string, number[]>(systems.map((s) => [s.name, []]));
  const waitedPush: number[] = [];
  const waitReturn: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    // Interleaved: each sample writes to both systems, alternating which goes first.
    const order = i % 2 === 0 ? systems : [...systems].reverse();
    for (const system of order) {
      const fleet = fleetOf.get(system.name)!;
      const name = `push-${i}`;
      const started = performance.now();
      await system.write(name, false);
      push.get(system.name)!.push(await pushMs(fleet, name, started));
      await sleep(200);
    }
    // (b) Sluice with ?wait=applied: its return time against the push it waited for.
    const name = `waited-${i}`;
    const started = performance.now();
    await systems[0]!.write(name, true);
    waitReturn.push(performance.now() - started);
    waitedPush.push(await pushMs(fleetOf.get('sluice')!, name, started));
    await sleep(200);
  }

  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  const [s, r] = [median(push.get('sluice')!), median(push.get('reference')!)];
  console.log(`machine: ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; streams=${STREAMS} routes=${ROUTES} samples=${SAMPLES}`);
  console.log(`(a) one route pushed to ${STREAMS} streams (write -> last ACK), median: sluice ${s.toFixed(1)} ms, reference ${r.toFixed(1)} ms, ratio ${(s / r).toFixed(2)} (budget <= 0.5)`);
  const [w, p] = [median(waitReturn), median(waitedPush)];
  console.log(`(b) sluice ?wait=applied return ${w.toFixed(1)} ms vs its push ${p.toFixed(1)} ms, ratio of medians ${(w / p).toFixed(2)}; median per-sample ratio ${median(waitReturn.map((x, k) => x / waitedPush[k]!)).toFixed(2)} (budget <= 1.5)`);
  for (const system of systems) {
    const m = rss.get(system.name)!;
    console.log(`(c) ${system.name}: RSS before ${mib(m.before)} MiB, with ${STREAMS} streams ${mib(m.after)} MiB, per stream ${((m.after - m.before) / STREAMS / 1024).toFixed(1)} KiB`);
  }
} finally {
  for (const fleet of fleets) fleet.close();
  await anchor.stop();
  await cp.stop();
  await upstream.close();
  await db.drop();
  await stopTestPostgres();
  process.exit(0);
}
