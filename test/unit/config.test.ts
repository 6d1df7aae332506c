import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig, repoRoot } from '../../control-plane/src/config/env.ts';
import { configError } from '../helpers/config-error.ts';


describe('loadConfig', () => {
  test('gateway edge limits: read, and out-of-range values named', () => {
    const config = loadConfig({ GATEWAY_REQUEST_HEADERS_TIMEOUT_MS: '2000', GATEWAY_XFF_TRUSTED_HOPS: '1', GATEWAY_MAX_REQUEST_HEADERS_KB: '96' });
    assert.equal(config.gatewayEdge.requestHeadersTimeoutMs, 2000);
    assert.equal(config.gatewayEdge.xffTrustedHops, 1);
    assert.equal(config.gatewayEdge.maxRequestHeadersKb, 96);
    assert.equal(config.gatewayEdge.http2MaxConcurrentStreams, undefined);
    const message = configError({ GATEWAY_MAX_REQUEST_HEADERS_KB: '9000', GATEWAY_HTTP2_STREAM_WINDOW_BYTES: '1024', GATEWAY_XFF_TRUSTED_HOPS: '-1' });
    assert.match(message, /GATEWAY_MAX_REQUEST_HEADERS_KB: expected an integer 1-8192/);
    assert.match(message, /GATEWAY_HTTP2_STREAM_WINDOW_BYTES: expected an integer 65535-2147483647/);
    assert.match(message, /GATEWAY_XFF_TRUSTED_HOPS: expected an integer 0-16/);
  });

  test('defaults', () => {
    assert.deepEqual(loadConfig({}), {
      databaseUrl: undefined,
      dataDir: path.join(repoRoot, '.data'),
      postgresPort: undefined,
      adminHost: '127.0.0.1',
      adminPort: 9080,
      xdsHost: '127.0.0.1',
      xdsPort: 18000,
      gatewayAddress: '0.0.0.0',
      gatewayPort: 10000,
      gatewayEdge: {
        requestHeadersTimeoutMs: undefined,
        streamIdleTimeoutMs: undefined,
        requestTimeoutMs: undefined,
        connectionIdleTimeoutMs: undefined,
        maxRequestHeadersKb: undefined,
        perConnectionBufferLimitBytes: undefined,
        http2MaxConcurrentStreams: undefined,
        http2InitialStreamWindowBytes: undefined,
        http2InitialConnectionWindowBytes: undefined,
        xffTrustedHops: undefined,
      },
      bootstrapToken: undefined,
      authzHost: '127.0.0.1',
      authzPort: 9191,
      authzAdvertise: { host: undefined, port: undefined },
      authzTimeoutMs: 500,
      ratelimitHost: '127.0.0.1',
      ratelimitPort: 8081,
      ratelimitAdvertise: { host: undefined, port: undefined },
      ratelimitTimeoutMs: 500,
      redisUrl: undefined,
      secret: undefined,
      logLevel: 'info',
      gatewayAccessLog: { to: 'stdout' },
      otlpCollector: undefined,
      traceSamplingPercent: undefined,
      routeStats: 'all',
      metricsPublic: false,
      serverTiming: false,
      revisionHistory: {
        checkpointEveryRevisions: 100,
        checkpointEveryBytes: 5 * 1024 * 1024,
        retainRevisions: 1000,
        retainMs: 30 * 24 * 3_600_000,
        auditRetainMs: 365 * 24 * 3_600_000,
      },
      xdsTls: undefined,
      xdsMaxReceiveBytes: 4 * 1024 * 1024,
    });
  });

  test('reads every variable', () => {
    const secret = 's'.repeat(32);
    const config = loadConfig({
      DATABASE_URL: 'postgres://u:p@db:5432/sluice',
      SLUICE_DATA_DIR: '/var/lib/sluice',
      SLUICE_PG_PORT: '55432',
      ADMIN_HOST: '0.0.0.0',
      ADMIN_PORT: '8000',
      XDS_HOST: '::',
      XDS_PORT: '18001',
      AUTHZ_PORT: '9192',
      RATELIMIT_PORT: '8082',
      REDIS_URL: 'redis://localhost:6379/0',
      SLUICE_SECRET: secret,
      LOG_LEVEL: 'DEBUG',
    });
    assert.equal(config.databaseUrl, 'postgres://u:p@db:5432/sluice');
    assert.equal(config.dataDir, '/var/lib/sluice');
    assert.equal(config.postgresPort, 55432);
    assert.equal(config.adminHost, '0.0.0.0');
    assert.equal(config.adminPort, 8000);
    assert.equal(config.xdsHost, '::');
    assert.equal(config.xdsPort, 18001);
    assert.equal(config.authzPort, 9192);
    assert.equal(config.ratelimitPort, 8082);
    assert.equal(config.redisUrl, 'redis://localhost:6379/0');
    assert.equal(config.secret, secret);
    assert.equal(config.logLevel, 'debug');
  });

  test('empty values count as unset; relative data dir resolves against cwd', () => {
    const config = loadConfig({ DATABASE_URL: '', ADMIN_PORT: '', SLUICE_DATA_DIR: 'tmp/data' });
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.adminPort, 9080);
    assert.equal(config.dataDir, path.resolve('tmp/data'));
  });

  test('a bad port names the variable, the expectation and the value', () => {
    assert.equal(configError({ ADMIN_PORT: 'abc' }), 'ADMIN_PORT: expected an integer port 1-65535, got "abc"');
    for (const bad of ['0', '65536', '-1', '80.5', ' 80']) {
      assert.match(configError({ XDS_PORT: bad }), /^XDS_PORT: expected an integer port 1-65535/);
    }
  });

  test('reports every bad variable at once', () => {
    const message = configError({ ADMIN_PORT: 'abc', RATELIMIT_PORT: '99999', LOG_LEVEL: 'loud', ADMIN_HOST: 'a b' });
    const lines = message.split('\n');
    assert.equal(lines.length, 4);
    assert.ok(lines.some((l) => l.startsWith('ADMIN_PORT: ')));
    assert.ok(lines.some((l) => l.startsWith('RATELIMIT_PORT: ')));
    assert.ok(lines.some((l) => l.startsWith('LOG_LEVEL: expected one of fatal, error, warn, info')));
    assert.ok(lines.some((l) => l.startsWith('ADMIN_HOST: ')));
  });

  test('secrets and URLs are validated but never echoed', () => {
    const short = 'tooshort-secret';
    const message = configError({ SLUICE_SECRET: short, DATABASE_URL: 'mysql://root:hunter2@db/x', REDIS_URL: 'http://x' });
    assert.match(message, /SLUICE_SECRET: expected at least 32 characters/);
    assert.match(message, /DATABASE_URL: expected a Postgres URL/);
    assert.match(message, /REDIS_URL: expected a Redis URL/);
    assert.ok(!message.includes(short));
    assert.ok(!message.includes('hunter2'));
  });
});

describe('config/check.ts', () => {
  const check = path.join(repoRoot, 'control-plane/src/config/check.ts');
  // The child gets our environment minus anything that would change the outcome.
  const baseEnv = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(ADMIN_|XDS_|AUTHZ_|RATELIMIT_|LOG_LEVEL|SLUICE_|DATABASE_URL|REDIS_URL)/.test(k)),
  );
  const run = (env: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, ['--import', 'tsx', check], { cwd: repoRoot, env: { ...baseEnv, ...env }, encoding: 'utf8' });

  test('valid environment prints "config ok"', () => {
    const result = run({});
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, 'config ok\n');
  });

  test('ADMIN_PORT=abc exits 2 naming ADMIN_PORT', () => {
    const result = run({ ADMIN_PORT: 'abc' });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /ADMIN_PORT: expected an integer port 1-65535, got "abc"/);
    assert.equal(result.stdout, '');
  });
});
