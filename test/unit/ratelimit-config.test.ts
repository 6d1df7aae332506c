// Rate-limit config resources (RateLimitConfig, Sluice's own proto): the descriptor
// tree compiled from the State, its encoding, and how the xDS stream bookkeeping
// treats the type (independent of Envoy's make-before-break, wildcard, and
// judged alone for a client that asks only for it).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseState, type State } from '../../control-plane/src/model/index.ts';
import { decode } from '../../control-plane/src/proto/codec.ts';
import { translate } from '../../control-plane/src/translate/index.ts';
import { rateLimitConfigs } from '../../control-plane/src/translate/ratelimit-config.ts';
import { TYPE, WILDCARD_TYPES, type TypeUrl, type XdsResource } from '../../control-plane/src/xds/resources.ts';
import { makeSnapshot } from '../../control-plane/src/xds/snapshot.ts';
import { StreamState } from '../../control-plane/src/xds/stream-state.ts';
import { subscription } from '../../control-plane/src/xds/sotw.ts';

function stateOf(policies: unknown[]): State {
  const parsed = parseState({ revision: 1, rate_limit_policies: policies });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  return parsed.value;
}

describe('rateLimitConfigs', () => {
  it('one config named after the domain; per policy a sluice_policy node, then one key-only node per key part, the limit on the last', () => {
    const state = stateOf([
      { name: 'per-route', key: ['route'], limit: { requests: 100, per: 'minute' } },
      { name: 'combo', key: ['consumer', 'route', 'client_ip'], limit: { requests: 10, per: 'second' }, burst: 5, algorithm: 'fixed_window' },
    ]);
    const perMinute = { unit: 'MINUTE', requests_per_unit: 100 };
    assert.deepEqual(rateLimitConfigs(state, 'edge'), [{
      name: 'edge',
      domain: 'edge',
      descriptors: [
        {
          key: 'sluice_policy', value: 'combo',
          descriptors: [{ key: 'consumer', descriptors: [{ key: 'route', descriptors: [{ key: 'remote_address', rate_limit: { unit: 'SECOND', requests_per_unit: 15 } }] }] }],
        },
        { key: 'sluice_policy', value: 'per-route', descriptors: [{ key: 'route', rate_limit: perMinute }] },
      ],
    }]);
  });

  it('a header part may be absent from a descriptor (skip_if_absent): the tree has the branch that skips it and a limit where the descriptor can end', () => {
    const state = stateOf([{ name: 'h', key: [{ header: 'x-a' }, 'route', { header: 'x-b' }], limit: { requests: 3, per: 'day' } }]);
    const limit = { unit: 'DAY', requests_per_unit: 3 };
    const tail = [{ key: 'header:x-b', rate_limit: limit }];
    assert.deepEqual(rateLimitConfigs(state, 'sluice')[0]!.descriptors, [{
      key: 'sluice_policy', value: 'h',
      descriptors: [
        { key: 'header:x-a', descriptors: [{ key: 'route', rate_limit: limit, descriptors: tail }] },
        { key: 'route', rate_limit: limit, descriptors: tail },
      ],
    }]);
    // A policy keyed only by a header also limits requests without it (the descriptor is just the policy entry).
    const only = stateOf([{ name: 'o', key: [{ header: 'x-a' }], limit: { requests: 1, per: 'hour' } }]);
    assert.deepEqual(rateLimitConfigs(only, 'sluice')[0]!.descriptors, [{
      key: 'sluice_policy', value: 'o', rate_limit: { unit: 'HOUR', requests_per_unit: 1 },
      descriptors: [{ key: 'header:x-a', rate_limit: { unit: 'HOUR', requests_per_unit: 1 } }],
    }]);
  });

  it('translate() emits it as one encoded resource when a rate-limit service is configured, none otherwise', () => {
    const state = stateOf([{ name: 'p', key: ['client_ip'], limit: { requests: 7, per: 'second' } }]);
    const ratelimit = { clusterName: 'rl', host: '127.0.0.1', port: 1, domain: 'sluice' };
    const [config, ...more] = translate(state, { listenerPort: 1, ratelimit }).ratelimitConfigs;
    assert.equal(more.length, 0);
    assert.equal(config!.typeUrl, TYPE.rateLimitConfig);
    assert.equal(config!.name, 'sluice');
    assert.deepEqual(decode('ratelimit.config.ratelimit.v3.RateLimitConfig', config!.value), {
      name: 'sluice',
      domain: 'sluice',
      descriptors: [{ key: 'sluice_policy', value: 'p', descriptors: [{ key: 'remote_address', rate_limit: { unit: 'SECOND', requests_per_unit: 7 } }] }],
    });
    assert.deepEqual(translate(state, { listenerPort: 1 }).ratelimitConfigs, []);
  });
});

