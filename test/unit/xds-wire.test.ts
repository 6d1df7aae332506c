// The ADS responses' own encoder against protobufjs on generated messages: the
// same bytes as protobufjs writes from the same object, and protobufjs decodes
// them back to that object.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { messageType } from '../../control-plane/src/proto/envoy.ts';
import { DECODE_OPTIONS } from '../../control-plane/src/proto/codec.ts';
import { encodeDeltaResponse, encodeSotwResponse, type DeltaResponse, type SotwResponse } from '../../control-plane/src/xds/wire.ts';

function protobufjs(name: string, message: object): Buffer {
  const type = messageType(name);
  return Buffer.from(type.encode(type.fromObject(message as Record<string, unknown>)).finish());
}

function decoded(name: string, bytes: Buffer): unknown {
  const type = messageType(name);
  return type.toObject(type.decode(bytes), { ...DECODE_OPTIONS, defaults: true, arrays: true });
}

// Unicode strings and values across the varint length boundaries (127/128, 16383/16384 bytes).
const text = fc.string({ unit: 'binary', maxLength: 40 });
const value = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 16_370, max: 16_400 }).map((n) => new Uint8Array(n).fill(7)));
const any = fc.record({ type_url: text, value });

const sotw: fc.Arbitrary<SotwResponse> = fc.record({ version_info: text, resources: fc.array(any, { maxLength: 5 }), type_url: text, nonce: text });
const delta: fc.Arbitrary<DeltaResponse> = fc.record({
  system_version_info: text,
  resources: fc.array(fc.record({ name: text, version: text, resource: any }), { maxLength: 5 }),
  type_url: text,
  removed_resources: fc.array(text, { maxLength: 4 }),
  nonce: text,
});

describe('xds wire: response encoder', () => {
  it('DiscoveryResponse: the bytes protobufjs writes, and they decode back', () => {
    // 300 generated messages; a wrong byte is deterministic, not statistical.
    fc.assert(
      fc.property(sotw, (message) => {
        const ours = encodeSotwResponse(message);
        assert.deepEqual(ours, protobufjs('envoy.service.discovery.v3.DiscoveryResponse', message));
        const back = decoded('envoy.service.discovery.v3.DiscoveryResponse', ours) as SotwResponse;
        assert.equal(back.version_info, message.version_info);
        assert.equal(back.nonce, message.nonce);
        assert.deepEqual(back.resources.map((r) => [r.type_url, Buffer.from(r.value)]), message.resources.map((r) => [r.type_url, Buffer.from(r.value)]));
      }),
      { numRuns: 300 },
    );
  });

  it('DeltaDiscoveryResponse: the bytes protobufjs writes, and they decode back', () => {
    fc.assert(
      fc.property(delta, (message) => {
        const ours = encodeDeltaResponse(message);
        assert.deepEqual(ours, protobufjs('envoy.service.discovery.v3.DeltaDiscoveryResponse', message));
        const back = decoded('envoy.service.discovery.v3.DeltaDiscoveryResponse', ours) as DeltaResponse;
        assert.deepEqual(back.removed_resources, message.removed_resources);
        assert.deepEqual(back.resources.map((r) => [r.name, r.version, r.resource.type_url, Buffer.from(r.resource.value)]),
          message.resources.map((r) => [r.name, r.version, r.resource.type_url, Buffer.from(r.resource.value)]));
      }),
      { numRuns: 300 },
    );
  });
});
