// Hostile requests against the admin API on a real Postgres (fastify inject,
// plus a real loopback socket for what Node's HTTP parser refuses). Every one
// must get a 4xx problem+json naming the field, parameter or header at fault,
// leave the revision unchanged, and leave a line in the admin log (pino,
// captured here). A generator adds random JSON with bad strings at random
// depths. Also: the access log's shape, redaction, and that "store unavailable"
// is decided from error codes, not from a message saying "does not exist".
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { buildAdminApp } from '../../control-plane/src/admin/app.ts';
import { MAX_JSON_DEPTH } from '../../control-plane/src/admin/input.ts';
import { createAdminToken } from '../../control-plane/src/admin/tokens.ts';
import { createLogger, type Logger } from '../../control-plane/src/log.ts';
import { ConfigStore } from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { NodeRegistry } from '../../control-plane/src/xds/registry.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

const BODY_LIMIT = 64 * 1024;
const SECRET = 'hostile-test-secret-0123456789abcdef';

let db: TestDatabase;
let prisma: PrismaClient;
let store: ConfigStore;
let app: FastifyInstance;
let logger: Logger;
let writeToken: string;

/** Every admin log line, parsed. */
const logLines: Record<string, unknown>[] = [];
const logText: string[] = [];

interface Hostile {
  name: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  /** JSON-encoded (JSON.stringify keeps lone surrogates as \u escapes). */
  body?: unknown;
  /** Sent as is. */
  raw?: string | Buffer;
  headers?: Record<string, string | string[]>;
  /** Send the body without any Content-Type (otherwise JSON is assumed). */
  noContentType?: boolean;
  token?: string | null;
  /** Exact status when it is known; otherwise any 4xx. */
  status?: number;
  /** An errors[].path the problem must contain; a RegExp when the path is long. */
  field?: string | RegExp;
}

interface Answer {
  status: number;
  type: string;
  body: { status?: unknown; title?: unknown; detail?: unknown; errors?: { path: string; message: string }[] };
  requestId: string | undefined;
  text: string;
}

