// Starts real Envoy processes for tests (the pinned binary from envoy/install.sh)
// against an ADS server, and talks to their admin API. Every Envoy started here
// is killed when this process exits, is interrupted, or crashes.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { adsBootstrap, type AdsTlsFiles, type MetricsSinkOptions } from '../../envoy/bootstrap.ts';
import { freePort, sleep } from './net.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The pinned Envoy binary; SLUICE_ENVOY_BIN overrides it. */
export const ENVOY_BIN = process.env.SLUICE_ENVOY_BIN ?? path.join(repoRoot, 'envoy/.install/envoy/_bin/envoy');

export interface StartEnvoyOptions {
  adsPort: number;
  adsHost?: string;
  /** Further control-plane replicas the xds cluster lists (envoy/bootstrap.ts adsReplicas). */
  adsReplicas?: Array<{ host: string; port: number }>;
  nodeId?: string;
  nodeCluster?: string;
  delta?: boolean;
  /** Mutual TLS to the ADS server (certificate files); plaintext when absent. */
  tls?: AdsTlsFiles;
  /** Stats to the control plane's metrics service (bootstrap default: on, every 5 s). */
  metricsSink?: false | MetricsSinkOptions;
  /** Envoy log level (default `warning`). */
  logLevel?: string;
  /** Worker threads (default 1, light for tests; deploy/ and `npm start` run 2). */
  concurrency?: number;
  extraArgs?: string[];
  /** How long to wait for the admin API to answer (default 15 s). */
  startTimeoutMs?: number;
}

export interface AdminResponse {
  status: number;
  body: string;
}

/** /config_dump: one entry per config kind, each tagged with its `@type`. */
export interface ConfigDump {
  configs: Array<{ '@type': string; [key: string]: unknown }>;
}

export interface ListenerStatus {
  name: string;
  local_address?: { socket_address?: { address?: string; port_value?: number } };
}

export interface ClusterStatus {
  name: string;
  host_statuses?: Array<{
    address?: { socket_address?: { address?: string; port_value?: number } };
    health_status?: { eds_health_status?: string };
  }>;
  [key: string]: unknown;
}

export interface EnvoyHandle {
  pid: number;
  nodeId: string;
  adminPort: number;
  adminUrl: string;
  /** Temp folder holding the bootstrap and log; removed by stop() unless SLUICE_KEEP_ENVOY_LOGS is set. */
  dir: string;
  logFile: string;
  admin(pathAndQuery: string, method?: string): Promise<AdminResponse>;
  configDump(query?: string): Promise<ConfigDump>;
  /** Counters and gauges by name (histograms left out); `filter` is Envoy's regex filter. */
  stats(filter?: string): Promise<Record<string, number>>;
  clusters(): Promise<ClusterStatus[]>;
  listeners(): Promise<ListenerStatus[]>;
  /** Bound port of the named listener (or the first one). */
  listenerPort(name?: string): Promise<number>;
  /** Resolves once /ready answers 200 (with ADS: after the initial LDS/CDS arrived). */
  waitReady(timeoutMs?: number): Promise<void>;
  /** Polls `predicate` (errors count as false) until true or the timeout. */
  waitFor(predicate: (envoy: EnvoyHandle) => boolean | Promise<boolean>, timeoutMs?: number, what?: string): Promise<void>;
  /** Last lines of Envoy's log, for failure messages. */
  logTail(lines?: number): string;
  readonly exited: boolean;
  stop(graceMs?: number): Promise<void>;
}

// ---- registry: no Envoy outlives the process that started it -------------

/** Running Envoys and their temp folders. */
const running = new Map<ChildProcess, string>();
let hooksInstalled = false;

function killAllNow(): void {
  for (const [child, dir] of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
    if (!process.env.SLUICE_KEEP_ENVOY_LOGS) rmSync(dir, { recursive: true, force: true });
  }
  running.clear();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllNow();
      // Our listener replaced Node's default "exit on signal"; if nobody else
      // handles it, restore the default and re-raise so the exit status is right.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
  // The monitor does not change crash behaviour. If another handler (node:test's)
  // keeps the process alive, the 'exit' hook cleans up later instead.
  process.on('uncaughtExceptionMonitor', () => {
    if (process.listenerCount('uncaughtException') === 0) killAllNow();
  });
}

// ---- admin API -----------------------------------------------------------

