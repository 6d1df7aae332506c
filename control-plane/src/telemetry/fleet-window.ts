// Fleet traffic from Envoy's metrics_service stream, in a rolling window:
// per Sluice route and per upstream, requests by status class and upstream
// latency histograms merged across every Envoy.
//
// What Envoy sends (emit_tags_as_labels, histograms as buckets), per flush:
//   vhost.route.upstream_rq_xx{envoy.route, envoy.response_code_class}  counter
//   vhost.route.upstream_rq_time{envoy.route}                           histogram
//   cluster.upstream_rq_xx{envoy.cluster_name, envoy.response_code_class}
//   cluster.upstream_rq_time{envoy.cluster_name}
// Counters are cumulative per Envoy (deltas are taken per node, a drop means
// the Envoy restarted); histograms cover one flush interval each (Envoy sends
// their interval statistics), so they are added as they come.
import type { FleetStatsReader, WindowStats } from './fleet-stats.ts';
import type { MetricsIngest, PromFamily, PromMetric } from './metrics-sink.ts';

export interface FleetWindowOptions {
  /** Bucket width (default 10 s) and window length (default 5 min). */
  bucketMs?: number;
  windowMs?: number;
  /** Series remembered per Envoy (default 20,000): a node past it gets no new series. */
  maxSeriesPerNode?: number;
  now?: () => number;
}

/** Which routes and upstreams exist, and each upstream's Envoy cluster name. */
export interface KnownTargets {
  /** Read once, when the window takes them in. */
  routes: Iterable<string>;
  /** Envoy cluster name -> upstream name. */
  clusters: ReadonlyMap<string, string>;
}

export type Kind = 'route' | 'upstream';

export interface Tally {
  status: [number, number, number, number, number]; // 1xx..5xx
  /** upper bound (ms) -> samples in that bucket (not cumulative). */
  latency: Map<number, number>;
  /** Sum of the latency samples (ms). */
  sumMs: number;
}

interface NodeState {
  /** series key -> last cumulative counter value. */
  counters: Map<string, number>;
  /** Series seen in the stream's first flush are baselines unless the Envoy just started. */
  flushes: number;
}

/** An Envoy whose uptime is at most this counts its counters from zero on its first flush. */
const FRESH_UPTIME_S = 60;

const ROUTE_XX = 'vhost.route.upstream_rq_xx';
const ROUTE_TIME = 'vhost.route.upstream_rq_time';
const CLUSTER_XX = 'cluster.upstream_rq_xx';
const CLUSTER_TIME = 'cluster.upstream_rq_time';

function emptyTally(): Tally {
  return { status: [0, 0, 0, 0, 0], latency: new Map(), sumMs: 0 };
}

function labelOf(metric: PromMetric, name: string): string | undefined {
  return metric.label?.find((l) => l.name === name)?.value;
}

export class FleetWindow implements FleetStatsReader, MetricsIngest {
  /** The families ingest() reads (the sink decodes no others). */
  readonly families: ReadonlySet<string> = new Set(['server.uptime', ROUTE_XX, ROUTE_TIME, CLUSTER_XX, CLUSTER_TIME]);

  private readonly bucketMs: number;
  private readonly windowMs: number;
  private readonly maxSeries: number;
  private readonly now: () => number;
  /** `${kind} ${name}` -> bucket start -> tally. */
  private readonly tallies = new Map<string, Map<number, Tally>>();
  /** `${kind} ${name}` -> everything since the control plane started. */
  private readonly totals = new Map<string, Tally>();
  private readonly nodes = new Map<string, NodeState>();
  private known: KnownTargets = { routes: [], clusters: new Map() };
  private knownRoutes = new Set<string>();
  private pendingKnown?: KnownTargets;

  constructor(options: FleetWindowOptions = {}) {
    this.bucketMs = options.bucketMs ?? 10_000;
    this.windowMs = options.windowMs ?? 300_000;
    this.maxSeries = options.maxSeriesPerNode ?? 20_000;
    this.now = options.now ?? Date.now;
  }

  /**
   * The current State's routes and upstreams; stats of anything else are dropped.
   * Taken in when next read or fed (every revision calls this; a burst of writes
   * at 10,000 routes should not rebuild the name set per revision).
   */
  setKnown(known: KnownTargets): void {
    this.pendingKnown = known;
  }

