// The control plane's Prometheus registry: one per process (tests make their
// own), holding every control-plane series. The parts of the process feed it
// through the small interfaces in xds-metrics.ts and publisher-metrics.ts;
// fleet-wide gauges are computed from a FleetSource when /metrics is scraped,
// so nothing is recomputed on every ACK.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { PublisherMetrics } from './publisher-metrics.ts';
import { XdsMetrics } from './xds-metrics.ts';

/** What the fleet gauges need of a node (structurally xds/'s NodeStatus; telemetry does not import xds/). */
export interface FleetNode {
  protocol: string;
  group: string;
  syncedRevision?: number;
  authenticated?: boolean;
  hasAcked: boolean;
}

/** The node registry as seen by metrics (xds/registry.ts NodeRegistry fits). */
export interface FleetSource {
  list(): FleetNode[];
}

/** Latency buckets in seconds: sub-millisecond to 10 s (xDS pushes, commits, translation). */
export const LATENCY_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface ControlPlaneMetricsOptions {
  /** Node registry for the stream and sync gauges; without it they stay empty. */
  fleet?: FleetSource;
  /** Process metrics (CPU, memory, event loop lag, handles); default true. */
  processMetrics?: boolean;
}

export class ControlPlaneMetrics {
  readonly registry = new Registry();
  readonly xds: XdsMetrics;
  readonly publisher: PublisherMetrics;
  readonly adminRequests: Counter<'method' | 'route' | 'status'>;
  readonly adminRequestSeconds: Histogram<'method' | 'route'>;
  readonly commitSeconds: Histogram;
  private fleet?: FleetSource;
  private readonly refreshers: Array<() => Promise<void>> = [];

  constructor(options: ControlPlaneMetricsOptions = {}) {
    const registers = [this.registry];
    this.fleet = options.fleet;
    this.xds = new XdsMetrics(this.registry);
    this.publisher = new PublisherMetrics(this.registry);
    this.adminRequests = new Counter({
      name: 'sluice_admin_requests_total',
      help: 'Admin API requests by method, route pattern and status code.',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.adminRequestSeconds = new Histogram({
      name: 'sluice_admin_request_duration_seconds',
      help: 'Admin API request latency by method and route pattern.',
      labelNames: ['method', 'route'],
      buckets: [...LATENCY_BUCKETS],
      registers,
    });
    this.commitSeconds = new Histogram({
      name: 'sluice_config_commit_duration_seconds',
      help: 'Time to commit one config change to Postgres (one transaction, revision + 1).',
      buckets: [...LATENCY_BUCKETS],
      registers,
    });
    this.fleetGauges(registers);
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Sets (or replaces) the node registry the fleet gauges read. */
  watchFleet(fleet: FleetSource): void {
    this.fleet = fleet;
  }

  /** Runs `refresh` before each render (counters kept elsewhere, e.g. on another thread, are fetched then). */
  refreshBeforeRender(refresh: () => Promise<void>): void {
    this.refreshers.push(refresh);
  }

  /** The exposition text and its content type, for GET /metrics. */
  async render(): Promise<{ contentType: string; body: string }> {
    await Promise.all(this.refreshers.map((refresh) => refresh()));
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private fleetGauges(registers: Registry[]): void {
    const nodes = (): FleetNode[] => this.fleet?.list() ?? [];
    const publisher = this.publisher;
    new Gauge({
      name: 'sluice_xds_streams',
      help: 'Connected ADS streams by protocol (sotw, delta) and node group.',
      labelNames: ['protocol', 'group'],
      registers,
      collect() {
        this.reset(); // groups that went away must not linger
        const counts = new Map<string, { protocol: string; group: string; n: number }>();
        for (const node of nodes()) {
          const key = JSON.stringify([node.protocol, node.group]);
          const entry = counts.get(key) ?? { protocol: node.protocol, group: node.group, n: 0 };
          entry.n += 1;
          counts.set(key, entry);
        }
        for (const { protocol, group, n } of counts.values()) this.set({ protocol, group }, n);
      },
    });
    new Gauge({
      name: 'sluice_xds_nodes_in_sync',
      help: 'Counted nodes holding the newest published revision in full.',
      registers,
      collect() {
        const current = publisher.revision;
        this.set(nodes().filter((n) => countsForFleet(n) && current >= 0 && n.syncedRevision === current).length);
      },
    });
    new Gauge({
      name: 'sluice_fleet_synced_revision',
      help: 'Newest revision every counted node holds in full (-1: no counted node holds any).',
      registers,
      collect() {
        this.set(fleetSyncedRevision(nodes()));
      },
    });
  }
}

/** Same rule as xds/registry.ts nodeCounts: a node that never ACKed cannot hold the fleet figure down. */
function countsForFleet(node: FleetNode): boolean {
  return node.authenticated === true || node.hasAcked;
}

/** The lowest synced revision among counted nodes; -1 when none counts or one holds nothing yet. */
export function fleetSyncedRevision(nodes: readonly FleetNode[]): number {
  const counted = nodes.filter(countsForFleet);
  if (counted.length === 0) return -1;
  let lowest = Infinity;
  for (const node of counted) lowest = Math.min(lowest, node.syncedRevision ?? -1);
  return lowest;
}
