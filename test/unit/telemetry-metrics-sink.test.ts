// The metrics sink decodes only the families the fleet window reads. On
// generated StreamMetricsMessages (encoded by protobufjs from the same protos
// Envoy's messages come from), the lean decode equals the full decode with the
// other families filtered out, and equals it outright without a filter.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DECODE_OPTIONS } from '../../control-plane/src/proto/codec.ts';
import { messageType } from '../../control-plane/src/proto/envoy.ts';
import { decodeMetricsMessage, type StreamMetricsMessage } from '../../control-plane/src/telemetry/metrics-sink.ts';
import { FleetWindow } from '../../control-plane/src/telemetry/fleet-window.ts';

const MESSAGE = messageType('envoy.service.metrics.v3.StreamMetricsMessage');
const WANTED = new FleetWindow().families;
const NAMES = [...WANTED, 'cluster.upstream_cx_total', 'http.downstream_rq_total', 'server.memory_allocated', 'vhost.route.upstream_rq_completed'];

const label = fc.record({ name: fc.constantFrom('envoy.route', 'envoy.cluster_name', 'envoy.response_code_class'), value: fc.string({ maxLength: 12 }) });
const metric = fc.oneof(
  fc.record({ label: fc.array(label, { maxLength: 3 }), counter: fc.record({ value: fc.nat(1e6) }) }),
  fc.record({ label: fc.array(label, { maxLength: 3 }), gauge: fc.record({ value: fc.nat(1e6) }) }),
  fc.record({
    label: fc.array(label, { maxLength: 3 }),
    histogram: fc.record({
      sample_count: fc.nat(1e6).map(String),
      sample_sum: fc.double({ min: 0, max: 1e6, noNaN: true }),
      bucket: fc.array(fc.record({ cumulative_count: fc.nat(1e6).map(String), upper_bound: fc.double({ min: 0, max: 1e6, noNaN: true }) }), { maxLength: 4 }),
    }),
  }),
);
const family = fc.record({ name: fc.constantFrom(...NAMES), type: fc.constantFrom('COUNTER', 'GAUGE', 'HISTOGRAM'), metric: fc.array(metric, { maxLength: 4 }) });
const message = fc.record(
  {
    identifier: fc.record({ node: fc.record({ id: fc.string({ minLength: 1, maxLength: 12 }), cluster: fc.string({ maxLength: 8 }) }) }),
    envoy_metrics: fc.array(family, { maxLength: 12 }),
  },
  { requiredKeys: ['envoy_metrics'] },
);

const encode = (m: object) => MESSAGE.encode(MESSAGE.fromObject(m)).finish();
const full = (bytes: Uint8Array) => MESSAGE.toObject(MESSAGE.decode(bytes), DECODE_OPTIONS) as StreamMetricsMessage;
/** The two decoders differ only in whether an empty family list is written out. */
const families = (m: StreamMetricsMessage) => m.envoy_metrics ?? [];

test('lean metrics decode = full decode, filtered to the families the window reads (generated messages)', () => {
  fc.assert(
    fc.property(message, (input) => {
      const bytes = encode(input);
      const reference = full(bytes);
      const lean = decodeMetricsMessage(bytes, WANTED);
      assert.deepEqual(lean.identifier, reference.identifier);
      assert.deepEqual(families(lean), families(reference).filter((f) => WANTED.has(f.name ?? '')));
      assert.deepEqual(families(decodeMetricsMessage(bytes)), families(reference), 'no filter: everything');
      // A flush whose families were all skipped still reaches the window (it counts flushes).
      if (input.envoy_metrics.length > 0) assert.ok(lean.envoy_metrics !== undefined);
    }),
    { numRuns: 500, seed: 20261124 },
  );
});

test('malformed bytes are refused, as by the full decoder', () => {
  const bytes = encode({ envoy_metrics: [{ name: 'server.uptime', type: 'GAUGE', metric: [{ gauge: { value: 3 } }] }] });
  assert.throws(() => decodeMetricsMessage(bytes.subarray(0, bytes.length - 2), WANTED));
});
