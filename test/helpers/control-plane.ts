// Runs the real control plane (control-plane/src/main.ts) as a child process,
// on free loopback ports, against a given database, with a known admin token.
// Killed on stop() and when the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, sleep } from './net.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export interface ControlPlane {
  adminUrl: string;
  xdsPort: number;
  gatewayPort: number;
  token: string;
  /** The control-plane process (for RSS readings in bench/). */
  pid: number;
  output(): string;
  /** Calls the admin API with the admin token; JSON in, parsed JSON out. */
  api(method: string, pathAndQuery: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; body: unknown }>;
  stop(): Promise<void>;
  /** SIGKILL: the process dies without cleaning up (a crashed replica). */
  kill(): Promise<void>;
}

/**
 * How production runs the control plane, after `node`: the compiled build
 * (scripts/build.sh), through its entry module (control-plane/src/start.ts says
 * why). scripts/start.sh, the Dockerfile's CMD and the Kubernetes manifest say
 * the same (test/e2e/compiled-start.test.ts, test/unit/runtime-env.test.ts check).
 */
export const COMPILED_COMMAND: readonly string[] = ['control-plane/dist/start.js'];

/**
 * `nodeArgs`: extra flags for the control plane's node (e.g. `--cpu-prof` when profiling a bench).
 * `compiled`: run the compiled build as production does (the caller builds it first: scripts/build.sh).
 */
export async function startControlPlane(opts: { databaseUrl: string; gatewayPort?: number; xdsPort?: number; token?: string; env?: Record<string, string>; nodeArgs?: string[]; compiled?: boolean }): Promise<ControlPlane> {
  const adminPort = await freePort();
  const xdsPort = opts.xdsPort ?? (await freePort());
  const gatewayPort = opts.gatewayPort ?? (await freePort());
  const authzPort = await freePort();
  const ratelimitPort = await freePort();
  // A second replica on the same database shares the first one's token (only the first creates it).
  const token = opts.token ?? `test_${randomBytes(24).toString('hex')}`;
  const entry = opts.compiled ? COMPILED_COMMAND : ['--import', 'tsx', 'control-plane/src/start.ts'];
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), ...entry], {
    cwd: repoRoot,
    env: {
      ...process.env,
      DATABASE_URL: opts.databaseUrl,
      ADMIN_HOST: '127.0.0.1',
      ADMIN_PORT: String(adminPort),
      XDS_HOST: '127.0.0.1',
      XDS_PORT: String(xdsPort),
      GATEWAY_ADDRESS: '127.0.0.1',
      GATEWAY_PORT: String(gatewayPort),
      AUTHZ_HOST: '127.0.0.1',
      AUTHZ_PORT: String(authzPort),
      RATELIMIT_HOST: '127.0.0.1',
      RATELIMIT_PORT: String(ratelimitPort),
      SLUICE_SECRET: randomBytes(32).toString('hex'),
      SLUICE_BOOTSTRAP_TOKEN: token,
      LOG_LEVEL: 'warn',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const adminUrl = `http://127.0.0.1:${adminPort}`;

  const api: ControlPlane['api'] = async (method, pathAndQuery, body, headers = {}) => {
    const res = await fetch(adminUrl + pathAndQuery, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, headers: res.headers, body: parsed };
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`control plane exited with ${child.exitCode}:\n${output}`);
    const ok = await fetch(`${adminUrl}/healthz`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`control plane did not start:\n${output}`);
    await sleep(100);
  }

  return {
    adminUrl,
    xdsPort,
    gatewayPort,
    token,
    pid: child.pid!,
    output: () => output,
    api,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      running.delete(child);
    },
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
      running.delete(child);
    },
  };
}
