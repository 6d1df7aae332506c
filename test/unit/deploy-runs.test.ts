// What the deployment files reference, run for real without Docker (no engine
// on the test machines; issue 12, item 5): the image's start command (the
// Dockerfile's CMD) with the environment the Kubernetes manifest sets, its
// readiness endpoint, and the Envoy Deployment's bootstrap (the ConfigMap)
// with its arguments, validated by Envoy and then joining the control plane
// over mutual TLS with development certificates from scripts/dev-certs.sh.
//
// Differences from a cluster, all forced by running on one shared machine:
// listen addresses are loopback instead of 0.0.0.0 and the pod IP, ports are
// free ones instead of the defaults, and the xDS Service name is 127.0.0.1.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { readinessReport } from '../../control-plane/src/admin/health.ts';
import { ENVOY_BIN } from '../helpers/envoy.ts';
import { freePort, sleep } from '../helpers/net.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';
import { fetchVia } from '../helpers/upstream.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (file: string) => readFileSync(path.join(repoRoot, file), 'utf8');

interface EnvVar { name: string; value?: string; valueFrom?: unknown }
interface Container { command?: string[]; args?: string[]; env?: EnvVar[]; volumeMounts?: Array<{ name: string; mountPath: string }> }
interface Doc { kind: string; metadata: { name: string }; data?: Record<string, string>; spec?: { template?: { spec: { containers: Container[] } } } }

const docs = parseAllDocuments(read('deploy/kubernetes/sluice.yaml')).map((d) => d.toJS() as Doc);
const containerOf = (name: string): Container => {
  const container = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === name)?.spec?.template?.spec.containers[0];
  assert.ok(container, name);
  return container;
};

/** The Dockerfile's CMD (exec form). */
function imageCommand(): string[] {
  const cmd = read('Dockerfile').split('\n').filter((l) => /^CMD /.test(l)).at(-1);
  assert.ok(cmd);
  return JSON.parse(cmd.slice(4)) as string[];
}

const POD_NAME = 'sluice-envoy-7d9c5f-x2k4q';
let certs: string;
let db: TestDatabase;
let controlPlane: ChildProcess | undefined;
let envoy: ChildProcess | undefined;
let output = '';
const ports = { admin: 0, xds: 0, authz: 0, ratelimit: 0, gateway: 0, envoyAdmin: 0 };
const token = `deploy_${randomBytes(16).toString('hex')}`;

