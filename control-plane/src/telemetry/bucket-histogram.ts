// A Prometheus histogram whose buckets are counted elsewhere (the authz and
// rate-limit services' plain counters, the fleet's merged Envoy histograms) and
// read when /metrics is scraped. prom-client's Histogram only counts its own
// observe() calls, so this one overrides get() to report a snapshot instead.
import { Histogram, type Registry } from 'prom-client';

/** One labelled series: counts per bucket (not cumulative), the last one above every bound. */
export interface BucketSeries {
  labels: Record<string, string>;
  counts: readonly number[];
  sum: number;
}

export interface BucketHistogramConfig {
  name: string;
  help: string;
  labelNames: readonly string[];
  /** Upper bounds, ascending, in the unit the series' sum is in; +Inf is implied. */
  bounds: readonly number[];
  registry: Registry;
  read: () => readonly BucketSeries[];
}

type HistogramValues = Awaited<ReturnType<Histogram<string>['get']>>;

export class BucketHistogram extends Histogram<string> {
  private readonly family: string;
  private readonly bounds: readonly number[];
  private readonly read: () => readonly BucketSeries[];

  constructor(config: BucketHistogramConfig) {
    super({ name: config.name, help: config.help, labelNames: [...config.labelNames], buckets: [...config.bounds], registers: [config.registry] });
    this.family = config.name;
    this.bounds = config.bounds;
    this.read = config.read;
  }

  override async get(): Promise<HistogramValues> {
    const base = await super.get();
    const values: HistogramValues['values'] = [];
    for (const series of this.read()) {
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += series.counts[i] ?? 0;
        values.push({ metricName: `${this.family}_bucket`, labels: { ...series.labels, le: bound }, value: cumulative });
      });
      const total = series.counts.reduce((a, b) => a + b, 0);
      values.push({ metricName: `${this.family}_bucket`, labels: { ...series.labels, le: '+Inf' }, value: total });
      values.push({ metricName: `${this.family}_sum`, labels: series.labels, value: series.sum });
      values.push({ metricName: `${this.family}_count`, labels: series.labels, value: total });
    }
    return { ...base, values };
  }
}
