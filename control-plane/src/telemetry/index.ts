// Control-plane telemetry: the Prometheus registry and the metric feeders.
export { ControlPlaneMetrics, fleetSyncedRevision, LATENCY_BUCKETS, type ControlPlaneMetricsOptions, type FleetNode, type FleetSource } from './metrics.ts';
export { PublisherMetrics } from './publisher-metrics.ts';
export { XdsMetrics, typeLabel } from './xds-metrics.ts';
export { exposeAuthz, exposeRateLimit, type AuthzCounters, type RateLimitCounters } from './service-metrics.ts';
export type { FleetStatsReader, WindowStats } from './fleet-stats.ts';
export { FleetWindow, quantile, type KnownTargets } from './fleet-window.ts';
export { exposeFleetTraffic } from './fleet-metrics.ts';
export { metricsService, type MetricsIngest, type PromFamily } from './metrics-sink.ts';
