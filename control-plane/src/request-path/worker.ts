// The request-path worker: the authz and rate-limit services on their own thread
// (host.ts starts it). Every request Envoy proxies waits on one of their calls,
// so they get an event loop that control-plane work (a 10,000-route translation,
// a commit, an xDS push) never blocks, and a heap of their own whose small young
// generation keeps collector pauses short (see host.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { AuthzService } from '../authz/service.ts';
import { PushStateSource, startRateLimit } from '../ratelimit/run.ts';
import { compactingCollection } from '../quiet-collector.ts';
import type { FromWorker, LogLevel, RequestPathSettings, ToWorker } from './protocol.ts';

if (!parentPort) throw new Error('request-path/worker.ts runs as a worker thread (started by request-path/host.ts)');
const port = parentPort;
const settings = workerData as RequestPathSettings;

const send = (message: FromWorker) => port.postMessage(message);
const logAt = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => send({ type: 'log', level, msg, ...(fields ? { fields } : {}) });
const log = { info: logAt('info'), warn: logAt('warn'), error: logAt('error') };

const authz = new AuthzService({ ...(settings.authz.secret ? { secret: settings.authz.secret } : {}), log });
const rateLimitStates = new PushStateSource();

/**
 * How long after the first revision the worker compacts its heap once: module
 * loading leaves ~5 MiB of garbage over every page of the thread's old space,
 * which V8 otherwise returns some 10 s later (quiet-collector.ts).
 */
const STARTUP_COMPACTION_DELAY_MS = 1_000;
let startupCompacted = false;
function compactAfterStartup(): void {
  if (startupCompacted) return;
  startupCompacted = true;
  setTimeout(compactingCollection, STARTUP_COMPACTION_DELAY_MS).unref();
}

async function start(): Promise<void> {
  const authzPort = await authz.listen(settings.authz.host, settings.authz.port);
  const rateLimit = await startRateLimit({
    source: rateLimitStates,
    ...(settings.ratelimit.redisUrl ? { redisUrl: settings.ratelimit.redisUrl } : {}),
    host: settings.ratelimit.host,
    port: settings.ratelimit.port,
    domain: settings.ratelimit.domain,
    log,
    ...(settings.ratelimit.storeTimeoutMs !== undefined ? { storeTimeoutMs: settings.ratelimit.storeTimeoutMs } : {}),
  });

  port.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'install':
        try {
          authz.update({ state: message.input.state, apiKeys: message.input.apiKeys });
          rateLimitStates.push(message.input.state);
          send({ type: 'installed', revision: message.input.state.revision, ok: true });
          compactAfterStartup();
        } catch (err) {
          // The services keep the revision they had; the host logs the failure.
          send({ type: 'installed', revision: message.input.state.revision, ok: false, error: err instanceof Error ? err.message : String(err) });
        }
        return;
      case 'metrics':
        send({ type: 'metrics', id: message.id, authz: authz.metrics.snapshot(), ratelimit: rateLimit.service.metrics.snapshot() });
        return;
      case 'close':
        void Promise.allSettled([authz.close(), rateLimit.close()]).then(() => {
          send({ type: 'closed' });
          port.close();
        });
        return;
    }
  });
  send({ type: 'listening', authzPort, ratelimitPort: rateLimit.port });
}

// A port that cannot be bound is fatal for the worker: the host reports it.
await start();
