// The constant-rate load generators the latency benches drive (built by
// bench/setup.sh into bench/.tools/bin), and the few statistics the benches
// report. A run is one child process at a fixed rate for a bounded time; its
// report is parsed into milliseconds.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
export const TOOLS_BIN = process.env.SLUICE_BENCH_TOOLS ?? path.join(benchDir, '.tools/bin');

/** Absolute path of a tool built by bench/setup.sh; throws with the fix when missing. */
export function tool(name: 'vegeta' | 'ghz' | 'ratelimit' | 'gcp-anchor' | 'authz-floor'): string {
  const file = path.join(TOOLS_BIN, name);
  if (!existsSync(file)) throw new Error(`${file} is missing; run: bash bench/setup.sh`);
  return file;
}

/** Runs a command to completion; rejects with its stderr on a non-zero exit. */
export function run(command: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new Error(`${path.basename(command)} ${args.join(' ')} exited ${code ?? signal}: ${Buffer.concat(err).toString('utf8').slice(-2_000)}`));
    });
  });
}

/** One arm's measurement: latency percentiles in ms and what came back. */
export interface LoadReport {
  requests: number;
  /** Achieved request rate (per second). */
  rate: number;
  p50Ms: number;
  p99Ms: number;
  /** Outcome label (HTTP status or gRPC code) -> count. */
  outcomes: Record<string, number>;
}

// ---- vegeta (HTTP) ---------------------------------------------------------------

export interface HttpTarget {
  method?: string;
  url: string;
  headers?: Record<string, string>;
}

interface VegetaJsonReport {
  latencies: { '50th': number; '99th': number };
  requests: number;
  rate: number;
  status_codes: Record<string, number>;
  errors: string[] | null;
}

/**
 * `vegeta attack` at `rate`/s for `durationS` over the targets (taken round-robin),
 * keep-alive HTTP/1.1, then `vegeta report -type=json`.
 */
export async function vegeta(targets: readonly HttpTarget[], rate: number, durationS: number): Promise<LoadReport> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-vegeta-'));
  try {
    const targetsFile = path.join(dir, 'targets.jsonl');
    const resultsFile = path.join(dir, 'results.bin');
    // vegeta's JSON target format: header values are lists.
    const lines = targets.map((t) =>
      JSON.stringify({ method: t.method ?? 'GET', url: t.url, header: Object.fromEntries(Object.entries(t.headers ?? {}).map(([k, v]) => [k, [v]])) }),
    );
    writeFileSync(targetsFile, `${lines.join('\n')}\n`);
    const bin = tool('vegeta');
    await run(bin, ['attack', '-format=json', `-targets=${targetsFile}`, `-rate=${rate}/1s`, `-duration=${durationS}s`, '-timeout=10s', `-output=${resultsFile}`]);
    const report = JSON.parse(await run(bin, ['report', '-type=json', resultsFile])) as VegetaJsonReport;
    const outcomes: Record<string, number> = { ...report.status_codes };
    for (const error of report.errors ?? []) outcomes[`error: ${error}`] = (outcomes[`error: ${error}`] ?? 0) + 1;
    return { requests: report.requests, rate: report.rate, p50Ms: report.latencies['50th'] / 1e6, p99Ms: report.latencies['99th'] / 1e6, outcomes };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- ghz (gRPC) ------------------------------------------------------------------

export interface GhzCall {
  /** host:port of the gRPC server (plaintext). */
  target: string;
  /** Fully qualified method, e.g. package.Service.Method. */
  call: string;
  /** The .proto file that defines it, relative to one of importPaths. */
  proto: string;
  importPaths: readonly string[];
  /** The request message as JSON (proto3 JSON names). */
  data: unknown;
}

interface GhzJsonReport {
  count: number;
  rps: number;
  latencyDistribution: Array<{ percentage: number; latency: number }> | null;
  statusCodeDistribution: Record<string, number> | null;
  errorDistribution: Record<string, number> | null;
}

/** `ghz` at a constant `rps` for `durationS` over one connection (Envoy holds one per worker). */
export async function ghz(call: GhzCall, rps: number, durationS: number, concurrency = 20): Promise<LoadReport> {
  const args = [
    '--insecure',
    `--proto=${call.proto}`,
    `--import-paths=${call.importPaths.join(',')}`,
    `--call=${call.call}`,
    `--data=${JSON.stringify(call.data)}`,
    `--rps=${rps}`,
    `--duration=${durationS}s`,
    // With a duration, requests still running at the end are not waited for.
    '--duration-stop=wait',
    `--concurrency=${concurrency}`,
    '--connections=1',
    '--timeout=10s',
    '--format=json',
    call.target,
  ];
  const report = JSON.parse(await run(tool('ghz'), args)) as GhzJsonReport;
  const at = (p: number): number => {
    const row = report.latencyDistribution?.find((r) => r.percentage === p);
    if (!row) throw new Error(`ghz report has no p${p} (no successful calls?): ${JSON.stringify(report.statusCodeDistribution)} ${JSON.stringify(report.errorDistribution)}`);
    return row.latency / 1e6;
  };
  const outcomes: Record<string, number> = { ...report.statusCodeDistribution };
  for (const [error, count] of Object.entries(report.errorDistribution ?? {})) outcomes[`error: ${error}`] = count;
  return { requests: report.count, rate: report.rps, p50Ms: at(50), p99Ms: at(99), outcomes };
}

// ---- upstream ---------------------------------------------------------------------

export interface PlainUpstream {
  port: number;
  close(): Promise<void>;
}

// The smallest HTTP/1.1 origin: 200 "ok" to everything, connections kept alive far
// longer than the runs (so Envoy never reuses one the origin just closed).
const PLAIN_UPSTREAM_SOURCE = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
  res.end('ok');
});
server.keepAliveTimeout = 600000;
server.headersTimeout = 610000;
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

