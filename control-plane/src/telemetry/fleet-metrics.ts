// The fleet's traffic as Prometheus series: requests by status class and
// upstream latency, per route and per upstream, summed over every Envoy since
// this control plane started (counters must not go down, so these are totals,
// not the rolling window). Label values are route and upstream names that
// exist in the current State.
import { Counter, type Registry } from 'prom-client';
import { BucketHistogram, type BucketSeries } from './bucket-histogram.ts';
import type { FleetWindow } from './fleet-window.ts';

const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

export function exposeFleetTraffic(registry: Registry, window: FleetWindow): void {
  new Counter({
    name: 'sluice_fleet_requests_total',
    help: 'Requests the fleet sent upstream, by route or upstream and status class (from the Envoys\' stats sink).',
    labelNames: ['kind', 'name', 'class'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { kind, name, tally } of window.allTotals()) {
        tally.status.forEach((n, i) => this.inc({ kind, name, class: CLASSES[i]! }, n));
      }
    },
  });
  new BucketHistogram({
    name: 'sluice_fleet_upstream_latency_seconds',
    help: 'Upstream request time across the fleet, by route or upstream (Envoy\'s upstream_rq_time buckets, merged).',
    labelNames: ['kind', 'name'],
    bounds: ENVOY_BOUNDS_MS.map((ms) => ms / 1000),
    registry,
    read: () => window.allTotals().map(({ kind, name, tally }) => seriesOf({ kind, name }, tally.latency, tally.sumMs)),
  });
}

/** Envoy's default histogram bucket bounds (ms), which upstream_rq_time uses. */
const ENVOY_BOUNDS_MS: readonly number[] = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

/** Merged counts per Envoy bound as a BucketSeries in seconds (a bound Envoy did not use folds into the next one up). */
function seriesOf(labels: Record<string, string>, latency: ReadonlyMap<number, number>, sumMs: number): BucketSeries {
  const counts = new Array<number>(ENVOY_BOUNDS_MS.length + 1).fill(0);
  for (const [bound, n] of latency) {
    let i = ENVOY_BOUNDS_MS.findIndex((b) => bound <= b);
    if (i < 0) i = ENVOY_BOUNDS_MS.length;
    counts[i] = (counts[i] ?? 0) + n;
  }
  return { labels, counts, sum: sumMs / 1000 };
}