  private applyKnown(): void {
    const known = this.pendingKnown;
    if (!known) return;
    this.pendingKnown = undefined;
    this.known = known;
    this.knownRoutes = new Set(known.routes);
    const upstreams = new Set(known.clusters.values());
    for (const map of [this.tallies, this.totals]) {
      for (const key of map.keys()) {
        const [kind, name] = key.split(' ') as [Kind, string];
        if (!(kind === 'route' ? this.knownRoutes.has(name) : upstreams.has(name))) map.delete(key);
      }
    }
  }

  /** Whether the current State has this route or upstream. */
  exists(kind: Kind, name: string): boolean {
    this.applyKnown();
    return kind === 'route' ? this.knownRoutes.has(name) : [...this.known.clusters.values()].includes(name);
  }

  get bucketWidthMs(): number {
    return this.bucketMs;
  }

  get windowLengthMs(): number {
    return this.windowMs;
  }

  ingest(nodeId: string, families: readonly PromFamily[]): void {
    this.applyKnown();
    let node = this.nodes.get(nodeId);
    if (!node) {
      node = { counters: new Map(), flushes: 0 };
      this.nodes.set(nodeId, node);
    }
    const uptime = families.find((f) => f.name === 'server.uptime')?.metric?.[0]?.gauge?.value;
    const baselineNew = node.flushes === 0 && !(uptime !== undefined && uptime <= FRESH_UPTIME_S);
    const bucket = this.bucketStart(this.now());
    for (const family of families) {
      const isXx = family.name === ROUTE_XX || family.name === CLUSTER_XX;
      const isTime = family.name === ROUTE_TIME || family.name === CLUSTER_TIME;
      if (!isXx && !isTime) continue;
      const kind: Kind = family.name === ROUTE_XX || family.name === ROUTE_TIME ? 'route' : 'upstream';
      for (const metric of family.metric ?? []) {
        const name = this.targetOf(kind, metric);
        if (name === undefined) continue;
        if (isXx) this.addCounter(node, baselineNew, kind, name, metric, bucket);
        else this.addHistogram(kind, name, metric, bucket);
      }
    }
    node.flushes += 1;
    this.prune();
  }

  nodeGone(nodeId: string): void {
    this.nodes.delete(nodeId);
  }

  route(name: string, sinceMs: number): WindowStats {
    return this.read(`route ${name}`, sinceMs);
  }

  upstream(name: string, sinceMs: number): WindowStats {
    return this.read(`upstream ${name}`, sinceMs);
  }