describe('xDS bookkeeping for the rate-limit config type', () => {
  const res = (typeUrl: TypeUrl, name: string, version: string): XdsResource => ({ typeUrl, name, version, value: new Uint8Array() });
  const snapshot = (rlVersion: string) => makeSnapshot(1, [
    res(TYPE.cluster, 'a', 'c1'),
    res(TYPE.endpoint, 'a', 'e1'),
    res(TYPE.listener, 'http', 'l1'),
    res(TYPE.route, 'routes', 'r1'),
    res(TYPE.rateLimitConfig, 'sluice', rlVersion),
  ]);

  it('an empty first request subscribes to every config (wildcard, as envoyproxy/ratelimit asks)', () => {
    assert.ok(WILDCARD_TYPES.has(TYPE.rateLimitConfig));
    assert.equal(subscription(TYPE.rateLimitConfig, [], undefined, true), undefined);
  });

  it('a client asking only for it gets it at once (no cluster gate) and is in sync on it alone', () => {
    const stream = new StreamState();
    stream.state(TYPE.rateLimitConfig).requested = true;
    const snap = snapshot('v1');
    const push = stream.nextPush(snap);
    assert.equal(push?.type, TYPE.rateLimitConfig);
    assert.deepEqual([...push!.set.keys()], ['sluice']);
    assert.equal(stream.isSynced(snap), false);
    const state = stream.state(TYPE.rateLimitConfig);
    state.inFlight = { nonce: 'n1', set: push!.set, snapshot: snap };
    state.answered = true;
    assert.equal(stream.settle(TYPE.rateLimitConfig, 'n1', false).kind, 'ack');
    assert.equal(stream.isSynced(snap), true);
    assert.equal(stream.nextPush(snap), undefined);
    // A new config version is pushed again.
    assert.equal(stream.nextPush(snapshot('v2'))?.type, TYPE.rateLimitConfig);
  });

  it('an Envoy (never asking for it) syncs without it, and is never sent it', () => {
    const stream = new StreamState();
    stream.state(TYPE.cluster).requested = true;
    stream.state(TYPE.listener).requested = true;
    const snap = snapshot('v1');
    const sent: string[] = [];
    let nonce = 0;
    for (let push = stream.nextPush(snap); push; push = stream.nextPush(snap)) {
      sent.push(push.type);
      const state = stream.state(push.type);
      state.inFlight = { nonce: String(++nonce), set: push.set, snapshot: snap };
      state.answered = true;
      stream.settle(push.type, String(nonce), false);
      if (push.type === TYPE.cluster) Object.assign(stream.state(TYPE.endpoint), { requested: true, names: new Set(['a']) });
      if (push.type === TYPE.listener) Object.assign(stream.state(TYPE.route), { requested: true, names: new Set(['routes']) });
    }
    assert.deepEqual(sent, [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route]);
    assert.equal(stream.isSynced(snap), true);
    assert.equal(stream.isSynced(snapshot('v2')), true, 'a rate-limit config change alone leaves an Envoy in sync');
  });
});
