// xDS counters and the push-to-ACK histogram. The ADS server calls these from
// its streams (xds/ does not import telemetry/: the server is handed an object
// with these methods, go-control-plane's callbacks shape). Every label is from
// a bounded set: the four resource types (anything else is "other").
import { Counter, Histogram, type Registry } from 'prom-client';

const TYPE_PREFIX = 'type.googleapis.com/';
/** Resource type URL -> label. */
const TYPE_LABELS: ReadonlyMap<string, string> = new Map([
  [`${TYPE_PREFIX}envoy.config.cluster.v3.Cluster`, 'cluster'],
  [`${TYPE_PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`, 'endpoint'],
  [`${TYPE_PREFIX}envoy.config.listener.v3.Listener`, 'listener'],
  [`${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`, 'route'],
]);

export function typeLabel(typeUrl: string): string {
  return TYPE_LABELS.get(typeUrl) ?? 'other';
}

/** Push times awaiting an answer, at most this many (a safety bound; one per stream and type in practice). */
const MAX_PENDING = 100_000;

/** Push-to-ACK buckets in seconds: Envoy applies a config in ms, a big one or a busy Envoy in seconds. */
const ACK_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class XdsMetrics {
  private readonly pushedTotal: Counter<'type'>;
  private readonly acksTotal: Counter<'type'>;
  private readonly nacksTotal: Counter<'type'>;
  private readonly ackSeconds: Histogram<'type'>;
  /** `${streamId} ${typeUrl}` -> when the response now in flight was sent (performance.now()). */
  private readonly sentAt = new Map<string, number>();

  constructor(registry: Registry, private readonly now: () => number = () => performance.now()) {
    const registers = [registry];
    this.pushedTotal = new Counter({ name: 'sluice_xds_responses_pushed_total', help: 'xDS responses sent, by resource type.', labelNames: ['type'], registers });
    this.acksTotal = new Counter({ name: 'sluice_xds_acks_total', help: 'xDS responses Envoy accepted, by resource type.', labelNames: ['type'], registers });
    this.nacksTotal = new Counter({ name: 'sluice_xds_nacks_total', help: 'xDS responses Envoy rejected, by resource type.', labelNames: ['type'], registers });
    this.ackSeconds = new Histogram({
      name: 'sluice_xds_push_to_ack_seconds',
      help: 'Time from sending an xDS response to its ACK, by resource type.',
      labelNames: ['type'],
      buckets: ACK_BUCKETS,
      registers,
    });
    for (const label of [...TYPE_LABELS.values()]) {
      // Zero series from the start: a scraper sees "no NACKs", not "no data".
      for (const counter of [this.pushedTotal, this.acksTotal, this.nacksTotal]) counter.inc({ type: label }, 0);
    }
  }

  /** A response of `typeUrl` went out on stream `streamId`. */
  pushed(streamId: number, typeUrl: string): void {
    this.pushedTotal.inc({ type: typeLabel(typeUrl) });
    const key = `${streamId} ${typeUrl}`;
    if (this.sentAt.size < MAX_PENDING || this.sentAt.has(key)) this.sentAt.set(key, this.now());
  }

  /** Envoy ACKed the response in flight for `typeUrl` on `streamId`. */
  acked(streamId: number, typeUrl: string): void {
    const label = typeLabel(typeUrl);
    this.acksTotal.inc({ type: label });
    const key = `${streamId} ${typeUrl}`;
    const sent = this.sentAt.get(key);
    this.sentAt.delete(key);
    if (sent !== undefined) this.ackSeconds.observe({ type: label }, (this.now() - sent) / 1000);
  }

  /** Envoy NACKed the response in flight for `typeUrl` on `streamId`. */
  nacked(streamId: number, typeUrl: string): void {
    this.nacksTotal.inc({ type: typeLabel(typeUrl) });
    this.sentAt.delete(`${streamId} ${typeUrl}`);
  }

  /** The stream ended: forget its pending pushes. */
  streamClosed(streamId: number): void {
    const prefix = `${streamId} `;
    for (const key of this.sentAt.keys()) if (key.startsWith(prefix)) this.sentAt.delete(key);
  }

  /** Pushes awaiting an answer (tests check nothing is left behind). */
  get pending(): number {
    return this.sentAt.size;
  }
}