function adminRequest(port: number, pathAndQuery: string, method = 'GET'): Promise<AdminResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: pathAndQuery, method, agent: false, timeout: 3_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`admin ${pathAndQuery}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

async function adminJson<T>(port: number, pathAndQuery: string): Promise<T> {
  const res = await adminRequest(port, pathAndQuery);
  if (res.status !== 200) throw new Error(`admin ${pathAndQuery}: HTTP ${res.status}: ${res.body.slice(0, 300)}`);
  return JSON.parse(res.body) as T;
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines - 1).join('\n');
  } catch {
    return '(no log)';
  }
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

// ---- start ---------------------------------------------------------------

let instances = 0;

export async function startEnvoy(opts: StartEnvoyOptions): Promise<EnvoyHandle> {
  if (!existsSync(ENVOY_BIN)) throw new Error(`no Envoy at ${ENVOY_BIN}; run: bash envoy/install.sh`);
  installExitHooks();
  instances += 1;
  const nodeId = opts.nodeId ?? `test-envoy-${process.pid}-${instances}`;
  // The admin port comes from freePort(), which can race with another process:
  // if Envoy dies during start-up, try again with a fresh port.
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(opts, nodeId);
    } catch (err) {
      lastError = err as Error;
      // The thrown message carries Envoy's log tail: retry only a lost port race.
      if (!/exited during start-up[\s\S]*cannot bind/.test(lastError.message)) break;
    }
  }
  throw lastError ?? new Error('startEnvoy failed');
}

async function startOnce(opts: StartEnvoyOptions, nodeId: string): Promise<EnvoyHandle> {
  const adminPort = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-envoy-'));
  const configFile = path.join(dir, 'bootstrap.json');
  const logFile = path.join(dir, 'envoy.log');
  const bootstrap = adsBootstrap({
    nodeId,
    nodeCluster: opts.nodeCluster ?? 'sluice-test',
    adsHost: opts.adsHost ?? '127.0.0.1',
    adsPort: opts.adsPort,
    adsReplicas: opts.adsReplicas,
    adminPort,
    delta: opts.delta,
    tls: opts.tls,
    metricsSink: opts.metricsSink,
  });
  writeFileSync(configFile, JSON.stringify(bootstrap, null, 2));

  const args = [
    '-c', configFile,
    '--concurrency', String(opts.concurrency ?? 1),
    // No shared memory at all, so parallel Envoys never collide on a base id.
    '--disable-hot-restart',
    // Removed/changed listeners drain for 1 s instead of 10 min.
    '--drain-time-s', '1',
    '-l', opts.logLevel ?? 'warning',
    ...(opts.extraArgs ?? []),
  ];
  // Envoy logs to stderr; we send that to a file rather than using --log-path,
  // whose file sink is flushed only every few seconds (log tails came up empty).
  const logFd = openSync(logFile, 'a');
  const child = spawn(ENVOY_BIN, args, { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let spawnError: Error | undefined;
  child.on('error', (err) => (spawnError = err)); // e.g. EACCES; unhandled it would crash the test process
  const pid = child.pid;
  if (pid === undefined) throw new Error(`Envoy did not spawn: ${spawnError?.message ?? 'no pid'}`);
  running.set(child, dir);
  child.once('exit', () => running.delete(child));

  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const logTail = (lines = 30): string => tail(logFile, lines);

  const stop = async (graceMs = 3_000): Promise<void> => {
    if (!(await waitExit(child, 0))) {
      child.kill('SIGTERM');
      if (!(await waitExit(child, graceMs))) {
        child.kill('SIGKILL');
        await waitExit(child, 5_000);
      }
    }
    running.delete(child);
    // SLUICE_KEEP_ENVOY_LOGS=1 keeps bootstrap and log for a post-mortem.
    if (!process.env.SLUICE_KEEP_ENVOY_LOGS) rmSync(dir, { recursive: true, force: true });
  };

  const handle: EnvoyHandle = {
    pid,
    nodeId,
    adminPort,
    adminUrl,
    dir,
    logFile,
    admin: (p, method) => adminRequest(adminPort, p, method),
    configDump: (query = '') => adminJson<ConfigDump>(adminPort, `/config_dump${query ? `?${query}` : ''}`),
    async stats(filter) {
      const q = filter ? `&filter=${encodeURIComponent(filter)}` : '';
      const body = await adminJson<{ stats: Array<{ name?: string; value?: number }> }>(adminPort, `/stats?format=json${q}`);
      const out: Record<string, number> = {};
      for (const s of body.stats) if (s.name !== undefined && typeof s.value === 'number') out[s.name] = s.value;
      return out;
    },
    async clusters() {
      const body = await adminJson<{ cluster_statuses?: ClusterStatus[] }>(adminPort, '/clusters?format=json');
      return body.cluster_statuses ?? [];
    },
    async listeners() {
      const body = await adminJson<{ listener_statuses?: ListenerStatus[] }>(adminPort, '/listeners?format=json');
      return body.listener_statuses ?? [];
    },
    async listenerPort(name) {
      const all = await handle.listeners();
      const listener = name === undefined ? all[0] : all.find((l) => l.name === name);
      const port = listener?.local_address?.socket_address?.port_value;
      if (port === undefined) throw new Error(`no listener ${name ?? '(any)'} on ${nodeId}`);
      return port;
    },
    waitReady: (timeoutMs = 15_000) =>
      handle.waitFor(async () => (await adminRequest(adminPort, '/ready')).status === 200, timeoutMs, '/ready 200'),
    async waitFor(predicate, timeoutMs = 10_000, what = 'condition') {
      const deadline = Date.now() + timeoutMs;
      let lastErr: unknown;
      for (;;) {
        if (handle.exited) throw new Error(`Envoy ${nodeId} exited while waiting for ${what}\n${logTail()}`);
        try {
          if (await predicate(handle)) return;
        } catch (err) {
          lastErr = err;
        }
        if (Date.now() >= deadline) break;
        await sleep(50);
      }
      const why = lastErr instanceof Error ? ` (last error: ${lastErr.message})` : '';
      throw new Error(`Envoy ${nodeId}: timed out after ${timeoutMs} ms waiting for ${what}${why}\n${logTail()}`);
    },
    logTail,
    get exited() {
      return child.exitCode !== null || child.signalCode !== null;
    },
    stop,
  };

  // Start-up is done once the admin API answers at all; /ready may stay 503
  // until the control plane has sent the initial listeners and clusters.
  const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000);
  for (;;) {
    if (handle.exited) {
      const log = logTail();
      await stop();
      throw new Error(`Envoy exited during start-up (code ${child.exitCode}, signal ${child.signalCode})\n${log}`);
    }
    try {
      await adminRequest(adminPort, '/server_info');
      return handle;
    } catch {
      // not listening yet
    }
    if (Date.now() >= deadline) {
      const log = logTail();
      await stop();
      throw new Error(`Envoy admin did not answer within ${opts.startTimeoutMs ?? 15_000} ms\n${log}`);
    }
    await sleep(50);
  }
}
