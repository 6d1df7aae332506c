// The model and translation side of two authz settings: auth.on_error (what a
// route does when the authz service cannot answer) and auth.api_key_query (an API
// key in a query parameter). on_error allow routes are checked by a second
// ext_authz filter with failure_mode_allow (a filter-level setting in Envoy); every
// other route by the fail-closed one; each route turns exactly one of them on.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type DeclarativeConfigInput, type State, RouteSchema, StateSchema, validateState } from '../../control-plane/src/model/index.ts';
import { type EnvoyResources, type TranslateOptions, translate } from '../../control-plane/src/translate/index.ts';
import { decode, unpackAny } from '../../control-plane/src/proto/codec.ts';
import type { RouteConfiguration__Output } from '../../control-plane/src/proto/generated/envoy/config/route/v3/RouteConfiguration.ts';
import type { Route__Output } from '../../control-plane/src/proto/generated/envoy/config/route/v3/Route.ts';
import type { Listener__Output } from '../../control-plane/src/proto/generated/envoy/config/listener/v3/Listener.ts';
import type { HttpConnectionManager__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import type { ExtAuthzPerRoute__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/http/ext_authz/v3/ExtAuthzPerRoute.ts';
import type { ExtAuthz__Output } from '../../control-plane/src/proto/generated/envoy/extensions/filters/http/ext_authz/v3/ExtAuthz.ts';

const EXT_AUTHZ = 'envoy.filters.http.ext_authz';
const FAIL_OPEN = 'sluice.filters.http.ext_authz_fail_open';
const OPTIONS: TranslateOptions = { listenerPort: 10080, authz: { clusterName: 'sluice_authz', host: '127.0.0.1', port: 9191 } };

type RouteInput = NonNullable<DeclarativeConfigInput['routes']>[number];

function routeIssues(auth: unknown): Array<{ path: string; message: string }> {
  const parsed = RouteSchema.safeParse({ name: 'r', match: { path: { prefix: '/' } }, action: { upstream: 'a' }, auth });
  return parsed.success ? [] : parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
}

function stateOf(routes: RouteInput[]): State {
  const state = StateSchema.parse({ revision: 1, upstreams: [{ name: 'a', endpoints: [{ host: '10.1.0.1', port: 80 }] }], routes });
  assert.deepEqual(validateState(state), []);
  return state;
}

const route = (name: string, prefix: string, auth: RouteInput['auth']): RouteInput => ({ name, match: { path: { prefix } }, action: { upstream: 'a' }, auth });

function hcm(res: EnvoyResources): HttpConnectionManager__Output {
  const listener = decode('envoy.config.listener.v3.Listener', res.listeners[0]!.value) as unknown as Listener__Output;
  return unpackAny(listener.filter_chains[0]!.filters[0]!.typed_config!) as unknown as HttpConnectionManager__Output;
}

function extAuthzFilters(res: EnvoyResources): Array<{ name: string; disabled: boolean; config: ExtAuthz__Output }> {
  return hcm(res)
    .http_filters.filter((f) => f.name === EXT_AUTHZ || f.name === FAIL_OPEN)
    .map((f) => ({ name: f.name, disabled: f.disabled, config: unpackAny(f.typed_config!) as unknown as ExtAuthz__Output }));
}

function envoyRoute(res: EnvoyResources, name: string): Route__Output {
  const config = decode('envoy.config.route.v3.RouteConfiguration', res.routes[0]!.value) as unknown as RouteConfiguration__Output;
  const found = config.virtual_hosts.flatMap((v) => v.routes).filter((r) => r.name === name);
  assert.equal(found.length, 1, name);
  return found[0]!;
}

function perRoute(r: Route__Output, filter: string): ExtAuthzPerRoute__Output | undefined {
  const any = r.typed_per_filter_config?.[filter];
  return any ? (unpackAny(any) as unknown as ExtAuthzPerRoute__Output) : undefined;
}

describe('model: auth.on_error and auth.api_key_query', () => {
  it('accepts on_error deny | allow on routes with auth; absent means deny', () => {
    for (const mode of ['jwt', 'api_key', 'any']) {
      for (const on_error of ['deny', 'allow', undefined]) assert.deepEqual(routeIssues({ mode, on_error }), [], `${mode} ${String(on_error)}`);
    }
  });

  it('refuses on_error on auth none, and values other than deny | allow, naming the field', () => {
    assert.deepEqual(routeIssues({ mode: 'none', on_error: 'allow' }), [{ path: 'auth.on_error', message: 'on_error needs an auth mode other than none' }]);
    assert.equal(routeIssues({ mode: 'jwt', on_error: 'open' })[0]?.path, 'auth.on_error');
  });

  it('accepts api_key_query on api_key and any routes; refuses it on jwt and none, and names with reserved characters', () => {
    assert.deepEqual(routeIssues({ mode: 'api_key', api_key_query: 'api_key' }), []);
    assert.deepEqual(routeIssues({ mode: 'any', api_key_query: 'key.v1~x-y' }), []);
    for (const mode of ['jwt', 'none']) {
      assert.deepEqual(routeIssues({ mode, api_key_query: 'api_key' }), [{ path: 'auth.api_key_query', message: 'api_key_query applies only to auth modes api_key and any' }]);
    }
    assert.deepEqual(routeIssues({ mode: 'api_key', on_error: 'allow', api_key_query: 'api_key' }), [
      { path: 'auth.api_key_query', message: 'api_key_query needs on_error deny (failing open would pass the key to the upstream)' },
    ]);
    for (const name of ['', 'api key', 'a&b', 'a=b', 'api%5Fkey', 'k'.repeat(65), 'ключ']) {
      assert.equal(routeIssues({ mode: 'api_key', api_key_query: name })[0]?.path, 'auth.api_key_query', JSON.stringify(name));
    }
  });
});

describe('translate: a fail-open ext_authz twin for on_error allow routes', () => {
  const state = stateOf([
    route('open', '/open', { mode: 'none' }),
    route('closed', '/closed', { mode: 'api_key' }),
    route('closed-explicit', '/closed-explicit', { mode: 'any', on_error: 'deny' }),
    route('lenient', '/lenient', { mode: 'api_key', on_error: 'allow' }),
    route('query', '/query', { mode: 'any', api_key_query: 'api_key' }),
  ]);
  const res = translate(state, { ...OPTIONS, authz: { ...OPTIONS.authz!, timeoutMs: 250 } });

  it('chains header_mutation, ext_authz, the fail-open ext_authz, router; both off by default', () => {
    assert.deepEqual(
      hcm(res).http_filters.map((f) => f.name),
      ['envoy.filters.http.header_mutation', EXT_AUTHZ, FAIL_OPEN, 'envoy.filters.http.router'],
    );
    const [closed, open] = extAuthzFilters(res);
    assert.equal(closed!.disabled, true);
    assert.equal(open!.disabled, true);
    assert.equal(closed!.config.failure_mode_allow, false);
    assert.equal(closed!.config.status_on_error?.code, 'ServiceUnavailable');
    assert.equal(open!.config.failure_mode_allow, true);
    assert.equal(open!.config.stat_prefix, 'fail_open');
    for (const f of [closed!, open!]) {
      assert.equal(f.config.grpc_service?.envoy_grpc?.cluster_name, 'sluice_authz');
      assert.deepEqual(f.config.grpc_service?.timeout, { nanos: 250_000_000 });
    }
  });

  it('asks Envoy for only the headers the service reads (credentials and identity headers), on both filters', () => {
    for (const f of extAuthzFilters(res)) {
      assert.deepEqual(
        f.config.allowed_headers?.patterns.map((p) => (p.exact ? `exact:${p.exact}` : `prefix:${p.prefix}`)),
        ['exact:authorization', 'exact:x-api-key', 'exact:x-consumer-id', 'exact:x-user-id', 'prefix:x-sluice-'],
        f.name,
      );
    }
  });

  it('turns on exactly one of the two per route (auth none: neither)', () => {
    const context = (name: string, filter: string) => perRoute(envoyRoute(res, name), filter)?.check_settings?.context_extensions;
    const disabled = (name: string, filter: string) => perRoute(envoyRoute(res, name), filter)?.disabled;
    assert.equal(disabled('open', EXT_AUTHZ), true);
    assert.equal(disabled('open', FAIL_OPEN), true);
    for (const name of ['closed', 'closed-explicit']) {
      assert.equal(context(name, EXT_AUTHZ)?.sluice_route, name);
      assert.equal(disabled(name, FAIL_OPEN), true);
    }
    assert.equal(disabled('lenient', EXT_AUTHZ), true);
    assert.deepEqual(context('lenient', FAIL_OPEN), { sluice_auth_mode: 'api_key', sluice_route: 'lenient' });
    assert.deepEqual(context('query', EXT_AUTHZ), { sluice_api_key_query: 'api_key', sluice_auth_mode: 'any', sluice_route: 'query' });
  });

  it('on_error allow routes drop the credential headers themselves (nobody else does when the check fails open)', () => {
    assert.deepEqual(envoyRoute(res, 'lenient').request_headers_to_remove, ['authorization', 'x-api-key']);
    for (const name of ['open', 'closed', 'closed-explicit', 'query']) assert.deepEqual(envoyRoute(res, name).request_headers_to_remove ?? [], [], name);
  });

  it('leaves the twin out when no route fails open; the timeout defaults to 500 ms', () => {
    const closedOnly = translate(stateOf([route('closed', '/closed', { mode: 'api_key', api_key_query: 'k' })]), OPTIONS);
    assert.deepEqual(extAuthzFilters(closedOnly).map((f) => f.name), [EXT_AUTHZ]);
    assert.deepEqual(extAuthzFilters(closedOnly)[0]!.config.grpc_service?.timeout, { nanos: 500_000_000 });
    const r = envoyRoute(closedOnly, 'closed');
    assert.deepEqual(Object.keys(r.typed_per_filter_config), [EXT_AUTHZ]);
    assert.deepEqual(perRoute(r, EXT_AUTHZ)?.check_settings?.context_extensions, { sluice_api_key_query: 'k', sluice_auth_mode: 'api_key', sluice_route: 'closed' });
  });

  it('without an authz service, on_error allow still fails closed (503): no service is a configuration, not an outage', () => {
    const { authz: _none, ...withoutAuthz } = OPTIONS;
    const out = translate(stateOf([route('lenient', '/lenient', { mode: 'api_key', on_error: 'allow' })]), withoutAuthz);
    assert.equal(envoyRoute(out, 'lenient').direct_response?.status, 503);
    assert.deepEqual(extAuthzFilters(out), []);
  });
});
