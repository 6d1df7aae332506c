// Issue 11 items 3 and 4 through a real Envoy: the gateway listener writes one
// JSON access-log line per request (route, status, path without its query,
// request id and traceparent as the upstream saw them, no credentials), and
// every request reaches its upstream with an x-request-id and a W3C traceparent
// (generated when the client sent none, the client's trace continued when it did).
// Item 1's endpoint: GET /metrics on the admin API, open or token-guarded per
// deployment, showing the real Envoy's ADS stream.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../../control-plane/src/admin/app.ts';
import { createAdminToken } from '../../control-plane/src/admin/tokens.ts';
import { ConfigStore } from '../../control-plane/src/store/config-store.ts';
import { migrate } from '../../control-plane/src/store/migrate.ts';
import { createPrisma, type PrismaClient } from '../../control-plane/src/store/prisma.ts';
import { ControlPlaneMetrics } from '../../control-plane/src/telemetry/index.ts';
import { ACCESS_LOG_FIELDS } from '../../control-plane/src/translate/index.ts';
import { startGateway, type Gateway } from '../helpers/gateway.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';
import { sleep } from '../helpers/net.ts';
import { fetchVia, startHttpUpstream, type EchoBody, type HttpUpstream } from '../helpers/upstream.ts';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

let dir: string;
let logPath: string;
let gw: Gateway;
let echo: HttpUpstream;
let port: number;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-observability-'));
  logPath = path.join(dir, 'access.log');
  echo = await startHttpUpstream({ name: 'echo' });
  gw = await startGateway({
    // Envoy writes access-log files out every 10 s by default; 100 ms keeps the test short.
    envoys: [{ nodeId: 'obs', extraArgs: ['--file-flush-interval-msec', '100'] }],
    translateOptions: { accessLog: { to: 'file', path: logPath } },
  });
  await gw.apply({
    revision: 1,
    upstreams: [{ name: 'echo', endpoints: [{ host: '127.0.0.1', port: echo.port }] }],
    routes: [
      { name: 'teapot', match: { path: { exact: '/teapot' } }, action: { direct_response: { status: 418, body: 'short and stout' } } },
      { name: 'echo-route', match: { path: { prefix: '/' } }, action: { upstream: 'echo' } },
    ],
  });
  port = gw.envoys[0]!.port;
});