/**
 * A plain upstream in its own Node process, so the origin's work does not share an
 * event loop with the services under test in this process. It exits when this
 * process does (its stdin closes).
 */
export function startPlainUpstream(): Promise<PlainUpstream> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', PLAIN_UPSTREAM_SOURCE], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`upstream exited early (${code})`)));
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        child.removeAllListeners('exit');
        resolve({
          port: Number(line),
          close: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGTERM');
            }),
        });
      }
    });
  });
}

// ---- statistics ------------------------------------------------------------------

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Every arm in every round, each round starting one arm later, so slow drift of the machine falls on all arms alike. */
export function roundOrder<T>(arms: readonly T[], round: number): T[] {
  const shift = round % arms.length;
  return [...arms.slice(shift), ...arms.slice(0, shift)];
}

/** True when every request got `expected` (an HTTP status or a gRPC code). */
export function allOutcomes(report: LoadReport, expected: string): boolean {
  return Object.keys(report.outcomes).every((key) => key === expected) && (report.outcomes[expected] ?? 0) > 0;
}

/** CPU time (user + system, ms) a process has used so far, from /proc (Linux). */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at state; utime and stime are the 12th and 13th of those.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** USER_HZ: 100 on every Linux build in practice (sysconf(_SC_CLK_TCK)). */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * Problems that make a run's latencies not comparable: answers other than
 * `expected`, or a generator that could not hold the asked rate (the machine was
 * saturated, so queueing, not the thing measured, set the latency). '' when clean.
 */
export function runProblems(report: LoadReport, expected: string, rate: number): string {
  const problems: string[] = [];
  if (!allOutcomes(report, expected)) problems.push(`NOT ALL ${expected}: ${JSON.stringify(report.outcomes)}`);
  if (report.rate < rate * 0.95) problems.push(`RATE NOT HELD: ${report.rate.toFixed(0)}/s of ${rate}/s`);
  return problems.length === 0 ? '' : `  ${problems.join('; ')}`;
}

/** Pause between runs, so requests still queued from one run (an overloaded one) do not land in the next. */
export const SETTLE_MS = 1_000;

export function machine(): string {
  const cpus = os.cpus();
  const gib = (os.totalmem() / 2 ** 30).toFixed(0);
  return `${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${os.availableParallelism()} CPUs (nproc), ${gib} GiB, Node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`;
}
