// Control-plane metrics (issue 11 item 1): the xDS counters and push-to-ACK
// histogram, the publisher's timings and revision, and the fleet gauges read from
// a real NodeRegistry at scrape time. Values are read from prom-client's JSON
// form of the registry, not by matching the exposition text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { metricsArePublic } from '../../control-plane/src/admin/metrics.ts';
import { loadConfig } from '../../control-plane/src/config/env.ts';
import { ControlPlaneMetrics, fleetSyncedRevision } from '../../control-plane/src/telemetry/index.ts';
import { NodeRegistry } from '../../control-plane/src/xds/registry.ts';
import { TYPE } from '../../control-plane/src/xds/resources.ts';

type Series = MetricObjectWithValues<MetricValue<string>>;

async function scrape(metrics: ControlPlaneMetrics): Promise<Map<string, Series>> {
  const all = (await metrics.registry.getMetricsAsJSON()) as Series[];
  return new Map(all.map((m) => [m.name, m]));
}

function value(series: Series | undefined, labels: Record<string, string | number> = {}, metricName?: string): number | undefined {
  const hit = series?.values.find(
    (v) =>
      (metricName === undefined || (v as { metricName?: string }).metricName === metricName) &&
      Object.entries(labels).every(([k, want]) => String(v.labels[k]) === String(want)),
  );
  return hit?.value;
}

test('pushes, ACKs and NACKs are counted by type, and a push-to-ACK time is observed per ACK', async () => {
  const metrics = new ControlPlaneMetrics({ processMetrics: false });
  metrics.xds.pushed(1, TYPE.cluster);
  metrics.xds.pushed(1, TYPE.listener);
  metrics.xds.acked(1, TYPE.cluster);
  metrics.xds.nacked(1, TYPE.listener);
  metrics.xds.pushed(2, 'type.googleapis.com/some.Unknown');
  const s = await scrape(metrics);
  assert.equal(value(s.get('sluice_xds_responses_pushed_total'), { type: 'cluster' }), 1);
  assert.equal(value(s.get('sluice_xds_responses_pushed_total'), { type: 'listener' }), 1);
  assert.equal(value(s.get('sluice_xds_responses_pushed_total'), { type: 'other' }), 1, 'unknown types share one label');
  assert.equal(value(s.get('sluice_xds_acks_total'), { type: 'cluster' }), 1);
  assert.equal(value(s.get('sluice_xds_nacks_total'), { type: 'listener' }), 1);
  assert.equal(value(s.get('sluice_xds_nacks_total'), { type: 'route' }), 0, 'zero series exist before the first NACK');
  assert.equal(value(s.get('sluice_xds_push_to_ack_seconds'), { type: 'cluster' }, 'sluice_xds_push_to_ack_seconds_count'), 1);
  assert.equal(value(s.get('sluice_xds_push_to_ack_seconds'), { type: 'listener' }, 'sluice_xds_push_to_ack_seconds_count'), undefined, 'a NACK is not an ACK time');
  metrics.xds.streamClosed(2);
  assert.equal(metrics.xds.pending, 0, 'nothing is kept for answered pushes or closed streams');
});