async function send(h: Hostile): Promise<Answer> {
  const headers: Record<string, string | string[]> = { ...(h.headers ?? {}) };
  const token = h.token === undefined ? writeToken : h.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let payload: string | Buffer | undefined = h.raw;
  if (payload === undefined && h.body !== undefined) payload = JSON.stringify(h.body);
  if (payload !== undefined && !h.noContentType && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
  const res = await app.inject({ method: h.method, url: h.url, headers, ...(payload === undefined ? {} : { payload }) });
  let body: Answer['body'] = {};
  try {
    body = JSON.parse(res.body) as Answer['body'];
  } catch {
    body = {};
  }
  const id = res.headers['x-request-id'];
  return { status: res.statusCode, type: String(res.headers['content-type']), body, requestId: typeof id === 'string' ? id : undefined, text: res.body };
}

async function currentRevision(): Promise<number> {
  const res = await app.inject({ method: 'GET', url: '/v1/revisions?limit=1', headers: { authorization: `Bearer ${writeToken}` } });
  assert.equal(res.statusCode, 200, res.body);
  const items = (res.json() as { items: { revision: number }[] }).items;
  return items[0]?.revision ?? 0;
}

function accessLine(requestId: string | undefined): Record<string, unknown> | undefined {
  return logLines.find((line) => line.reqId === requestId && line.msg === 'admin request');
}

function nested(depth: number, leaf: unknown): unknown {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { x: value };
  return value;
}

/** A JSON text nested `depth` arrays deep, built as text (JSON.stringify would recurse). */
function deepArrayText(depth: number, leaf = '1'): string {
  return `${'['.repeat(depth)}${leaf}${']'.repeat(depth)}`;
}

const NUL = 'a\u0000b';
const HIGH = 'x\ud800y';
const LOW = '/\udfff';
const TEN_KB = 'a'.repeat(10 * 1024);

const upstream = (name: string, extra: Record<string, unknown> = {}) => ({ name, endpoints: [{ host: '127.0.0.1', port: 8080 }], ...extra });
const route = (name: string, extra: Record<string, unknown> = {}) => ({ name, match: { path: { prefix: `/${name}` } }, action: { upstream: 'up-1' }, ...extra });
const direct = (body: string) => route('r-bad', { action: { direct_response: { status: 200, body } } });

const HOSTILE: Hostile[] = [
  // ---- NUL and lone surrogates in free text (Postgres refuses \u0000; UTF-8 cannot hold a lone surrogate)
  { name: 'NUL in a direct-response body', method: 'POST', url: '/v1/routes', body: direct(NUL), status: 400, field: 'action.direct_response.body' },
  { name: 'lone low surrogate in a direct-response body', method: 'POST', url: '/v1/routes', body: direct(LOW), status: 400, field: 'action.direct_response.body' },
  { name: 'lone surrogate in a path prefix', method: 'POST', url: '/v1/routes', body: route('r-bad', { match: { path: { prefix: LOW } } }), status: 400, field: 'match.path.prefix' },
  { name: 'NUL in a query matcher value', method: 'POST', url: '/v1/routes', body: route('r-bad', { match: { path: { prefix: '/q' }, query: [{ name: 'q', exact: NUL }] } }), status: 400, field: 'match.query.0.exact' },
  { name: 'NUL in a header matcher value', method: 'POST', url: '/v1/routes', body: route('r-bad', { match: { path: { prefix: '/h' }, headers: [{ name: 'x-a', exact: NUL }] } }), status: 400, field: 'match.headers.0.exact' },
  { name: 'NUL in consumer metadata value', method: 'POST', url: '/v1/consumers', body: { name: 'k-bad', metadata: { tier: NUL } }, status: 400, field: 'metadata.tier' },
  { name: 'lone surrogate in a consumer metadata key', method: 'POST', url: '/v1/consumers', body: { name: 'k-bad', metadata: { [HIGH]: 'v' } }, status: 400, field: `metadata.${HIGH}` },
  { name: 'NUL in a JWT issuer', method: 'POST', url: '/v1/jwt-providers', body: { name: 'j-bad', issuer: NUL, jwks_uri: 'https://a.example/jwks' }, status: 400, field: 'issuer' },
  { name: 'lone high surrogate in a JWT audience', method: 'POST', url: '/v1/jwt-providers', body: { name: 'j-bad', issuer: 'i', jwks_uri: 'https://a.example/jwks', audiences: [HIGH] }, status: 400, field: 'audiences.0' },
  { name: 'NUL in a JWK member', method: 'POST', url: '/v1/jwt-providers', body: { name: 'j-bad', issuer: 'i', jwks: { keys: [{ kty: 'RSA', n: NUL }] } }, status: 400, field: 'jwks.keys.0.n' },
  { name: 'NUL in a credential subject', method: 'POST', url: '/v1/credentials', body: { name: 'c-bad', consumer: 'con-1', kind: 'jwt_subject', jwt: { provider: 'jwt-1', subject: NUL } }, status: 400, field: 'jwt.subject' },
  { name: 'NUL in a rate-limit policy name', method: 'POST', url: '/v1/rate-limit-policies', body: { name: NUL, key: ['route'], limit: { requests: 1, per: 'second' } }, status: 400, field: 'name' },
  { name: 'NUL in an endpoint host', method: 'POST', url: '/v1/upstreams', body: { name: 'u-bad', endpoints: [{ host: NUL, port: 80 }] }, status: 400, field: 'endpoints.0.host' },
  { name: 'NUL deep in a declarative config', method: 'PUT', url: '/v1/config', body: { upstreams: [upstream('up-1')], routes: [route('rt-1', { action: { direct_response: { status: 200, body: NUL } } })] }, status: 400, field: 'routes.0.action.direct_response.body' },
  { name: 'lone surrogate in config:validate', method: 'POST', url: '/v1/config:validate', body: { consumers: [{ name: 'k', metadata: { a: LOW } }] }, status: 400, field: 'consumers.0.metadata.a' },
  { name: 'NUL in config:diff', method: 'POST', url: '/v1/config:diff', body: { jwt_providers: [{ name: 'j', issuer: NUL, jwks_uri: 'https://a.example/jwks' }] }, status: 400, field: 'jwt_providers.0.issuer' },
  { name: 'NUL in a merge patch', method: 'PATCH', url: '/v1/routes/rt-1', raw: JSON.stringify({ action: { direct_response: { status: 200, body: NUL } } }), headers: { 'content-type': 'application/merge-patch+json' }, status: 400, field: 'action.direct_response.body' },
  { name: 'NUL in canary weights', method: 'POST', url: '/v1/routes/rt-1:canary', body: { weights: [{ upstream: NUL, weight: 100 }] }, status: 400, field: 'weights.0.upstream' },
  { name: 'NUL escape in a YAML body', method: 'POST', url: '/v1/config:validate', raw: 'consumers:\n  - name: k\n    metadata: { a: "x\\0y" }\n', headers: { 'content-type': 'application/yaml' }, status: 400, field: 'consumers.0.metadata.a' },
  { name: 'NUL in a PUT body', method: 'PUT', url: '/v1/upstreams/up-2', body: upstream('up-2', { endpoints: [{ host: '127.0.0.1', port: 80, zone: NUL }] }), status: 400, field: 'endpoints.0.zone' },

  // ---- control characters where the model refuses them
  { name: 'control character in a name', method: 'POST', url: '/v1/upstreams', body: upstream('u\u0001bad'), status: 422, field: 'name' },
  { name: 'CR LF in an added header value', method: 'POST', url: '/v1/routes', body: route('r-bad', { request_headers: { add: [{ name: 'x-a', value: 'a\r\nx-injected: 1' }] } }), status: 422, field: 'request_headers.add.0.value' },
  { name: 'tab in a route host', method: 'POST', url: '/v1/routes', body: route('r-bad', { hosts: ['a\t.example'] }), status: 422, field: 'hosts.0' },
  { name: 'escape character in a consumer tag', method: 'POST', url: '/v1/consumers', body: { name: 'k-bad', tags: ['\u001b[31m'] }, status: 422, field: 'tags.0' },

  // ---- invalid UTF-8 bytes in the body
  { name: 'invalid UTF-8 byte in a name', method: 'POST', url: '/v1/upstreams', raw: Buffer.concat([Buffer.from('{"name":"u'), Buffer.from([0xff]), Buffer.from('","endpoints":[{"host":"127.0.0.1","port":80}]}')]), headers: { 'content-type': 'application/json' }, status: 400, field: 'name' },
  { name: 'overlong UTF-8 encoding in a declarative config', method: 'PUT', url: '/v1/config', raw: Buffer.concat([Buffer.from('{"consumers":[{"name":"k","metadata":{"a":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}}]}')]), headers: { 'content-type': 'application/json' }, status: 400, field: 'consumers.0.metadata.a' },
  { name: 'UTF-8-encoded surrogate in a YAML body', method: 'POST', url: '/v1/config:validate', raw: Buffer.concat([Buffer.from('consumers:\n  - name: "'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"\n')]), headers: { 'content-type': 'application/yaml' }, status: 400, field: 'consumers.0.name' },
  { name: 'truncated UTF-8 sequence at the end of the body', method: 'POST', url: '/v1/consumers', raw: Buffer.concat([Buffer.from('{"name":"k"}'), Buffer.from([0xe6, 0x97])]), headers: { 'content-type': 'application/json' }, status: 400, field: '' },

  // ---- deep nesting
  { name: '10,000-level nesting inside a JWK', method: 'POST', url: '/v1/jwt-providers', raw: `{"name":"j-bad","issuer":"i","jwks":{"keys":[{"kty":"RSA","x":${deepArrayText(10_000)}}]}}`, status: 400, field: /^jwks\.keys\.0\.x(\.0)+$/ },
  { name: '10,000-level nesting in consumer metadata', method: 'POST', url: '/v1/consumers', raw: `{"name":"k-bad","metadata":{"a":${deepArrayText(10_000, '"v"')}}}`, status: 400, field: /^metadata\.a(\.0)+$/ },
  { name: '10,000-level nesting as the whole config', method: 'PUT', url: '/v1/config', raw: deepArrayText(10_000), status: 400, field: /^0(\.0)+$/ },
  { name: 'nesting one level past the cap in a merge patch', method: 'PATCH', url: '/v1/consumers/con-1', raw: JSON.stringify({ metadata: nested(MAX_JSON_DEPTH, 'v') }), headers: { 'content-type': 'application/merge-patch+json' }, status: 400, field: /^metadata(\.(0|x))+$/ },
  { name: 'YAML alias bomb', method: 'PUT', url: '/v1/config', raw: `a: &a [x, x, x, x, x, x, x, x, x]\n${['b', 'c', 'd', 'e', 'f'].map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcde'[i]}`).join(', ')}]`).join('\n')}\n`, headers: { 'content-type': 'application/yaml' }, status: 400, field: '' },
  { name: 'YAML alias that contains itself', method: 'POST', url: '/v1/config:validate', raw: 'routes: &r [*r]\n', headers: { 'content-type': 'application/yaml' }, status: 400, field: /^routes(\.0)+$/ },
  { name: 'YAML !!binary value', method: 'POST', url: '/v1/jwt-providers', raw: 'name: j-bad\nissuer: i\njwks: { keys: [ { kty: RSA, n: !!binary aGVsbG8= } ] }\n', headers: { 'content-type': 'application/yaml' }, status: 400, field: 'jwks.keys.0.n' },
  { name: '1,000-level YAML flow nesting', method: 'POST', url: '/v1/config:validate', raw: `routes: ${deepArrayText(1000)}\n`, headers: { 'content-type': 'application/yaml' }, status: 400 },

  // ---- prototype keys
  { name: '__proto__ at the top of a body', method: 'POST', url: '/v1/upstreams', raw: '{"name":"u-bad","endpoints":[{"host":"127.0.0.1","port":80}],"__proto__":{"admin":true}}', status: 400, field: '__proto__' },
  { name: 'constructor as a metadata key', method: 'POST', url: '/v1/consumers', body: { name: 'k-bad', metadata: { constructor: 'x' } }, status: 400, field: 'metadata.constructor' },
  { name: 'prototype as a metadata key', method: 'POST', url: '/v1/consumers', body: { name: 'k-bad', metadata: { prototype: 'x' } }, status: 400, field: 'metadata.prototype' },
  { name: 'constructor.prototype in a route', method: 'POST', url: '/v1/routes', body: { ...route('r-bad'), constructor: { prototype: { polluted: true } } }, status: 400, field: 'constructor' },
  { name: '__proto__ in a merge patch', method: 'PATCH', url: '/v1/routes/rt-1', raw: '{"__proto__":{"timeout_ms":1}}', headers: { 'content-type': 'application/merge-patch+json' }, status: 400, field: '__proto__' },
  { name: '__proto__ in a declarative config', method: 'PUT', url: '/v1/config', raw: '{"__proto__":{"routes":[]}}', status: 400, field: '__proto__' },
  { name: '__proto__ as a YAML key', method: 'POST', url: '/v1/config:validate', raw: 'consumers:\n  - name: k\n    __proto__: { x: 1 }\n', headers: { 'content-type': 'application/yaml' }, status: 400, field: 'consumers.0.__proto__' },
  { name: '__proto__ inside a JWK', method: 'POST', url: '/v1/jwt-providers', raw: '{"name":"j-bad","issuer":"i","jwks":{"keys":[{"kty":"RSA","__proto__":{"kty":"oct"}}]}}', status: 400, field: 'jwks.keys.0.__proto__' },

  // ---- huge arrays
  { name: '5,000 consumer tags', method: 'POST', url: '/v1/consumers', body: { name: 'k-bad', tags: Array.from({ length: 5_000 }, (_, i) => `t${i}`) }, status: 422, field: 'tags' },
  { name: '1,500 endpoints', method: 'POST', url: '/v1/upstreams', body: { name: 'u-bad', endpoints: Array.from({ length: 1_500 }, () => ({ host: '127.0.0.1', port: 80 })) }, status: 422, field: 'endpoints' },
  { name: '5,000 rate-limit key parts', method: 'POST', url: '/v1/rate-limit-policies', body: { name: 'p-bad', key: Array.from({ length: 5_000 }, () => 'route'), limit: { requests: 1, per: 'second' } }, status: 422, field: 'key' },
  { name: '1,500 canary weights', method: 'POST', url: '/v1/routes/rt-1:canary', body: { weights: Array.from({ length: 1_500 }, () => ({ upstream: 'up-1', weight: 0 })) }, status: 422, field: 'weights' },

  // ---- content types
  { name: 'text/plain body', method: 'POST', url: '/v1/upstreams', raw: JSON.stringify(upstream('u-bad')), headers: { 'content-type': 'text/plain' }, status: 415, field: 'Content-Type' },
  { name: 'no content-type with a body', method: 'POST', url: '/v1/upstreams', raw: JSON.stringify(upstream('u-bad')), noContentType: true, status: 415, field: 'Content-Type' },
  { name: 'form-encoded body', method: 'PUT', url: '/v1/config', raw: 'routes=1', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, field: 'Content-Type' },
  { name: 'multipart body', method: 'POST', url: '/v1/consumers', raw: '--b\r\n\r\nx\r\n--b--', headers: { 'content-type': 'multipart/form-data; boundary=b' }, status: 415, field: 'Content-Type' },
  { name: 'JSON in latin1', method: 'POST', url: '/v1/consumers', raw: '{"name":"k-bad"}', headers: { 'content-type': 'application/json; charset=latin1' }, status: 415, field: 'Content-Type' },
  { name: 'two content-type headers', method: 'POST', url: '/v1/consumers', raw: '{"name":"k-bad"}', headers: { 'content-type': ['application/json', 'text/plain'] }, field: 'Content-Type' },
  { name: 'empty body declared as JSON', method: 'POST', url: '/v1/upstreams', raw: '', headers: { 'content-type': 'application/json' }, status: 400, field: '' },
  { name: 'malformed JSON', method: 'POST', url: '/v1/jwt-providers', raw: '{"name": "j-bad",', status: 400, field: '' },
  { name: 'JSON with a trailing comma', method: 'PUT', url: '/v1/rate-limit-policies/rlp-1', raw: '{"key":["route"],}', status: 400, field: '' },

  // ---- oversized names, bodies and path segments
  { name: '10 KB name in a body', method: 'POST', url: '/v1/upstreams', body: upstream(TEN_KB), status: 422, field: 'name' },
  { name: 'body over the limit', method: 'POST', url: '/v1/consumers', raw: JSON.stringify({ name: 'k-big', metadata: { pad: 'x'.repeat(BODY_LIMIT) } }), status: 413, field: '' },
  { name: '10 KB name in the path (GET)', method: 'GET', url: `/v1/routes/${TEN_KB}`, status: 414, field: 'name' },
  { name: '10 KB name in the path (DELETE)', method: 'DELETE', url: `/v1/consumers/${TEN_KB}`, status: 414, field: 'name' },
  { name: '10 KB revision in the path', method: 'GET', url: `/v1/revisions/${'9'.repeat(10 * 1024)}`, status: 414, field: 'revision' },
  { name: '1 KB name in the path (PUT)', method: 'PUT', url: `/v1/upstreams/${'a'.repeat(1024)}`, body: { endpoints: [{ host: '127.0.0.1', port: 80 }] }, status: 400, field: 'name' },

  // ---- bad percent-encodings and NUL in URLs
  { name: 'percent sign without hex digits in a name', method: 'GET', url: '/v1/routes/%ZZ', status: 400, field: 'name' },
  { name: 'overlong UTF-8 percent-encoding in a name', method: 'DELETE', url: '/v1/upstreams/%C0%AF', status: 400, field: 'name' },
  { name: 'percent-encoded surrogate in a name', method: 'PUT', url: '/v1/jwt-providers/%ED%A0%80', body: { issuer: 'i', jwks_uri: 'https://a.example/jwks' }, status: 400, field: 'name' },
  { name: 'truncated percent-encoding in a revision', method: 'GET', url: '/v1/revisions/%E0%A4', status: 400, field: 'revision' },
  { name: '%00 as a name', method: 'GET', url: '/v1/routes/%00', status: 400, field: 'name' },
  { name: '%00 in a name to delete', method: 'DELETE', url: '/v1/credentials/cred%001', status: 400, field: 'name' },
  { name: '%00 in a canary target', method: 'POST', url: '/v1/routes/rt%00:canary', body: { weights: [{ upstream: 'up-1', weight: 100 }] }, status: 400, field: 'name' },
  { name: 'uppercase and slash in a name', method: 'GET', url: '/v1/upstreams/Up%2F1', status: 400, field: 'name' },
  { name: '?prefix=%00', method: 'GET', url: '/v1/routes?prefix=%00', status: 400, field: 'prefix' },
  { name: '?after=%00', method: 'GET', url: '/v1/upstreams?after=%00', status: 400, field: 'after' },
  { name: 'bad percent-encoding in ?prefix', method: 'GET', url: '/v1/consumers?prefix=%E0%A4%A', status: 400, field: 'prefix' },
  { name: 'newline in ?prefix', method: 'GET', url: '/v1/jwt-providers?prefix=a%0Ab', status: 400, field: 'prefix' },
  { name: '?before=%00 on revisions', method: 'GET', url: '/v1/revisions?before=%00', status: 400, field: 'before' },
  { name: '?wait=%00 on a write', method: 'POST', url: '/v1/upstreams?wait=%00', body: upstream('u-bad'), status: 400, field: 'wait' },
  { name: 'bad percent-encoding under an unknown path', method: 'GET', url: '/v1/nothing/%ZZ', status: 400, field: 'path' },

  // ---- numbers
  { name: 'port 1e400', method: 'POST', url: '/v1/upstreams', raw: '{"name":"u-bad","endpoints":[{"host":"127.0.0.1","port":1e400}]}', status: 422, field: 'endpoints.0.port' },
  { name: 'port "NaN"', method: 'POST', url: '/v1/upstreams', body: { name: 'u-bad', endpoints: [{ host: '127.0.0.1', port: 'NaN' }] }, status: 422, field: 'endpoints.0.port' },
  { name: 'requests beyond 2^53', method: 'POST', url: '/v1/rate-limit-policies', raw: '{"name":"p-bad","key":["route"],"limit":{"requests":9007199254740993,"per":"second"}}', status: 422, field: 'limit.requests' },
  { name: 'negative requests', method: 'POST', url: '/v1/rate-limit-policies', body: { name: 'p-bad', key: ['route'], limit: { requests: -1, per: 'second' } }, status: 422, field: 'limit.requests' },
  { name: 'timeout "Infinity"', method: 'POST', url: '/v1/routes', body: route('r-bad', { timeout_ms: 'Infinity' }), status: 422, field: 'timeout_ms' },
  { name: 'clock skew -0.5', method: 'POST', url: '/v1/jwt-providers', body: { name: 'j-bad', issuer: 'i', jwks_uri: 'https://a.example/jwks', clock_skew_s: -0.5 }, status: 422, field: 'clock_skew_s' },
  { name: '?limit=NaN', method: 'GET', url: '/v1/routes?limit=NaN', status: 400, field: 'limit' },
  { name: '?limit=1e400', method: 'GET', url: '/v1/credentials?limit=1e400', status: 400, field: 'limit' },
  { name: '?limit=-1', method: 'GET', url: '/v1/rate-limit-policies?limit=-1', status: 400, field: 'limit' },
  { name: 'two ?limit values', method: 'GET', url: '/v1/routes?limit=1&limit=2', status: 400, field: 'limit' },
  { name: '?before=abc on revisions', method: 'GET', url: '/v1/revisions?before=abc', status: 400, field: 'before' },
  { name: 'revision 1e400', method: 'GET', url: '/v1/revisions/1e400', status: 400, field: 'revision' },
  { name: 'rollback to revision -1', method: 'POST', url: '/v1/revisions/-1:rollback', status: 400, field: 'revision' },

  // ---- wrong JSON types and unknown fields
  { name: 'body is a string', method: 'POST', url: '/v1/upstreams', raw: '"hello"', status: 422, field: '' },
  { name: 'body is a number', method: 'POST', url: '/v1/routes', raw: '42', status: 422, field: '' },
  { name: 'body is null', method: 'POST', url: '/v1/consumers', raw: 'null', status: 422, field: '' },
  { name: 'endpoints is an object', method: 'POST', url: '/v1/upstreams', body: { name: 'u-bad', endpoints: { host: '127.0.0.1' } }, status: 422, field: 'endpoints' },
  { name: 'name is an array', method: 'POST', url: '/v1/jwt-providers', body: { name: ['j'], issuer: 'i', jwks_uri: 'https://a.example/jwks' }, status: 422, field: 'name' },
  { name: 'declarative config is an array', method: 'PUT', url: '/v1/config', body: [], status: 422, field: '' },
  { name: 'canary weights is a string', method: 'POST', url: '/v1/routes/rt-1:canary', body: { weights: '100' }, status: 422, field: 'weights' },
  { name: 'unknown field on a route', method: 'POST', url: '/v1/routes', body: route('r-bad', { colour: 'red' }), status: 422, field: 'colour' },
  { name: 'unknown field on a credential', method: 'POST', url: '/v1/credentials', body: { name: 'c-bad', consumer: 'con-1', kind: 'jwt_subject', jwt: { provider: 'jwt-1', subject: 's' }, key: 'chosen-by-client' }, status: 422, field: 'key' },
  { name: 'unknown kind in a YAML config', method: 'PUT', url: '/v1/config', raw: 'services: []\n', headers: { 'content-type': 'application/yaml' }, status: 422, field: 'services' },

  // ---- If-Match and other headers
  { name: 'weak ETag in If-Match', method: 'PUT', url: '/v1/consumers/con-1', body: { tags: [] }, headers: { 'if-match': 'W/"1"' }, status: 400, field: 'If-Match' },
  { name: 'two ETags in If-Match', method: 'DELETE', url: '/v1/routes/rt-1', headers: { 'if-match': '"1", "2"' }, status: 400, field: 'If-Match' },
  { name: '20-digit ETag in If-Match', method: 'PATCH', url: '/v1/upstreams/up-1', raw: '{}', headers: { 'content-type': 'application/merge-patch+json', 'if-match': '"99999999999999999999"' }, status: 400, field: 'If-Match' },
  { name: 'negative ETag in If-Match', method: 'DELETE', url: '/v1/jwt-providers/jwt-1', headers: { 'if-match': '"-1"' }, status: 400, field: 'If-Match' },
  { name: 'no token on a hostile write', method: 'POST', url: '/v1/routes', body: direct(NUL), token: null, status: 401, field: 'Authorization' },
  { name: 'garbage bearer token', method: 'DELETE', url: '/v1/routes/rt-1', token: '\u00ff\u00fe'.repeat(100), status: 401, field: 'Authorization' },

  // ---- routes and actions that do not exist
  { name: 'a method no route has', method: 'DELETE', url: '/v1/config', status: 404 },
  { name: 'an unknown action', method: 'POST', url: '/v1/routes/rt-1:explode', body: {}, status: 404 },
  { name: 'rollback of a non-number', method: 'POST', url: '/v1/revisions/abc:rollback', status: 400, field: 'revision' },
];

before(async () => {
  db = await createTestDatabase();
  await migrate(db.url);
  prisma = createPrisma(db.url);
  store = new ConfigStore(prisma);
  logger = createLogger('info', {
    write(line: string) {
      logText.push(line);
      logLines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  app = buildAdminApp({ store, prisma, registry: new NodeRegistry(), secret: SECRET, bodyLimit: BODY_LIMIT, logger });
  writeToken = (await createAdminToken(prisma, 'ci', 'write')).token;
  // One object of every kind, so every endpoint has something to point at.
  const seed: [string, unknown][] = [
    ['/v1/upstreams', upstream('up-1')],
    ['/v1/upstreams', upstream('up-2')],
    ['/v1/rate-limit-policies', { name: 'rlp-1', key: ['route'], limit: { requests: 10, per: 'second' } }],
    ['/v1/jwt-providers', { name: 'jwt-1', issuer: 'https://issuer.example', jwks_uri: 'https://issuer.example/jwks' }],
    ['/v1/consumers', { name: 'con-1' }],
    ['/v1/credentials', { name: 'cred-1', consumer: 'con-1', kind: 'jwt_subject', jwt: { provider: 'jwt-1', subject: 's' } }],
    ['/v1/routes', route('rt-1')],
  ];
  for (const [url, body] of seed) {
    const res = await send({ name: 'seed', method: 'POST', url, body });
    assert.equal(res.status, 201, `${url}: ${res.text}`);
  }
});

after(async () => {
  await app?.close();
  await prisma?.$disconnect();
  await db?.drop();
  await stopTestPostgres();
});

function assertHostileAnswer(h: Hostile, res: Answer): void {
  const what = `${h.name}: ${res.status} ${res.text.slice(0, 300)}`;
  assert.ok(res.status >= 400 && res.status < 500, what);
  if (h.status !== undefined) assert.equal(res.status, h.status, what);
  assert.match(res.type, /^application\/problem\+json/, what);
  assert.equal(res.body.status, res.status, what);
  assert.equal(typeof res.body.title, 'string', what);
  assert.equal(typeof res.body.detail, 'string', what);
  if (h.field !== undefined) {
    const paths = (res.body.errors ?? []).map((e) => e.path);
    const field = h.field;
    const found = typeof field === 'string' ? paths.includes(field) : paths.some((p) => field.test(p));
    assert.ok(found, `${h.name}: no error at ${String(field)} in ${JSON.stringify(paths).slice(0, 300)}`);
  }
  const line = accessLine(res.requestId);
  assert.ok(line, `${h.name}: no admin log line for request ${String(res.requestId)}`);
  assert.equal(line.status, res.status, what);
  assert.equal(line.level, 'info', what);
}

test(`${HOSTILE.length} hostile requests: each a 4xx problem+json naming the field, the revision unchanged, a line in the admin log`, async () => {
  assert.ok(HOSTILE.length >= 60);
  const { state } = await store.loadState();
  for (const h of HOSTILE) {
    const revision = await currentRevision();
    const res = await send(h);
    assertHostileAnswer(h, res);
    assert.equal(await currentRevision(), revision, `${h.name} made a revision`);
  }
  assert.deepEqual((await store.loadState()).state, state);
  assert.ok(!logText.some((line) => line.includes(writeToken)), 'a token reached the log');
  assert.ok(!logLines.some((line) => line.level === 'error'), 'no hostile request may be logged as a server error');
});

test('the access log: one line per request with method, route pattern, status, latency and actor; never the token', async () => {
  const got = await send({ name: 'get', method: 'GET', url: '/v1/routes/rt-1?x=1' });
  assert.equal(got.status, 200);
  const lines = logLines.filter((line) => line.reqId === got.requestId);
  assert.equal(lines.length, 1, JSON.stringify(lines));
  const line = lines[0]!;
  assert.equal(line.msg, 'admin request');
  assert.equal(line.method, 'GET');
  assert.equal(line.route, '/v1/routes/:name');
  assert.equal(line.status, 200);
  assert.equal(typeof line.latency_ms, 'number');
  assert.equal(line.actor, 'ci');
  assert.equal(line.problem_fields, undefined);

  const bad = await send({ name: 'bad', method: 'POST', url: '/v1/upstreams', body: { name: 'u-bad', endpoints: [{ host: '127.0.0.1', port: 0 }], colour: 1 } });
  assert.equal(bad.status, 422);
  assert.deepEqual(accessLine(bad.requestId)?.problem_fields, (bad.body.errors ?? []).map((e) => e.path));

  // Redaction is the second line of defence: whatever a caller puts in a log
  // record under these names never reaches the output.
  const before = logText.length;
  logger.info({ req: { headers: { authorization: 'Bearer sat_leak1', 'x-api-key': 'sk_leak2', cookie: 'c=leak3' } }, body: { key: 'leak4', token: 'leak5', nested: { secret: 'leak6' } } }, 'redaction check');
  const written = logText.slice(before).join('');
  for (const leak of ['leak1', 'leak2', 'leak3', 'leak4', 'leak5', 'leak6']) assert.ok(!written.includes(leak), `${leak} was logged`);
  assert.match(written, /\[redacted\]/);
});

// Strings the HTTP layer must stop whatever field they are in.
const badString = fc.oneof(
  fc.constantFrom('\u0000', '\ud800', '\udbff', '\udc00', '\udfff'),
  fc.tuple(fc.string({ maxLength: 8 }), fc.constantFrom('\u0000', '\ud83d', '\ude00'), fc.string({ maxLength: 8 })).map(([a, bad, b]) => `${a}${bad}${b}`),
);
const jsonLeaf = fc.oneof(fc.string({ maxLength: 12 }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
const randomTree = fc.letrec<{ tree: unknown }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    jsonLeaf,
    fc.array(tie('tree'), { maxLength: 4 }),
    fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), tie('tree'), { maxKeys: 4 }),
  ),
})).tree;

/** Nests `leaf` `depth` levels down, alternating arrays and objects with the given keys. */
function bury(leaf: unknown, keys: string[]): unknown {
  let value = leaf;
  keys.forEach((key, i) => {
    value = i % 3 === 0 ? [value] : { [key]: value };
  });
  return value;
}

test('generated hostile bodies (random JSON, a bad string at a random depth) never get a 5xx, always a 4xx problem+json', async () => {
  const endpoints: Array<{ method: 'POST' | 'PUT' | 'PATCH'; url: string; type: string }> = [
    { method: 'POST', url: '/v1/consumers', type: 'application/json' },
    { method: 'POST', url: '/v1/routes', type: 'application/json' },
    { method: 'POST', url: '/v1/jwt-providers', type: 'application/json' },
    { method: 'PUT', url: '/v1/upstreams/up-2', type: 'application/json' },
    { method: 'PATCH', url: '/v1/routes/rt-1', type: 'application/merge-patch+json' },
    { method: 'PUT', url: '/v1/config', type: 'application/json' },
  ];
  const revision = await currentRevision();
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...endpoints),
      randomTree,
      badString,
      fc.array(fc.string({ minLength: 1, maxLength: 6 }), { maxLength: 40 }),
      fc.boolean(),
      async (endpoint, tree, bad, path, asKey) => {
        // The bad string goes in as a value or as a key, at a random depth (0 to 40).
        const buried = bury(asKey ? { [bad]: 1 } : bad, path);
        const body = { name: 'gen', other: tree, [path[0] ?? 'x']: buried };
        const res = await send({ name: 'generated', method: endpoint.method, url: endpoint.url, raw: JSON.stringify(body), headers: { 'content-type': endpoint.type } });
        assert.equal(res.status, 400, `${endpoint.method} ${endpoint.url}: ${res.status} ${res.text.slice(0, 300)}`);
        assert.match(res.type, /^application\/problem\+json/);
        assert.ok((res.body.errors ?? []).length > 0, res.text);
        assert.ok(accessLine(res.requestId), 'no admin log line');
      },
    ),
    // Fixed seed in the suite; `bench/` style longer runs can vary it.
    { seed: 7_007, numRuns: 150 },
  );
  assert.equal(await currentRevision(), revision);
});

