// Rollback through change-set history is exact at the Envoy: the listener,
// routes, clusters and endpoints Envoy holds after rolling back to revision R
// are the ones it held when R was live (its config_dump, minus the version
// labels and timestamps that name when it got them). Checkpoints every 4
// revisions, so R is rebuilt from a checkpoint plus change sets, and the
// rollback target spans creates, updates and deletes of several kinds.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startControlPlane, type ControlPlane } from '../helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

let db: TestDatabase;
let cp: ControlPlane;
let envoy: EnvoyHandle;

before(async () => {
  db = await createTestDatabase();
  cp = await startControlPlane({ databaseUrl: db.url, env: { SLUICE_REVISION_CHECKPOINT_EVERY: '4' } });
  envoy = await startEnvoy({ adsPort: cp.xdsPort, nodeId: 'rollback-1', nodeCluster: 'default' });
});

after(async () => {
  await envoy?.stop();
  await cp?.stop();
  await db?.drop();
  await stopTestPostgres();
});

/** What Envoy holds, without when it got it: version labels and update times dropped, sorted by name. */
async function heldConfig(): Promise<unknown> {
  const dump = await envoy.configDump('?include_eds');
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip).sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
    if (value === null || typeof value !== 'object') return value;
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (key === 'version_info' || key === 'last_updated') continue;
      out[key] = strip(item);
    }
    return out;
  };
  // The bootstrap part never changes; the dynamic parts are what Sluice sent.
  return strip(dump.configs.filter((c) => !String(c['@type']).includes('Bootstrap')));
}

async function write(method: string, path: string, body?: unknown): Promise<number> {
  const res = await cp.api(method, path.includes('?') ? `${path}&wait=applied` : `${path}?wait=applied`, body, method === 'PATCH' ? { 'content-type': 'application/merge-patch+json' } : {});
  assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  // A DELETE answers 204 without a body: the header says whether it was applied.
  const answer = (res.body ?? {}) as { applied?: boolean; revision?: number };
  assert.equal(answer.applied ?? res.headers.get('sluice-applied') === 'true', true, `${method} ${path} applied`);
  return answer.revision ?? 0;
}

test('rollback to a revision rebuilt from a checkpoint and change sets gives Envoy exactly the config it had then', async () => {
  await write('POST', '/v1/upstreams', { name: 'web', endpoints: [{ host: '127.0.0.1', port: 8081 }] });
  await write('POST', '/v1/upstreams', { name: 'api', endpoints: [{ host: '127.0.0.1', port: 8082 }, { host: '127.0.0.2', port: 8082, weight: 3 }] });
  for (let i = 0; i < 6; i++) await write('POST', '/v1/routes', { name: `r${i}`, match: { path: { prefix: `/r${i}` } }, action: { upstream: i % 2 ? 'web' : 'api' } });
  await write('POST', '/v1/rate-limit-policies', { name: 'slow', key: ['route'], limit: { requests: 5, per: 'second' } });
  const target = await write('PATCH', '/v1/routes/r1', { rate_limits: ['slow'], timeout_ms: 1500 });
  const atTarget = await heldConfig();

  // Move on: updates, deletes and creates across kinds, past several checkpoints.
  await write('PATCH', '/v1/upstreams/api', { endpoints: [{ host: '127.0.0.1', port: 9999 }] });
  await write('DELETE', '/v1/routes/r0');
  await write('PATCH', '/v1/routes/r1', { rate_limits: [] });
  await write('DELETE', '/v1/rate-limit-policies/slow');
  await write('POST', '/v1/upstreams', { name: 'extra', endpoints: [{ host: '127.0.0.1', port: 8083 }] });
  for (let i = 6; i < 12; i++) await write('POST', '/v1/routes', { name: `r${i}`, match: { path: { exact: `/x${i}` } }, action: { upstream: 'extra' } });
  assert.notDeepEqual(await heldConfig(), atTarget, 'the config moved on');

  const rolledBack = await write('POST', `/v1/revisions/${target}:rollback`);
  assert.ok(rolledBack > target);
  assert.deepEqual(await heldConfig(), atTarget, 'what Envoy holds after the rollback is what it held at the target revision');
});
