// Measuring helpers for bench/propagation.bench.ts: percentiles, process memory
// from /proc, JSON calls with a deadline, and probes that reach one particular
// Envoy behind a port shared by several (SO_REUSEPORT).
//
// Why the probes need /proc: every Envoy of a control plane binds the same
// gateway port, and the kernel hands each new connection to one of them by a
// hash of the connection's addresses. To ask "does Envoy X serve the route
// yet?" we open connections until each Envoy holds one, telling which Envoy
// accepted a connection by the socket inode in /proc/net/tcp and the Envoys'
// open files (/proc/<pid>/fd). Linux only, which is where the bench runs.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { sleep } from '../test/helpers/net.ts';

// ---- statistics -------------------------------------------------------------

/** A measured duration in ms; undefined when the sample timed out or failed. */
export type Sample = number | undefined;

export interface Summary {
  n: number;
  /** Samples that timed out or failed; they count as +Infinity in the percentiles. */
  failed: number;
  p50: number;
  p95: number;
  p99: number;
  median: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile (with 50 samples, p99 is the largest). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

export function summarize(samples: readonly Sample[]): Summary {
  // A timed-out sample is slower than any other, not absent: it pushes the high percentiles to "timeout".
  const values = samples.map((s) => s ?? Number.POSITIVE_INFINITY).sort((a, b) => a - b);
  const finite = values.filter(Number.isFinite);
  return {
    n: values.length,
    failed: values.length - finite.length,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
    median: values.length % 2 === 1 ? percentile(values, 50) : (values[values.length / 2 - 1]! + values[values.length / 2]!) / 2,
    min: values[0] ?? Number.NaN,
    max: values.at(-1) ?? Number.NaN,
  };
}

export function fmtMs(ms: number): string {
  if (Number.isNaN(ms)) return '—';
  if (!Number.isFinite(ms)) return 'timeout';
  return ms >= 1_000 ? `${(ms / 1_000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

export function fmtRatio(ratio: number): string {
  return Number.isFinite(ratio) ? ratio.toFixed(2) : '—';
}

export function fmtDiff(ms: number): string {
  return Number.isFinite(ms) ? `${ms >= 0 ? '+' : ''}${ms.toFixed(1)} ms` : '—';
}

export function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'MISS';
}

/** A Markdown table, so the output can be pasted into bench/RESULTS.md as is. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

// ---- process memory ---------------------------------------------------------

export interface ProcessMemory {
  /** Resident set size now, MiB (VmRSS). */
  rssMiB: number;
  /** Peak resident set size since start, MiB (VmHWM). */
  peakMiB: number;
}

function statusField(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  if (!match) throw new Error(`no ${field} in /proc status`);
  return Number(match[1]) / 1024;
}

export function processMemory(pid: number): ProcessMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rssMiB: statusField(status, 'VmRSS'), peakMiB: statusField(status, 'VmHWM') };
}

/** CPU time (user + system) a process has used so far, ms; /proc counts in clock ticks of 10 ms (CLK_TCK 100 on Linux). */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined; // gone meanwhile
  }
}

function pssMiB(pid: number): number {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const match = /^Pss:\s+(\d+) kB$/m.exec(rollup);
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0; // gone meanwhile
  }
}

/**
 * Proportional set size of a process and its children, MiB. For Postgres
 * (a postmaster plus one backend per connection, sharing shared_buffers) the
 * sum of RSS would count the shared memory once per process; PSS splits it.
 */
export function processTreePssMiB(rootPid: number): { pssMiB: number; processes: number } {
  const pids = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number);
  const tree = [rootPid, ...pids.filter((pid) => parentPid(pid) === rootPid)];
  return { pssMiB: tree.reduce((sum, pid) => sum + pssMiB(pid), 0), processes: tree.length };
}

// ---- JSON calls with a deadline ---------------------------------------------

export interface Timed {
  status: number;
  body: unknown;
  ms: number;
}

/** One JSON request; `ms` covers sending, the server's work and reading the whole answer. */
export async function timedJson(url: string, method: string, body: unknown, headers: Record<string, string>, timeoutMs: number): Promise<Timed> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const started = performance.now();
  const res = await fetch(url, {
    method,
    headers: { ...headers, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
    body: payload,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  const ms = performance.now() - started;
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text for the error message
  }
  return { status: res.status, body: parsed, ms };
}

// ---- probes that reach one Envoy ----------------------------------------------

/** The server side of the loopback connection from `clientPort` to `serverPort`: its socket inode, once accepted. */
function acceptedSocketInode(serverPort: number, clientPort: number): string | undefined {
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = Number.parseInt(fields[1]?.split(':').at(-1) ?? '', 16);
      const remote = Number.parseInt(fields[2]?.split(':').at(-1) ?? '', 16);
      // inode 0: still in the accept queue, not yet a file of any process.
      if (local === serverPort && remote === clientPort && fields[9] !== undefined && fields[9] !== '0') return fields[9];
    }
  }
  return undefined;
}

function holdsSocket(pid: number, inode: string): boolean {
  const target = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === target;
    } catch {
      return false;
    }
  });
}

/** Which of `pids` accepted this connection; undefined if none did within ~1 s. */
async function acceptingPid(socket: net.Socket, serverPort: number, pids: readonly number[]): Promise<number | undefined> {
  const clientPort = socket.localPort;
  if (clientPort === undefined) return undefined;
  for (let tries = 0; tries < 100; tries++) {
    const inode = acceptedSocketInode(serverPort, clientPort);
    const owner = inode === undefined ? undefined : pids.find((pid) => holdsSocket(pid, inode));
    if (owner !== undefined) return owner;
    await sleep(10);
  }
  return undefined;
}

function connect(port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => socket.destroy(new Error(`connect 127.0.0.1:${port}: timed out`)), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** A kept-alive HTTP/1.1 connection that sends one GET at a time and reads just the status. */
class KeptAliveConnection {
  private buffer = Buffer.alloc(0);
  private waiting?: { resolve: (status: number) => void; reject: (err: Error) => void };
  private closed = false;

  constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.settleIfComplete();
    });
    const onGone = (err?: Error): void => {
      this.closed = true;
      this.waiting?.reject(err ?? new Error('connection closed'));
      this.waiting = undefined;
    };
    socket.on('error', onGone);
    socket.on('close', () => onGone());
  }

  get open(): boolean {
    return !this.closed && !this.socket.destroyed;
  }

  get(path: string, timeoutMs: number): Promise<number> {
    if (!this.open) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.socket.destroy(new Error(`GET ${path}: timed out`)), timeoutMs);
      this.waiting = {
        resolve: (status) => (clearTimeout(timer), resolve(status)),
        reject: (err) => (clearTimeout(timer), reject(err)),
      };
      this.socket.write(`GET ${path} HTTP/1.1\r\nhost: bench\r\n\r\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  /** Settles the pending GET once a whole response (Content-Length or chunked body) is buffered. */
  private settleIfComplete(): void {
    const headEnd = this.buffer.indexOf('\r\n\r\n');
    if (headEnd < 0 || !this.waiting) return;
    const head = this.buffer.subarray(0, headEnd).toString('latin1');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
    const length = /^content-length:\s*(\d+)/im.exec(head);
    const bodyStart = headEnd + 4;
    let end: number;
    if (length) {
      end = bodyStart + Number(length[1]);
      if (this.buffer.length < end) return;
    } else if (/^transfer-encoding:\s*chunked/im.test(head)) {
      const last = this.buffer.indexOf('0\r\n\r\n', bodyStart);
      if (last < 0) return;
      end = last + 5;
    } else {
      end = bodyStart; // no body (Envoy always sends a length or chunks otherwise)
    }
    this.buffer = this.buffer.subarray(end);
    const waiting = this.waiting;
    this.waiting = undefined;
    if (/^connection:\s*close/im.test(head)) this.closed = true;
    waiting.resolve(status);
  }
}

/** GETs that always reach the Envoy with this pid, reconnecting (to the same Envoy) when it closes the connection. */
export class EnvoyProbe {
  private connection?: KeptAliveConnection;
  /** Connections this probe had to open again (Envoy closed one, e.g. draining a changed listener). */
  reconnects = 0;