test('requests Node refuses before fastify (a real loopback socket) answer problem+json and are logged', async () => {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as net.AddressInfo;
  const revision = await currentRevision();
  const cases: { name: string; request: string; status: number; field: string }[] = [
    { name: 'headers larger than 16 KB', request: `GET /v1/routes HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(20 * 1024)}\r\n\r\n`, status: 431, field: 'headers' },
    { name: 'a control byte in the request line', request: 'GET /v1/routes/\u0001 HTTP/1.1\r\nHost: x\r\n\r\n', status: 400, field: 'path' },
    { name: 'a TLS hello sent to the plaintext port', request: '\u0016\u0003\u0001\u0000\u00a5\u0001\r\n\r\n', status: 400, field: 'method' },
    { name: 'a raw invalid UTF-8 byte in the path', request: `GET /v1/routes/r\u00ff HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${writeToken}\r\nConnection: close\r\n\r\n`, status: 400, field: 'path' },
    { name: 'a raw invalid UTF-8 byte in the query', request: `GET /v1/routes?prefix=\u00c0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${writeToken}\r\nConnection: close\r\n\r\n`, status: 400, field: 'path' },
    { name: 'a method that is not a token', request: 'G(T /v1/routes HTTP/1.1\r\nHost: x\r\n\r\n', status: 400, field: 'method' },
    { name: 'a space in a header name', request: 'GET /v1/routes HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n', status: 400, field: 'headers' },
    { name: 'two Content-Type headers over the wire', request: `POST /v1/consumers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${writeToken}\r\nContent-Type: application/json\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{"name":"k-2"}`, status: 415, field: 'Content-Type' },
    { name: 'a bad percent-encoding over the wire', request: `GET /v1/routes/%E0%A4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${writeToken}\r\nConnection: close\r\n\r\n`, status: 400, field: 'name' },
  ];
  for (const c of cases) {
    const linesBefore = logLines.length;
    const raw = await rawExchange(port, c.request);
    const [head = '', body = ''] = raw.split('\r\n\r\n');
    assert.match(head, new RegExp(`^HTTP/1.1 ${c.status} `), `${c.name}: ${raw.slice(0, 200)}`);
    assert.match(head, /content-type: application\/problem\+json/i, c.name);
    const problem = JSON.parse(body) as { status: number; errors?: { path: string }[] };
    assert.equal(problem.status, c.status, c.name);
    assert.ok((problem.errors ?? []).some((e) => e.path === c.field), `${c.name}: ${body}`);
    assert.ok(logLines.slice(linesBefore).some((line) => line.status === c.status), `${c.name}: not logged`);
  }
  assert.equal(await currentRevision(), revision);
});