after(async () => {
  await gw?.stop();
  await echo?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type LogLine = Record<string, unknown>;

/** Access-log lines whose request id is `requestId` (Envoy flushes the file about once a second). */
async function linesFor(requestId: string): Promise<LogLine[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const lines = existsSync(logPath)
      ? readFileSync(logPath, 'utf8')
          .split('\n')
          .filter((l) => l.length > 0)
          .map((l) => JSON.parse(l) as LogLine)
      : [];
    const mine = lines.filter((l) => l.request_id === requestId);
    if (mine.length > 0 || Date.now() > deadline) return mine;
    await sleep(100);
  }
}

async function echoed(pathAndQuery: string, headers: Record<string, string> = {}): Promise<{ status: number; body: EchoBody; responseId: string | undefined }> {
  const res = await fetchVia(port, pathAndQuery, { headers });
  return { status: res.status, body: JSON.parse(res.body) as EchoBody, responseId: header(res.headers['x-request-id']) };
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

describe('trace context', () => {
  test('a request without trace headers reaches the upstream with a generated x-request-id and traceparent', async () => {
    const { status, body, responseId } = await echoed('/plain');
    assert.equal(status, 200);
    const requestId = header(body.headers['x-request-id']);
    assert.match(requestId ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(responseId, requestId, 'the client gets the same x-request-id back');
    const match = TRACEPARENT.exec(header(body.headers.traceparent) ?? '');
    assert.ok(match, `traceparent ${String(body.headers.traceparent)} is W3C`);
    assert.notEqual(match[1], '0'.repeat(32), 'the trace id is not the invalid all-zero id');
    assert.notEqual(match[2], '0'.repeat(16), 'the parent id is not the invalid all-zero id');
  });

  test("a client's traceparent is continued: same trace id and sampled flag, Envoy's span as the parent", async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const clientParent = '00f067aa0ba902b7';
    for (const flags of ['01', '00']) {
      const { body } = await echoed('/continued', { traceparent: `00-${traceId}-${clientParent}-${flags}` });
      const match = TRACEPARENT.exec(header(body.headers.traceparent) ?? '');
      assert.ok(match, `traceparent ${String(body.headers.traceparent)} is W3C`);
      assert.equal(match[1], traceId);
      assert.notEqual(match[2], clientParent, 'Envoy takes part in the trace with its own span id');
      assert.equal(match[3], flags);
    }
  });

  test('two requests get different request ids and trace ids', async () => {
    const a = await echoed('/one');
    const b = await echoed('/two');
    assert.notEqual(a.body.headers['x-request-id'], b.body.headers['x-request-id']);
    assert.notEqual(TRACEPARENT.exec(String(a.body.headers.traceparent))?.[1], TRACEPARENT.exec(String(b.body.headers.traceparent))?.[1]);
  });
});

describe('access log', () => {
  test('a proxied request writes one line with its route, status, path without the query, and ids the upstream saw', async () => {
    const { body } = await echoed('/items/42?api_key=secret-in-query&page=2', { authorization: 'Bearer token-never-logged', cookie: 'session=cookie-never-logged' });
    const requestId = String(body.headers['x-request-id']);
    const lines = await linesFor(requestId);
    assert.equal(lines.length, 1, 'exactly one line per request');
    const line = lines[0]!;
    assert.deepEqual(Object.keys(line).sort(), Object.keys(ACCESS_LOG_FIELDS).sort(), 'the documented field set, no more');
    assert.equal(line.route, 'echo-route');
    assert.equal(line.status, 200);
    assert.equal(line.method, 'GET');
    assert.equal(line.path, '/items/42');
    assert.equal(line.traceparent, body.headers.traceparent, 'the traceparent the upstream received');
    assert.equal(line.upstream_host, `127.0.0.1:${echo.port}`);
    assert.equal(typeof line.upstream_cluster, 'string');
    assert.equal(line.consumer, null, 'anonymous request');
    assert.equal(typeof line.duration_ms, 'number');
    assert.equal(typeof line.bytes_sent, 'number');
    assert.ok((line.bytes_sent as number) > 0);
    assert.match(String(line.start_time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const raw = readFileSync(logPath, 'utf8');
    for (const secret of ['secret-in-query', 'token-never-logged', 'cookie-never-logged']) {
      assert.ok(!raw.includes(secret), `the access log never holds ${secret}`);
    }
  });

  test('a direct response is logged with its own route and status and no upstream', async () => {
    const res = await fetchVia(port, '/teapot?x=1');
    assert.equal(res.status, 418);
    const requestId = header(res.headers['x-request-id']);
    assert.ok(requestId, 'x-request-id is set on direct responses too');
    const [line] = await linesFor(requestId);
    assert.ok(line, 'a line for the direct response');
    assert.equal(line.route, 'teapot');
    assert.equal(line.status, 418);
    assert.equal(line.path, '/teapot');
    assert.equal(line.upstream_host, null);
    assert.equal(line.upstream_service_time_ms, null);
  });
});

describe('GET /metrics on the admin API', () => {
  let db: TestDatabase;
  let prisma: PrismaClient;
  let guarded: FastifyInstance;
  let open: FastifyInstance;
  let guardedMetrics: ControlPlaneMetrics;
  let readToken: string;

  before(async () => {
    db = await createTestDatabase();
    await migrate(db.url);
    prisma = createPrisma(db.url);
    const store = new ConfigStore(prisma);
    guardedMetrics = new ControlPlaneMetrics({ fleet: gw.registry });
    guarded = buildAdminApp({ store, prisma, registry: gw.registry, metrics: { metrics: guardedMetrics, public: false } });
    open = buildAdminApp({ store, prisma, registry: gw.registry, metrics: { metrics: new ControlPlaneMetrics({ fleet: gw.registry, processMetrics: false }), public: true } });
    readToken = (await createAdminToken(prisma, 'scraper', 'read')).token;
  });

  after(async () => {
    await guarded?.close();
    await open?.close();
    await prisma?.$disconnect();
    await db?.drop();
    await stopTestPostgres();
  });

  test('without METRICS_PUBLIC off loopback, a token is needed; a read token is enough', async () => {
    const anonymous = await guarded.inject({ method: 'GET', url: '/metrics' });
    assert.equal(anonymous.statusCode, 401);
    assert.match(String(anonymous.headers['content-type']), /application\/problem\+json/);
    const res = await guarded.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${readToken}` } });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const lines = res.body.split('\n');
    assert.ok(lines.includes('sluice_xds_streams{protocol="sotw",group="gw-obs"} 1'), 'the real Envoy\'s stream is counted');
    assert.ok(lines.some((l) => l.startsWith('process_resident_memory_bytes ')), 'process metrics');
    const counted = (await guardedMetrics.adminRequests.get()).values;
    assert.ok(counted.some((v) => v.labels.route === '/metrics' && String(v.labels.status) === '401' && v.value === 1), 'the refused scrape is counted');
    assert.ok(!res.body.includes(readToken), 'no token in the exposition');
  });

  test('when public (loopback admin API or METRICS_PUBLIC=true), no token is needed', async () => {
    const res = await open.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.ok(res.body.split('\n').includes('sluice_xds_streams{protocol="sotw",group="gw-obs"} 1'));
    const write = await open.inject({ method: 'POST', url: '/metrics' });
    assert.notEqual(write.statusCode, 200, 'only reads are public');
  });
});
