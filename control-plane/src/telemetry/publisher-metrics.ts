// What the publisher reports: translation time, the whole publish (load State,
// translate, set the snapshot) and the newest published revision.
import { Gauge, Histogram, type Registry } from 'prom-client';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class PublisherMetrics {
  private readonly translateSeconds: Histogram;
  private readonly publishSeconds: Histogram;
  private readonly revisionGauge: Gauge;
  /** The newest published revision, -1 before the first. */
  revision = -1;

  constructor(registry: Registry) {
    const registers = [registry];
    this.translateSeconds = new Histogram({ name: 'sluice_translate_duration_seconds', help: 'Time to translate one State into Envoy resources.', buckets: BUCKETS, registers });
    this.publishSeconds = new Histogram({
      name: 'sluice_publish_duration_seconds',
      help: 'Time to publish one revision: load the State, translate, set the snapshot.',
      buckets: BUCKETS,
      registers,
    });
    this.revisionGauge = new Gauge({ name: 'sluice_config_revision', help: 'Newest config revision published to the snapshot cache (-1: none yet).', registers });
    this.revisionGauge.set(-1);
  }

  translated(ms: number): void {
    this.translateSeconds.observe(ms / 1000);
  }

  /** A revision was handed to the cache, `ms` after its load started. */
  published(revision: number, ms: number): void {
    this.publishSeconds.observe(ms / 1000);
    this.revision = Math.max(this.revision, revision);
    this.revisionGauge.set(this.revision);
  }
}