/** Sends raw bytes on a fresh loopback connection; resolves with everything read until the server closes. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' && chunks.length > 0 ? resolve(Buffer.concat(chunks).toString('latin1')) : reject(err)));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer in 10 s')));
    socket.end(Buffer.from(request, 'latin1'));
  });
}

test('"store unavailable" comes from error codes: a missing table is a logged 500, not a 503 because its message says "does not exist"', async () => {
  const bare = await createTestDatabase(); // no migrations: every table is missing
  const barePrisma = createPrisma(bare.url);
  const lines: Record<string, unknown>[] = [];
  const bareApp = buildAdminApp({
    store: new ConfigStore(barePrisma),
    prisma: barePrisma,
    registry: new NodeRegistry(),
    logger: createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }),
  });
  try {
    const res = await bareApp.inject({ method: 'GET', url: '/v1/routes', headers: { authorization: 'Bearer sat_anything' } });
    assert.equal(res.statusCode, 500, res.body);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.equal(res.json().detail, 'internal error', 'the cause is logged, not shown');
    const failure = lines.find((line) => line.level === 'error' && line.msg === 'admin request failed');
    assert.ok(failure, JSON.stringify(lines));
    const err = failure.err as { stack?: string; message?: string };
    assert.match(String(err.stack), /does not exist/);
    assert.ok(lines.some((line) => line.msg === 'admin request' && line.status === 500 && line.level === 'error'), 'access line at error level');
  } finally {
    await bareApp.close();
    await barePrisma.$disconnect();
    await bare.drop();
  }
});

test('Postgres hanging up mid-connection (pg raises a code-less "Connection terminated") is 503 store unavailable', async () => {
  // A loopback proxy in front of the real Postgres that, once cut, accepts and
  // immediately closes every connection: the one failure pg gives no code.
  const target = new URL(db.url);
  let cut = false;
  const open = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    client.on('error', () => {});
    if (cut) return void client.destroy();
    const upstreamSocket = net.connect(Number(target.port), '127.0.0.1');
    upstreamSocket.on('error', () => {});
    open.add(client).add(upstreamSocket);
    client.pipe(upstreamSocket).pipe(client);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const viaProxy = new URL(db.url);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String((proxy.address() as net.AddressInfo).port);
  const proxiedPrisma = createPrisma(viaProxy.toString());
  const proxiedApp = buildAdminApp({ store: new ConfigStore(proxiedPrisma), prisma: proxiedPrisma, registry: new NodeRegistry(), logger });
  try {
    const auth = { authorization: `Bearer ${writeToken}` };
    assert.equal((await proxiedApp.inject({ method: 'GET', url: '/v1/routes', headers: auth })).statusCode, 200);
    cut = true;
    for (const socket of open) socket.destroy();
    const res = await proxiedApp.inject({ method: 'POST', url: '/v1/consumers', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"name":"k-cut"}' });
    assert.equal(res.statusCode, 503, res.body);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.match(res.json().detail as string, /store unavailable/);
  } finally {
    await proxiedApp.close();
    await proxiedPrisma.$disconnect();
    await new Promise((resolve) => proxy.close(resolve));
  }
});

// The YAML parser recurses once per level: on this body it spends seconds of
// CPU and ~400 MB before giving up (and once ran the process out of memory
// in a probe here), so the depth cap must refuse it before the parser runs.
test('a 1 MiB YAML body of 250,000 nested brackets is refused by the depth cap before the YAML parser sees it', async () => {
  const defaultApp = buildAdminApp({ store, prisma, registry: new NodeRegistry(), logger }); // default 1 MiB body limit
  try {
    const res = await defaultApp.inject({
      method: 'POST',
      url: '/v1/config:validate',
      headers: { authorization: `Bearer ${writeToken}`, 'content-type': 'application/yaml' },
      payload: `routes: ${deepArrayText(250_000)}\n`,
    });
    assert.equal(res.statusCode, 400, res.body.slice(0, 300));
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    const problem = res.json() as { detail: string; errors?: { path: string }[] };
    assert.match(problem.detail, new RegExp(`nested deeper than ${MAX_JSON_DEPTH} levels`));
    assert.deepEqual(problem.errors?.map((e) => e.path), ['']);
    assert.ok(accessLine(String(res.headers['x-request-id'])));
  } finally {
    await defaultApp.close();
  }
});
