// Rate-limit policies in the model and the filter chain: on_error and the two
// ratelimit filters it selects per route, gateway-scoped policies and route
// opt-outs, and the configurable Envoy deadline.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { StateSchema, parseState, routePolicies, validateState, type State } from '../../control-plane/src/model/index.ts';
import { unpackAny, type HttpConnectionManager } from '../../control-plane/src/proto/codec.ts';
import type { Listener__Output } from '../../control-plane/src/proto/generated/envoy/config/listener/v3/Listener.ts';
import type { RouteConfiguration__Output } from '../../control-plane/src/proto/generated/envoy/config/route/v3/RouteConfiguration.ts';
import type { Route__Output } from '../../control-plane/src/proto/generated/envoy/config/route/v3/Route.ts';
import type { RateLimit__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/http/ratelimit/v3/RateLimit.ts';
import { translate, type TranslateOptions } from '../../control-plane/src/translate/index.ts';

const OPTIONS: TranslateOptions = {
  listenerPort: 10000,
  ratelimit: { clusterName: 'sluice_ratelimit', host: '127.0.0.1', port: 9192, domain: 'sluice' },
};

const FAIL_CLOSED = 'sluice.filters.http.ratelimit_fail_closed';
const RATELIMIT = 'envoy.filters.http.ratelimit';

function forward(name: string, prefix: string, extra: Record<string, unknown> = {}) {
  return { name, match: { path: { prefix } }, action: { upstream: 'up' }, ...extra };
}

function stateOf(policies: unknown[], routes: unknown[]): State {
  const parsed = parseState({ revision: 1, upstreams: [{ name: 'up', endpoints: [{ host: '10.0.0.1', port: 80 }] }], rate_limit_policies: policies, routes });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  return parsed.value;
}

function issuesOf(policies: unknown[], routes: unknown[]) {
  const parsed = StateSchema.safeParse({ revision: 1, upstreams: [{ name: 'up', endpoints: [{ host: '10.0.0.1', port: 80 }] }], rate_limit_policies: policies, routes });
  assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
  return validateState(parsed.data).map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
}

function filters(state: State, options = OPTIONS) {
  const listener = unpackAny({ type_url: 'type.googleapis.com/envoy.config.listener.v3.Listener', value: translate(state, options).listeners[0]!.value }) as unknown as Listener__Output;
  const hcm = unpackAny(listener.filter_chains[0]!.filters[0]!.typed_config!) as unknown as HttpConnectionManager;
  return (hcm.http_filters ?? []) as Array<{ name: string; disabled?: boolean; typed_config: { type_url: string; value: Uint8Array } }>;
}

function routesOf(state: State, options = OPTIONS): Route__Output[] {
  const config = unpackAny({ type_url: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', value: translate(state, options).routes[0]!.value }) as unknown as RouteConfiguration__Output;
  return config.virtual_hosts.flatMap((vh) => vh.routes);
}

function route(state: State, name: string): Route__Output {
  const found = routesOf(state).find((r) => r.name.startsWith(name));
  assert.ok(found, `route ${name}`);
  return found;
}

function perFilter(r: Route__Output): Record<string, { type_url: string; value: Uint8Array }> {
  return (r.typed_per_filter_config ?? {}) as Record<string, { type_url: string; value: Uint8Array }>;
}

function millis(d: { seconds?: string | number; nanos?: number } | null | undefined): number {
  return Number(d?.seconds ?? 0) * 1000 + (d?.nanos ?? 0) / 1e6;
}

/** The sluice_policy values of a route's descriptors, in order. */
function policyNames(r: Route__Output): string[] {
  return (r.route?.rate_limits ?? []).map((limit) => limit.actions[0]!.generic_key!.descriptor_value);
}

const IP = { name: 'ip', key: ['client_ip'], limit: { requests: 5, per: 'second' } };

describe('model', () => {
  it('defaults a policy to on_error allow and scope route, and a route to no opt-outs', () => {
    const state = stateOf([IP], [forward('r', '/', { rate_limits: ['ip'] })]);
    assert.equal(state.rate_limit_policies[0]!.on_error, 'allow');
    assert.equal(state.rate_limit_policies[0]!.scope, 'route');
    assert.deepEqual(state.routes[0]!.rate_limit_opt_out, []);
  });

  it('refuses an unknown on_error or scope, naming the field', () => {
    for (const [field, value] of [['on_error', 'retry'], ['scope', 'global']] as const) {
      const parsed = StateSchema.safeParse({ revision: 1, rate_limit_policies: [{ ...IP, [field]: value }] });
      assert.equal(parsed.success, false);
      assert.deepEqual(parsed.error!.issues[0]!.path, ['rate_limit_policies', 0, field]);
    }
  });

  it('refuses opting out of an unknown policy, of a route-scoped one, or of one the route also lists', () => {
    const gw = { ...IP, name: 'gw', scope: 'gateway' };
    assert.deepEqual(issuesOf([IP, gw], [
      forward('a', '/a', { rate_limit_opt_out: ['nope'] }),
      forward('b', '/b', { rate_limit_opt_out: ['ip'] }),
      forward('c', '/c', { rate_limits: ['gw'], rate_limit_opt_out: ['gw'] }),
      forward('d', '/d', { rate_limit_opt_out: ['gw'] }),
    ]), [
      { path: 'routes.0.rate_limit_opt_out.0', message: "unknown rate-limit policy 'nope'" },
      { path: 'routes.1.rate_limit_opt_out.0', message: "rate-limit policy 'ip' is not gateway-scoped; only gateway policies can be opted out of" },
      { path: 'routes.2.rate_limit_opt_out.0', message: "rate-limit policy 'gw' is both listed in rate_limits and opted out of" },
    ]);
  });

  it('routePolicies: the route\'s own list, then gateway policies by name, each once, minus opt-outs', () => {
    const state = stateOf(
      [IP, { ...IP, name: 'gw-b', scope: 'gateway' }, { ...IP, name: 'gw-a', scope: 'gateway' }, { ...IP, name: 'gw-c', scope: 'gateway' }],
      [forward('r', '/', { rate_limits: ['gw-c', 'ip'], rate_limit_opt_out: ['gw-b'] })],
    );
    const policies = new Map(state.rate_limit_policies.map((p) => [p.name, p]));
    assert.deepEqual(routePolicies(state.routes[0]!, policies).map((p) => p.name), ['gw-c', 'ip', 'gw-a']);
  });
});

describe('translation', () => {
  it('gives every forwarding route the gateway policies it did not opt out of; direct responses get none', () => {
    const state = stateOf(
      [IP, { ...IP, name: 'everyone', key: ['route', 'client_ip'], scope: 'gateway' }],
      [
        forward('plain', '/plain'),
        forward('own', '/own', { rate_limits: ['ip'] }),
        forward('free', '/free', { rate_limit_opt_out: ['everyone'] }),
        { name: 'static', match: { path: { prefix: '/static' } }, action: { direct_response: { status: 200 } } },
      ],
    );
    assert.deepEqual(policyNames(route(state, 'plain')), ['everyone']);
    assert.deepEqual(policyNames(route(state, 'own')), ['ip', 'everyone']);
    assert.deepEqual(policyNames(route(state, 'free')), []);
    assert.deepEqual(policyNames(route(state, 'static')), []);
    // The route entry names the route it is on (each route counts on its own).
    const entry = route(state, 'plain').route!.rate_limits[0]!.actions[1]!.generic_key!;
    assert.deepEqual([entry.descriptor_key, entry.descriptor_value], ['route', 'plain']);
  });

  it('a gateway policy keyed by route alone gives every route its own local shield', () => {
    const state = stateOf([{ name: 'each', key: ['route'], limit: { requests: 9, per: 'minute' }, scope: 'gateway' }], [forward('a', '/a'), forward('b', '/b')]);
    for (const name of ['a', 'b']) assert.ok(perFilter(route(state, name))['envoy.filters.http.local_ratelimit'], name);
  });

  it('without a deny policy the chain has one ratelimit filter, failing open, with the default 500 ms deadline', () => {
    const state = stateOf([IP], [forward('r', '/', { rate_limits: ['ip'] })]);
    const chain = filters(state);
    assert.equal(chain.some((f) => f.name === FAIL_CLOSED), false);
    const config = unpackAny(chain.find((f) => f.name === RATELIMIT)!.typed_config) as unknown as RateLimit__Output;
    assert.equal(config.failure_mode_deny, false);
    assert.equal(millis(config.timeout), 500);
    assert.deepEqual(Object.keys(perFilter(route(state, 'r'))), []);
  });

  it('a route with an on_error deny policy is checked by the fail-closed filter (503) and not by the other', () => {
    const state = stateOf(
      [IP, { ...IP, name: 'strict', on_error: 'deny' }],
      [forward('open', '/open', { rate_limits: ['ip'] }), forward('closed', '/closed', { rate_limits: ['ip', 'strict'] })],
    );
    const chain = filters(state, { ...OPTIONS, ratelimit: { ...OPTIONS.ratelimit!, timeoutMs: 1_250 } });
    const names = chain.map((f) => f.name);
    assert.deepEqual(names.slice(-3), [RATELIMIT, FAIL_CLOSED, 'envoy.filters.http.router']);
    const closed = chain.find((f) => f.name === FAIL_CLOSED)!;
    assert.equal(closed.disabled, true, 'off unless a route turns it on');
    const config = unpackAny(closed.typed_config) as unknown as RateLimit__Output;
    assert.equal(config.failure_mode_deny, true);
    assert.equal(config.status_on_error?.code, 'ServiceUnavailable');
    assert.equal(config.domain, 'sluice');
    assert.equal(millis(config.timeout), 1_250);

    const perRoute = perFilter(route(state, 'closed'));
    assert.deepEqual(Object.keys(perRoute).sort(), [RATELIMIT, FAIL_CLOSED].sort());
    assert.equal(perRoute[RATELIMIT]!.type_url, 'type.googleapis.com/envoy.config.route.v3.FilterConfig');
    assert.equal((unpackAny(perRoute[RATELIMIT]!) as { disabled?: boolean }).disabled, true);
    assert.equal(perRoute[FAIL_CLOSED]!.type_url, 'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute');
    assert.deepEqual(Object.keys(perFilter(route(state, 'open'))), []);
    // Both policies still go in one call (one atomic decision).
    assert.deepEqual(policyNames(route(state, 'closed')), ['ip', 'strict']);
  });
});