  constructor(
    readonly pid: number,
    private readonly port: number,
    private readonly allPids: readonly number[],
  ) {}

  adopt(connection: KeptAliveConnection): void {
    this.connection = connection;
  }

  async status(path: string, timeoutMs = 5_000): Promise<number> {
    if (!this.connection?.open) {
      if (this.connection) this.reconnects += 1;
      this.connection = await this.connectOwn();
    }
    return this.connection.get(path, timeoutMs);
  }

  close(): void {
    this.connection?.close();
  }

  private async connectOwn(): Promise<KeptAliveConnection> {
    // The kernel's choice is a hash: with k Envoys about k tries find this one; 60 per Envoy bounds a run of bad luck.
    for (let attempt = 0; attempt < 60 * this.allPids.length; attempt++) {
      const socket = await connect(this.port, 5_000);
      if ((await acceptingPid(socket, this.port, this.allPids)) === this.pid) return new KeptAliveConnection(socket);
      socket.destroy();
    }
    throw new Error(`could not reach Envoy pid ${this.pid} on port ${this.port}`);
  }
}

/** One probe per Envoy pid behind `port`, each holding a connection that Envoy accepted. */
export async function openProbes(port: number, pids: readonly number[]): Promise<EnvoyProbe[]> {
  const probes = new Map(pids.map((pid) => [pid, new EnvoyProbe(pid, port, pids)]));
  const covered = new Set<number>();
  for (let attempt = 0; attempt < 60 * pids.length && covered.size < pids.length; attempt++) {
    const socket = await connect(port, 5_000);
    const owner = await acceptingPid(socket, port, pids);
    if (owner === undefined || covered.has(owner)) {
      socket.destroy();
      continue;
    }
    covered.add(owner);
    probes.get(owner)!.adopt(new KeptAliveConnection(socket));
  }
  if (covered.size < pids.length) throw new Error(`reached ${covered.size} of ${pids.length} Envoys on port ${port}`);
  return [...probes.values()];
}

/**
 * Probes `path` at every Envoy every `intervalMs` (one GET in flight per
 * Envoy) until each answers 200; resolves to the slowest Envoy's time since
 * `started`, or undefined if one did not serve it within `timeoutMs`.
 */
export async function firstOkAtEvery(probes: readonly EnvoyProbe[], path: string, started: number, intervalMs: number, timeoutMs: number): Promise<Sample> {
  const one = async (probe: EnvoyProbe): Promise<Sample> => {
    for (;;) {
      const sent = performance.now();
      const status = await probe.status(path).catch(() => 0); // a dropped connection is "not yet"; status() reconnects
      const now = performance.now();
      if (status === 200) return now - started;
      if (now - started > timeoutMs) return undefined;
      await sleep(Math.max(0, intervalMs - (now - sent)));
    }
  };
  const times = await Promise.all(probes.map(one));
  return times.some((t) => t === undefined) ? undefined : Math.max(...(times as number[]));
}

/** `a;dur=1.2, b;dur=3` (a Server-Timing header) as phase -> milliseconds. */
export function serverTiming(header: string | null | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of (header ?? '').split(',')) {
    const match = /^\s*([\w-]+);dur=([\d.]+)\s*$/.exec(part);
    if (match) out.set(match[1]!, Number(match[2]));
  }
  return out;
}

/**
 * CPU ms used so far by `root` and its direct children (Postgres: the postmaster and its backends),
 * counting children that already exited (an autovacuum worker, a closed connection's backend): the
 * root's own time includes what it reaped from them (cutime, cstime), so the total never goes down.
 */
export function treeCpuMs(root: number): number {
  const stat = readFileSync(`/proc/${root}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let total = (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * 10;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === root) total += processCpuMs(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}
