// The compiled build (scripts/build.sh: control-plane/src -> control-plane/dist)
// is what production runs (scripts/start.sh, the Dockerfile's CMD): it must find
// everything the TypeScript finds through tsx (migrations, the proto folders,
// the generated Prisma Client, the request-path worker's entry). Built once in
// before() (a no-op when the build is fresh), then started against a real
// Postgres with a real Envoy in front of a real upstream.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { COMPILED_COMMAND, startControlPlane, type ControlPlane } from '../helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { sleep } from '../helpers/net.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';
import { fetchVia, startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (file: string) => readFileSync(path.join(repoRoot, file), 'utf8');

let db: TestDatabase;
let cp: ControlPlane;
let envoy: EnvoyHandle | undefined;
let upstream: HttpUpstream;

before(async () => {
  execFileSync('bash', [path.join(repoRoot, 'scripts/build.sh'), '--if-stale'], { stdio: 'inherit' });
  db = await createTestDatabase();
  cp = await startControlPlane({ databaseUrl: db.url, compiled: true });
  upstream = await startHttpUpstream({ name: 'api' });
});

after(async () => {
  await envoy?.stop();
  await cp?.stop();
  await upstream?.close();
  await db?.drop();
  await stopTestPostgres();
});

test('the compiled control plane runs without tsx: /healthz, /readyz and an admin write and read', async () => {
  const argv = readFileSync(`/proc/${cp.pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  assert.deepEqual(argv.slice(1), COMPILED_COMMAND, 'started as production starts it');
  assert.ok(!argv.some((a) => a.includes('tsx')), `no TypeScript loader: ${argv.join(' ')}`);

  assert.equal((await fetch(`${cp.adminUrl}/healthz`)).status, 200);
  // Migrations ran (the tables exist) and the Prisma Client answers: a write, then a read.
  const created = await cp.api('POST', '/v1/upstreams', { name: 'api', endpoints: [{ host: '127.0.0.1', port: upstream.port }] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const fetched = await cp.api('GET', '/v1/upstreams/api');
  assert.equal(fetched.status, 200);
  assert.equal((fetched.body as { spec: { endpoints: Array<{ port: number }> } }).spec.endpoints[0]?.port, upstream.port);
  // Ready once the head revision is published (translation needs the proto folders).
  let ready = 0;
  for (let i = 0; i < 100 && ready !== 200; i++) {
    ready = (await fetch(`${cp.adminUrl}/readyz`)).status;
    if (ready !== 200) await sleep(100);
  }
  assert.equal(ready, 200, '/readyz');
});

test('a real Envoy serves a route from the compiled build; the request-path worker checks its API key', async () => {
  envoy = await startEnvoy({ adsPort: cp.xdsPort, nodeId: 'compiled-1', nodeCluster: 'default' });
  const existing = await cp.api('POST', '/v1/upstreams', { name: 'api', endpoints: [{ host: '127.0.0.1', port: upstream.port }] });
  assert.ok([201, 409].includes(existing.status), 'created here, or by the first test');
  for (const [url, body] of [
    ['/v1/consumers', { name: 'acme' }],
    ['/v1/routes', { name: 'keyed', match: { path: { prefix: '/keyed' } }, action: { upstream: 'api' }, auth: { mode: 'api_key' } }],
  ] as const) {
    const res = await cp.api('POST', url, body);
    assert.equal(res.status, 201, `${url}: ${JSON.stringify(res.body)}`);
  }
  const credential = await cp.api('POST', '/v1/credentials?wait=applied', { name: 'acme-key', consumer: 'acme', kind: 'api_key' });
  assert.equal(credential.status, 201, JSON.stringify(credential.body));
  assert.equal((credential.body as { applied?: boolean }).applied, true, 'the Envoy ACKed the revision');
  const key = String((credential.body as { key: string }).key);

  const get = (headers: Record<string, string>) => fetchVia(cp.gatewayPort, '/keyed', { headers, timeoutMs: 2_000 });
  // Bounded wait (10 s) for Envoy's first connection to the authz service.
  let allowed = await get({ 'x-api-key': key });
  for (let i = 0; i < 500 && allowed.status !== 200; i++) {
    await sleep(20);
    allowed = await get({ 'x-api-key': key });
  }
  assert.equal(allowed.status, 200, `with the key: ${allowed.body}`);
  assert.equal((await get({})).status, 401, 'without a key: refused by the worker-thread authz service');
});

test('production starts the compiled build: scripts/start.sh, the Dockerfile and the Kubernetes manifest say the same command', () => {
  const production = ['node', ...COMPILED_COMMAND];
  const cmd = read('Dockerfile').split('\n').filter((l) => /^CMD /.test(l)).at(-1);
  assert.ok(cmd, 'Dockerfile has a CMD');
  assert.deepEqual(JSON.parse(cmd.slice(4)), production, "the Dockerfile's CMD");
  assert.ok(read('scripts/start.sh').split('\n').some((l) => l.trim().startsWith(`${production.join(' ')} `)), 'scripts/start.sh runs it');
  const manifest = read('deploy/kubernetes/sluice.yaml');
  assert.ok(manifest.includes(`command: ${JSON.stringify(production).replaceAll(',', ', ')}`), 'the manifest spells out the same command');
  assert.ok(read('.gitignore').split('\n').includes('dist/'), 'the build output is not committed');
});