  /** Every route or upstream with traffic in the window (for /metrics). */
  names(kind: Kind): string[] {
    this.applyKnown();
    const prefix = `${kind} `;
    return [...this.tallies.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }

  /** Merged latency buckets (upper bound ms -> count, not cumulative) since `sinceMs`. */
  latency(kind: Kind, name: string, sinceMs: number): Map<number, number> {
    return this.merge(`${kind} ${name}`, sinceMs).latency;
  }

  private targetOf(kind: Kind, metric: PromMetric): string | undefined {
    if (kind === 'route') {
      const route = labelOf(metric, 'envoy.route');
      return route !== undefined && this.knownRoutes.has(route) ? route : undefined;
    }
    const cluster = labelOf(metric, 'envoy.cluster_name');
    return cluster === undefined ? undefined : this.known.clusters.get(cluster);
  }

  private addCounter(node: NodeState, baselineNew: boolean, kind: Kind, name: string, metric: PromMetric, bucket: number): void {
    const classDigit = Number(labelOf(metric, 'envoy.response_code_class'));
    if (!(classDigit >= 1 && classDigit <= 5)) return;
    const value = metric.counter?.value ?? 0;
    const key = `${kind} ${name} ${classDigit}`;
    const previous = node.counters.get(key);
    if (previous === undefined && node.counters.size >= this.maxSeries) return;
    node.counters.set(key, value);
    // A series first seen after the stream's first flush started at zero; a drop means the Envoy restarted.
    const delta = previous === undefined ? (baselineNew ? 0 : value) : value >= previous ? value - previous : value;
    if (delta <= 0) return;
    for (const { status } of this.tallies2(kind, name, bucket)) status[classDigit - 1] = (status[classDigit - 1] ?? 0) + delta;
  }

  private addHistogram(kind: Kind, name: string, metric: PromMetric, bucket: number): void {
    const buckets = metric.histogram?.bucket ?? [];
    if (Number(metric.histogram?.sample_count ?? 0) === 0) return;
    for (const tally of this.tallies2(kind, name, bucket)) {
      const latency = tally.latency;
      tally.sumMs += metric.histogram?.sample_sum ?? 0;
      let below = 0;
      for (const b of buckets) {
        const cumulative = Number(b.cumulative_count ?? 0);
        const bound = b.upper_bound ?? Infinity;
        // Empty buckets are kept too: their bounds are the lower edges quantile() interpolates from.
        latency.set(bound, (latency.get(bound) ?? 0) + Math.max(0, cumulative - below));
        below = cumulative;
      }
      const over = Number(metric.histogram?.sample_count ?? 0) - below;
      if (over > 0) latency.set(Infinity, (latency.get(Infinity) ?? 0) + over);
    }
  }

  /** The window bucket's tally and the since-start total (for Prometheus counters, which must not go down). */
  private tallies2(kind: Kind, name: string, bucket: number): [Tally, Tally] {
    const key = `${kind} ${name}`;
    let total = this.totals.get(key);
    if (!total) {
      total = emptyTally();
      this.totals.set(key, total);
    }
    return [this.tally(kind, name, bucket), total];
  }

  /** Since-start totals per route or upstream that exists (for /metrics). */
  allTotals(): Array<{ kind: Kind; name: string; tally: Readonly<Tally> }> {
    this.applyKnown();
    return [...this.totals].map(([key, tally]) => {
      const [kind, name] = key.split(' ') as [Kind, string];
      return { kind, name, tally };
    });
  }

  private tally(kind: Kind, name: string, bucket: number): Tally {
    const key = `${kind} ${name}`;
    let buckets = this.tallies.get(key);
    if (!buckets) {
      buckets = new Map();
      this.tallies.set(key, buckets);
    }
    let tally = buckets.get(bucket);
    if (!tally) {
      tally = emptyTally();
      buckets.set(bucket, tally);
    }
    return tally;
  }

  private bucketStart(ms: number): number {
    return ms - (ms % this.bucketMs);
  }

  /** Drops buckets older than the window. */
  private prune(): void {
    const oldest = this.bucketStart(this.now()) - this.windowMs + this.bucketMs;
    for (const [key, buckets] of this.tallies) {
      for (const start of buckets.keys()) if (start < oldest) buckets.delete(start);
      if (buckets.size === 0) this.tallies.delete(key);
    }
  }

  private merge(key: string, sinceMs: number): Tally {
    this.applyKnown();
    const merged = emptyTally();
    const oldest = this.bucketStart(this.now()) - this.windowMs + this.bucketMs;
    for (const [start, tally] of this.tallies.get(key) ?? []) {
      if (start < sinceMs || start < oldest) continue;
      tally.status.forEach((n, i) => (merged.status[i] = merged.status[i]! + n));
      for (const [bound, n] of tally.latency) merged.latency.set(bound, (merged.latency.get(bound) ?? 0) + n);
    }
    return merged;
  }

  private read(key: string, sinceMs: number): WindowStats {
    const { status, latency } = this.merge(key, sinceMs);
    const stats: WindowStats = {
      requests: status.reduce((a, b) => a + b, 0),
      status2xx: status[1],
      status4xx: status[3],
      status5xx: status[4],
    };
    const p50 = quantile(latency, 0.5);
    if (p50 === undefined) return stats;
    return { ...stats, p50Ms: p50, p95Ms: quantile(latency, 0.95), p99Ms: quantile(latency, 0.99) };
  }
}

/**
 * The q-quantile of a bucketed distribution, interpolated linearly inside the
 * bucket it falls in (as Prometheus' histogram_quantile does); in the open top
 * bucket, its lower bound. Undefined without samples.
 */
export function quantile(latency: ReadonlyMap<number, number>, q: number): number | undefined {
  const bounds = [...latency.keys()].sort((a, b) => a - b);
  const total = bounds.reduce((n, b) => n + (latency.get(b) ?? 0), 0);
  if (total === 0) return undefined;
  const rank = q * total;
  let below = 0;
  let lower = 0;
  for (const bound of bounds) {
    const n = latency.get(bound) ?? 0;
    if (n > 0 && below + n >= rank) {
      if (!Number.isFinite(bound)) return lower;
      return lower + ((bound - lower) * (rank - below)) / n;
    }
    below += n;
    lower = bound;
  }
  return lower;
}