/** Polls `check` until it holds; fails after `ms`. */
async function until(check: () => Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${output.slice(-2000)}`);
    await sleep(100);
  }
}

const admin = (p: string, init: RequestInit = {}) => fetch(`http://127.0.0.1:${ports.admin}${p}`, { ...init, signal: AbortSignal.timeout(5_000) });

/** The manifest's container env, made runnable here (see the header). */
function manifestEnv(): Record<string, string> {
  const mounted: Record<string, string> = {
    '/etc/sluice/xds-tls/tls.crt': path.join(certs, 'server.crt'),
    '/etc/sluice/xds-tls/tls.key': path.join(certs, 'server.key'),
    '/etc/sluice/xds-tls/ca.crt': path.join(certs, 'ca.crt'),
  };
  const env: Record<string, string> = {};
  for (const variable of containerOf('sluice-control-plane').env ?? []) {
    if (variable.value === undefined) continue; // fieldRef (POD_IP): set below
    const value = variable.value.replace('$(POD_IP)', '127.0.0.1');
    env[variable.name] = mounted[value] ?? (value === '0.0.0.0' ? '127.0.0.1' : value);
  }
  return env;
}

before(async () => {
  certs = mkdtempSync(path.join(tmpdir(), 'sluice-deploy-certs-'));
  // Default server names include sluice-xds (the Service); the Envoys' shared identity is sluice-envoy.
  execFileSync('bash', [path.join(repoRoot, 'scripts/dev-certs.sh'), '--out', certs, 'sluice-envoy'], { stdio: 'ignore' });
  for (const key of Object.keys(ports) as Array<keyof typeof ports>) ports[key] = await freePort();
  db = await createTestDatabase();

  const [program, ...args] = imageCommand();
  assert.equal(program, 'node');
  controlPlane = spawn(process.execPath, args, {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      ...manifestEnv(),
      // The `sluice` Secret.
      DATABASE_URL: db.url,
      SLUICE_SECRET: randomBytes(32).toString('hex'),
      SLUICE_BOOTSTRAP_TOKEN: token,
      ADMIN_PORT: String(ports.admin),
      XDS_PORT: String(ports.xds),
      AUTHZ_PORT: String(ports.authz),
      RATELIMIT_PORT: String(ports.ratelimit),
      GATEWAY_PORT: String(ports.gateway),
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  controlPlane.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  controlPlane.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
});

after(async () => {
  for (const child of [envoy, controlPlane]) {
    if (!child || child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
  await db?.drop();
  await stopTestPostgres();
  rmSync(certs, { recursive: true, force: true });
});

describe('the image start command with the manifest environment', () => {
  test('starts; /readyz is 200 once the head revision is published, and follows new revisions', async () => {
    await until(async () => (await admin('/healthz')).ok, 'the admin API');
    let report: { ready: boolean; feed_connected: boolean; head_revision: number | null; published_revision: number | null } | undefined;
    await until(async () => {
      const res = await admin('/readyz');
      report = (await res.json()) as typeof report;
      return res.status === 200;
    }, '/readyz 200');
    assert.equal(report?.ready, true);
    assert.equal(report?.feed_connected, true);
    assert.equal(report?.published_revision, report?.head_revision);

    const created = await admin('/v1/upstreams', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'web', endpoints: [{ host: '127.0.0.1', port: 9 }] }),
    });
    assert.equal(created.status, 201);
    const revision = Number(created.headers.get('sluice-revision') ?? ((await created.json()) as { revision?: number }).revision);
    await until(async () => {
      const res = await admin('/readyz');
      const body = (await res.json()) as NonNullable<typeof report>;
      return res.status === 200 && body.head_revision === revision && body.published_revision === revision;
    }, 'ready at the new revision');
  });
});

describe('readiness: what makes a replica not ready', () => {
  const at = (feed: boolean, head: Promise<number>, published: number) => readinessReport({ feedConnected: () => feed, headRevision: () => head, publishedRevision: () => published });

  test('ready only when the feed is connected and the head revision is published', async () => {
    assert.equal((await at(true, Promise.resolve(4), 4)).ready, true);
    assert.equal((await at(true, Promise.resolve(5), 4)).ready, false, 'head not yet published');
    assert.equal((await at(false, Promise.resolve(4), 4)).ready, false, 'change feed disconnected');
    assert.deepEqual(await at(true, Promise.reject(new Error('postgres down')), 4), { ready: false, feed_connected: true, head_revision: null, published_revision: 4 });
    assert.equal((await readinessReport(undefined)).ready, false);
  });
});

describe("the Envoy Deployment's bootstrap (ConfigMap) with its arguments", () => {
  const envoyContainer = () => containerOf('sluice-envoy');
  /** The ConfigMap's bootstrap with the certificate mount pointed at the dev certificates. */
  const bootstrapText = () => {
    const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'sluice-envoy-bootstrap');
    let text = configMap?.data?.['bootstrap.yaml'];
    assert.ok(text);
    const mounted: Record<string, string> = {
      '/etc/sluice/certs/node.crt': path.join(certs, 'nodes/sluice-envoy.crt'),
      '/etc/sluice/certs/node.key': path.join(certs, 'nodes/sluice-envoy.key'),
      '/etc/sluice/certs/ca.crt': path.join(certs, 'ca.crt'),
    };
    for (const [from, to] of Object.entries(mounted)) {
      assert.ok(text.includes(from), `bootstrap names ${from}`);
      text = text.replaceAll(from, to);
    }
    return text;
  };
  const envoyArgs = (file: string) => (envoyContainer().args ?? []).map((a) => (a === '/etc/envoy/bootstrap.yaml' ? file : a.replace('$(POD_NAME)', POD_NAME)));

  test("passes Envoy's own validation (envoy --mode validate)", () => {
    const file = path.join(certs, 'bootstrap-validate.yaml');
    writeFileSync(file, bootstrapText());
    const out = execFileSync(ENVOY_BIN, ['--mode', 'validate', ...envoyArgs(file), '-l', 'error'], { encoding: 'utf8' });
    assert.match(out, /OK/);
  });

  test('an Envoy started from it joins over mutual TLS as its pod name and opens the gateway listener (its readiness probe)', async () => {
    await until(async () => (await admin('/readyz')).ok, 'control plane ready');
    // The Service name resolves to this machine; the SNI and SAN check stay `sluice-xds`.
    const bootstrap = parse(bootstrapText()) as Record<string, unknown>;
    const text = JSON.stringify(bootstrap)
      .replace('"address":"sluice-xds","port_value":18000', `"address":"127.0.0.1","port_value":${ports.xds}`)
      .replace('"port_value":9901', `"port_value":${ports.envoyAdmin}`);
    assert.ok(text.includes(`"port_value":${ports.xds}`) && text.includes('"sni":"sluice-xds"'));
    const file = path.join(certs, 'bootstrap-run.json');
    writeFileSync(file, text);
    envoy = spawn(ENVOY_BIN, [...envoyArgs(file), '-l', 'error'], { stdio: ['ignore', 'ignore', 'pipe'] });
    envoy.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));

    await until(async () => {
      const fleet = (await (await admin('/v1/fleet', { headers: { authorization: `Bearer ${token}` } })).json()) as { nodes: Array<{ node_id: string; authenticated: boolean; in_sync: boolean }> };
      const node = fleet.nodes.find((n) => n.node_id === POD_NAME);
      return node?.authenticated === true && node.in_sync;
    }, 'the Envoy in /v1/fleet, authenticated and in sync');
    // The readiness probe is a TCP connect to the listener: it answers (404: no routes yet).
    await until(async () => (await fetchVia(ports.gateway, '/', { timeoutMs: 1_000 })).status === 404, 'the gateway listener');
  });
});
