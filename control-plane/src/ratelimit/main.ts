// The rate-limit service as its own process, reading State from a JSON file it
// watches (the in-process wiring, startRateLimit(), lives in run.ts and is
// re-exported here).
//
//   SLUICE_STATE_FILE=state.json [REDIS_URL=redis://...] node --import tsx control-plane/src/ratelimit/main.ts
import { readFile } from 'node:fs/promises';
import { unwatchFile, watchFile } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { parseState, type State } from '../model/index.ts';
import { startRateLimit, type StateSource } from './run.ts';
import type { RateLimitLog } from './service.ts';

export { PushStateSource, startRateLimit, type RunningRateLimit, type StartRateLimitOptions, type StateSource } from './run.ts';

/**
 * A State kept in a JSON file (what `GET /v1/state` style exports or a deploy tool
 * writes), re-read when it changes. A file that does not parse keeps the last good
 * State and is logged; the service never runs on a half-valid State.
 */
export class FileStateSource implements StateSource {
  private lastRevision: number | undefined;

  constructor(
    private readonly file: string,
    private readonly log: RateLimitLog,
    private readonly pollMs = 500,
  ) {}

  async start(onState: (state: State) => void): Promise<void> {
    const load = async (): Promise<void> => {
      const state = await this.read();
      if (state && state.revision !== this.lastRevision) {
        this.lastRevision = state.revision;
        onState(state);
        this.log.info('rate-limit policies loaded', { revision: state.revision, policies: state.rate_limit_policies.length });
      }
    };
    await load();
    watchFile(this.file, { interval: this.pollMs, persistent: false }, () => void load());
  }

  private async read(): Promise<State | undefined> {
    try {
      const parsed = parseState(JSON.parse(await readFile(this.file, 'utf8')));
      if (parsed.ok) return parsed.value;
      this.log.error('state file is not a valid State; keeping the last good one', { file: this.file, issues: parsed.issues.slice(0, 5) });
    } catch (err) {
      this.log.error('state file unreadable; keeping the last good one', { file: this.file, error: err instanceof Error ? err.message : String(err) });
    }
    return undefined;
  }

  close(): Promise<void> {
    unwatchFile(this.file);
    return Promise.resolve();
  }
}

// ---- as its own process ---------------------------------------------------------

const ProcessEnvSchema = z.object({
  SLUICE_STATE_FILE: z.string().min(1),
  REDIS_URL: z
    .string()
    .refine((value) => /^rediss?:\/\//.test(value), 'must be a redis:// or rediss:// URL')
    .optional(),
  SLUICE_RATELIMIT_HOST: z.string().min(1).default('127.0.0.1'),
  SLUICE_RATELIMIT_PORT: z.coerce.number().int().min(0).max(65_535).default(18_083),
  SLUICE_RATELIMIT_DOMAIN: z.string().min(1).default('sluice'),
});

/** JSON lines on stdout, the control plane's format (level, time, msg, fields). */
function jsonLog(): RateLimitLog {
  const write = (level: string, msg: string, fields?: Record<string, unknown>) =>
    process.stdout.write(`${JSON.stringify({ level, time: new Date().toISOString(), msg, ...fields })}\n`);
  return { info: (msg, fields) => write('info', msg, fields), error: (msg, fields) => write('error', msg, fields) };
}

async function runProcess(): Promise<void> {
  const log = jsonLog();
  const env = ProcessEnvSchema.safeParse(process.env);
  if (!env.success) {
    for (const issue of env.error.issues) log.error('bad environment variable', { variable: issue.path.join('.'), problem: issue.message });
    process.exit(2);
  }
  const running = await startRateLimit({
    source: new FileStateSource(env.data.SLUICE_STATE_FILE, log),
    ...(env.data.REDIS_URL ? { redisUrl: env.data.REDIS_URL } : {}),
    host: env.data.SLUICE_RATELIMIT_HOST,
    port: env.data.SLUICE_RATELIMIT_PORT,
    domain: env.data.SLUICE_RATELIMIT_DOMAIN,
    log,
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void running.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await runProcess();
