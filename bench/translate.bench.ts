// Translation and snapshot cost at scale, and the control plane's memory with
// 10,000 routes. Run: node --import tsx --expose-gc bench/translate.bench.ts
// Prints medians over several runs; budgets from DESIGN.md are printed beside
// them as ratios (measured / budget), never asserted.
import os from 'node:os';
import { RouteSchema, UpstreamSchema, type State } from '../control-plane/src/model/index.ts';
import { createTranslationCache, translate } from '../control-plane/src/translate/index.ts';
import { makeSnapshot } from '../control-plane/src/xds/snapshot.ts';

const ROUTES = Number(process.env.ROUTES ?? 10_000);
const UPSTREAMS = 100;
const RUNS = Number(process.env.RUNS ?? 7);

function state(revision: number, routes: number, changedRoute = -1): State {
  return {
    revision,
    upstreams: Array.from({ length: UPSTREAMS }, (_, i) =>
      UpstreamSchema.parse({ name: `svc-${i}`, endpoints: [{ host: '10.0.0.1', port: 8000 + i }, { host: '10.0.0.2', port: 8000 + i }] })),
    routes: Array.from({ length: routes }, (_, i) =>
      RouteSchema.parse({
        name: `route-${i}`,
        hosts: [`api-${i % 50}.example.com`],
        match: { path: { prefix: `/r${i}/` }, ...(i % 3 === 0 ? { methods: ['GET'] } : {}) },
        action: i % 10 === 0
          ? { split: [{ upstream: `svc-${i % UPSTREAMS}`, weight: 90 }, { upstream: `svc-${(i + 1) % UPSTREAMS}`, weight: 10 }] }
          : { upstream: `svc-${i % UPSTREAMS}` },
        timeout_ms: i === changedRoute ? 9_000 : 15_000,
      })),
    consumers: [], credentials: [], jwt_providers: [], rate_limit_policies: [],
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function time(fn: () => void): number {
  const start = performance.now();
  fn();
  return performance.now() - start;
}

const options = { listenerPort: 10000 };
const base = state(1, ROUTES);
const cold: number[] = [];
for (let i = 0; i < RUNS; i++) cold.push(time(() => makeSnapshot(1, Object.values(translate(base, options)).flat())));

const cache = createTranslationCache();
translate(base, options, cache);
const oneChange: number[] = [];
for (let i = 0; i < RUNS; i++) {
  const changed = state(2 + i, ROUTES, i);
  oneChange.push(time(() => makeSnapshot(2 + i, Object.values(translate(changed, options, cache)).flat())));
}

(globalThis as { gc?: () => void }).gc?.();
const held = translate(base, options, cache);
const rssMiB = process.memoryUsage().rss / 2 ** 20;
const routeBytes = held.routes.reduce((n, r) => n + r.value.length, 0);

console.log(`machine: ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`);
console.log(`routes=${ROUTES} upstreams=${UPSTREAMS} runs=${RUNS}`);
console.log(`full translation + snapshot   median ${median(cold).toFixed(1)} ms   budget 200 ms   ratio ${(median(cold) / 200).toFixed(2)}`);
console.log(`one-route change (cached)     median ${median(oneChange).toFixed(1)} ms   ratio to full ${(median(oneChange) / median(cold)).toFixed(2)}`);
console.log(`RSS holding state+resources   ${rssMiB.toFixed(0)} MiB   budget 300 MiB   ratio ${(rssMiB / 300).toFixed(2)}`);
console.log(`route table size              ${(routeBytes / 2 ** 20).toFixed(2)} MiB encoded`);
