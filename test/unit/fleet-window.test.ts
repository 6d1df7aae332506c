// The rolling window behind /v1/routes/{name}/stats: cumulative counters become
// per-node deltas (restart = reset, first flush of an old Envoy = baseline),
// interval histograms add up, unknown targets and old buckets are dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetWindow, quantile } from '../../control-plane/src/telemetry/fleet-window.ts';
import type { PromFamily } from '../../control-plane/src/telemetry/metrics-sink.ts';

function flush(uptimeS: number, ok: number, failed: number, latencyMs: Array<[number, number]> = []): PromFamily[] {
  const label = (name: string, value: string) => ({ name, value });
  let cumulative = 0;
  return [
    { name: 'server.uptime', type: 'GAUGE', metric: [{ gauge: { value: uptimeS } }] },
    {
      name: 'vhost.route.upstream_rq_xx',
      type: 'COUNTER',
      metric: [
        { label: [label('envoy.response_code_class', '2'), label('envoy.virtual_host', '*'), label('envoy.route', 'r')], counter: { value: ok } },
        { label: [label('envoy.response_code_class', '5'), label('envoy.virtual_host', '*'), label('envoy.route', 'r')], counter: { value: failed } },
        { label: [label('envoy.response_code_class', '2'), label('envoy.virtual_host', '*'), label('envoy.route', 'gone')], counter: { value: 7 } },
      ],
    },
    {
      name: 'vhost.route.upstream_rq_time',
      type: 'HISTOGRAM',
      metric: [
        {
          label: [label('envoy.route', 'r')],
          histogram: {
            sample_count: String(latencyMs.reduce((n, [, c]) => n + c, 0)),
            sample_sum: 0,
            bucket: latencyMs.map(([bound, n]) => ({ upper_bound: bound, cumulative_count: String((cumulative += n)) })),
          },
        },
      ],
    },
  ];
}

function windowAt(clock: { t: number }): FleetWindow {
  const w = new FleetWindow({ bucketMs: 10_000, windowMs: 60_000, now: () => clock.t });
  w.setKnown({ routes: ['r'], clusters: new Map() });
  return w;
}

test('a fresh Envoy counts from zero; later flushes add deltas; a drop is a restart', () => {
  const clock = { t: 1_000_000 };
  const w = windowAt(clock);
  w.ingest('a', flush(3, 5, 1));
  w.ingest('a', flush(4, 8, 1));
  w.ingest('b', flush(2, 2, 0));
  w.ingest('a', flush(1, 1, 0)); // restarted: counters start again
  assert.deepEqual(w.route('r', 0), { requests: 12, status2xx: 11, status4xx: 0, status5xx: 1 });
  assert.equal(w.route('gone', 0).requests, 0, 'routes not in the State are not kept');
});

test('an Envoy up for long (control-plane restart) takes its first flush as the baseline', () => {
  const clock = { t: 1_000_000 };
  const w = windowAt(clock);
  w.ingest('old', flush(3_600, 500, 20));
  w.ingest('old', flush(3_601, 503, 20));
  assert.equal(w.route('r', 0).requests, 3);
});

test('histograms add across flushes and nodes; quantiles interpolate inside the bucket', () => {
  const clock = { t: 1_000_000 };
  const w = windowAt(clock);
  w.ingest('a', flush(1, 0, 0, [[100, 0], [250, 60]]));
  w.ingest('b', flush(1, 0, 0, [[100, 40], [250, 0]]));
  const latency = w.latency('route', 'r', 0);
  assert.deepEqual([...latency].sort((x, y) => x[0] - y[0]), [[100, 40], [250, 60]]);
  assert.equal(quantile(latency, 0.5), 100 + (150 * 10) / 60);
  assert.equal(quantile(new Map([[1, 0]]), 0.5), undefined);
});

test('buckets leave the window and sinceMs selects buckets at or after it', () => {
  const clock = { t: 1_000_000 };
  const w = windowAt(clock);
  w.ingest('a', flush(1, 4, 0));
  clock.t += 30_000;
  w.ingest('a', flush(2, 6, 0));
  assert.equal(w.route('r', 0).requests, 6);
  assert.equal(w.route('r', 1_030_000).requests, 2);
  clock.t += 60_000;
  w.ingest('a', flush(3, 6, 0));
  assert.equal(w.route('r', 0).requests, 0, 'everything is older than the window');
});

test('a node past its series cap gets no new series', () => {
  const clock = { t: 1_000_000 };
  const w = new FleetWindow({ maxSeriesPerNode: 1, now: () => clock.t });
  w.setKnown({ routes: ['r'], clusters: new Map() });
  w.ingest('a', flush(1, 5, 3));
  assert.deepEqual(w.route('r', 0), { requests: 5, status2xx: 5, status4xx: 0, status5xx: 0 });
});

test('a route the State no longer has loses its stats; of several revisions in a row, the last one counts', () => {
  const clock = { t: 1_000_000 };
  const w = windowAt(clock);
  w.ingest('a', flush(1, 5, 0));
  assert.equal(w.route('r', 0).requests, 5);
  // A burst of revisions: 'r' goes, comes back, goes again. Only the last is in force.
  w.setKnown({ routes: [], clusters: new Map() });
  w.setKnown({ routes: ['r'], clusters: new Map() });
  w.setKnown({ routes: ['other'], clusters: new Map() });
  assert.equal(w.route('r', 0).requests, 0);
  assert.equal(w.exists('route', 'r'), false);
  assert.deepEqual(w.names('route'), []);
  assert.deepEqual(w.allTotals(), []);
  assert.equal(w.exists('route', 'other'), true);
});