test('fleet gauges come from the node registry at scrape time', async () => {
  const registry = new NodeRegistry();
  const metrics = new ControlPlaneMetrics({ fleet: registry, processMetrics: false });
  registry.connect({ streamId: 1, nodeId: 'a', group: 'edge', protocol: 'sotw', connectedAt: new Date(0).toISOString() });
  registry.connect({ streamId: 2, nodeId: 'b', group: 'edge', protocol: 'delta', connectedAt: new Date(0).toISOString() });
  registry.connect({ streamId: 3, nodeId: 'c', group: 'internal', protocol: 'delta', connectedAt: new Date(0).toISOString() });
  registry.recordSynced(1, 7);
  registry.recordSynced(2, 6);
  metrics.publisher.published(7, 3);
  metrics.publisher.translated(1);
  let s = await scrape(metrics);
  assert.equal(value(s.get('sluice_xds_streams'), { protocol: 'sotw', group: 'edge' }), 1);
  assert.equal(value(s.get('sluice_xds_streams'), { protocol: 'delta', group: 'edge' }), 1);
  assert.equal(value(s.get('sluice_xds_streams'), { protocol: 'delta', group: 'internal' }), 1);
  assert.equal(value(s.get('sluice_config_revision')), 7);
  assert.equal(value(s.get('sluice_xds_nodes_in_sync')), 1, 'only a holds revision 7');
  assert.equal(value(s.get('sluice_fleet_synced_revision')), 6, 'c never ACKed, so it does not hold the figure down');
  assert.equal(value(s.get('sluice_translate_duration_seconds'), {}, 'sluice_translate_duration_seconds_count'), 1);
  assert.equal(value(s.get('sluice_publish_duration_seconds'), {}, 'sluice_publish_duration_seconds_count'), 1);

  registry.disconnect(3);
  s = await scrape(metrics);
  assert.equal(value(s.get('sluice_xds_streams'), { protocol: 'delta', group: 'internal' }), undefined, 'a group with no streams leaves no series');
});

test('fleetSyncedRevision: the lowest revision among counted nodes', () => {
  assert.equal(fleetSyncedRevision([]), -1);
  assert.equal(fleetSyncedRevision([{ protocol: 'sotw', group: 'g', hasAcked: true }]), -1, 'a counted node holding nothing yet');
  assert.equal(
    fleetSyncedRevision([
      { protocol: 'sotw', group: 'g', hasAcked: true, syncedRevision: 4 },
      { protocol: 'sotw', group: 'g', hasAcked: true, syncedRevision: 9 },
      { protocol: 'sotw', group: 'g', hasAcked: false },
    ]),
    4,
  );
});

test('process metrics are on by default', async () => {
  const s = await scrape(new ControlPlaneMetrics());
  assert.ok(s.has('process_cpu_user_seconds_total'));
  assert.ok(s.has('nodejs_eventloop_lag_seconds'));
});

test('/metrics is public on loopback or by METRICS_PUBLIC, else it needs a token', () => {
  assert.equal(metricsArePublic('127.0.0.1', false), true);
  assert.equal(metricsArePublic('::1', false), true);
  assert.equal(metricsArePublic('localhost', false), true);
  assert.equal(metricsArePublic('0.0.0.0', false), false);
  assert.equal(metricsArePublic('10.1.2.3', false), false);
  assert.equal(metricsArePublic('0.0.0.0', true), true);
});

test('observability settings: access log path, OTLP collector, sampling, METRICS_PUBLIC', () => {
  const defaults = loadConfig({});
  assert.deepEqual(defaults.gatewayAccessLog, { to: 'stdout' });
  assert.equal(defaults.otlpCollector, undefined, 'span export is off by default');
  assert.equal(defaults.metricsPublic, false);
  const set = loadConfig({ GATEWAY_ACCESS_LOG_PATH: '/var/log/sluice/access.log', GATEWAY_OTLP_ADDRESS: '[::1]:4317', GATEWAY_TRACE_SAMPLING_PERCENT: '5', METRICS_PUBLIC: 'true' });
  assert.deepEqual(set.gatewayAccessLog, { to: 'file', path: '/var/log/sluice/access.log' });
  assert.deepEqual(set.otlpCollector, { host: '::1', port: 4317 });
  assert.equal(set.traceSamplingPercent, 5);
  assert.equal(set.metricsPublic, true);
  assert.equal(loadConfig({ GATEWAY_ACCESS_LOG_PATH: 'off' }).gatewayAccessLog, undefined);
  assert.throws(() => loadConfig({ GATEWAY_ACCESS_LOG_PATH: 'relative.log' }), /GATEWAY_ACCESS_LOG_PATH/);
  assert.throws(() => loadConfig({ GATEWAY_OTLP_ADDRESS: 'collector' }), /GATEWAY_OTLP_ADDRESS/);
  assert.throws(() => loadConfig({ METRICS_PUBLIC: 'yes' }), /METRICS_PUBLIC/);
});
