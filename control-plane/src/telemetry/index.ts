// Control-plane telemetry: the Prometheus registry and the metric feeders.
export { ControlPlaneMetrics, fleetSyncedRevision, LATENCY_BUCKETS, type ControlPlaneMetricsOptions, type FleetNode, type FleetSource } from './metrics.ts';
export { PublisherMetrics } from './publisher-metrics.ts';
export { XdsMetrics, typeLabel } from './xds-metrics.ts';
