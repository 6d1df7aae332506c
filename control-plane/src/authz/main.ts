// The authz service as its own process, for fleets that run it beside each Envoy.
// It needs a source of AuthzInput (State + API-key hashes): the composition root
// will hand it the change feed; standing alone, it reads a JSON file
// ({ "state": State, "api_keys": [{ "credential", "key_hash" }] }) named by
// SLUICE_AUTHZ_STATE_FILE and re-reads it on SIGHUP.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { parseState } from '../model/index.ts';
import type { AuthzInput } from './lookup.ts';
import { AuthzService, type AuthzServiceOptions } from './service.ts';

/** Where the service's State comes from. */
export interface AuthzInputSource {
  /** Calls `onInput` with the current input (when there is one) and every later one; returns an unsubscribe. */
  subscribe(onInput: (input: AuthzInput) => void): () => void;
}

export interface RunningAuthz {
  service: AuthzService;
  port: number;
  stop(): Promise<void>;
}

export async function runAuthz(source: AuthzInputSource, listen: { host: string; port: number }, options: AuthzServiceOptions = {}): Promise<RunningAuthz> {
  const service = new AuthzService(options);
  const unsubscribe = source.subscribe((input) => service.update(input));
  const port = await service.listen(listen.host, listen.port);
  return {
    service,
    port,
    stop: async () => {
      unsubscribe();
      await service.close();
    },
  };
}

const FileSchema = z
  .object({
    state: z.unknown(),
    api_keys: z.array(z.object({ credential: z.string().min(1), key_hash: z.string().regex(/^[0-9a-f]{64}$/) }).strict()).default([]),
  })
  .strict();

/** Reads and validates the file; throws with the first problem (never with file contents). */
export function readInputFile(path: string): AuthzInput {
  const file = FileSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  if (!file.success) throw new Error(`${path}: ${file.error.issues[0]?.path.join('.') ?? ''} ${file.error.issues[0]?.message ?? 'invalid'}`);
  const state = parseState(file.data.state);
  if (!state.ok) throw new Error(`${path}: state.${state.issues[0]?.path.join('.') ?? ''} ${state.issues[0]?.message ?? 'invalid'}`);
  return { state: state.value, apiKeys: file.data.api_keys.map((k) => ({ credential: k.credential, keyHash: k.key_hash })) };
}

/** A file source: read now, and again on SIGHUP (a bad file keeps the last good input). */
export function fileSource(path: string, log: (msg: string) => void): AuthzInputSource {
  return {
    subscribe(onInput) {
      const load = () => {
        try {
          onInput(readInputFile(path));
        } catch (err) {
          log(`authz: keeping the last input: ${err instanceof Error ? err.message : 'unreadable'}`);
        }
      };
      load();
      process.on('SIGHUP', load);
      return () => process.off('SIGHUP', load);
    },
  };
}

const EnvSchema = z.object({
  AUTHZ_HOST: z.string().min(1).default('127.0.0.1'),
  AUTHZ_PORT: z.coerce.number().int().min(0).max(65_535).default(9191),
  SLUICE_SECRET: z.string().min(32).optional(),
  SLUICE_AUTHZ_STATE_FILE: z.string().min(1),
});

async function main(): Promise<void> {
  const env = EnvSchema.safeParse(process.env);
  if (!env.success) {
    process.stderr.write(`authz: ${env.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}\n`);
    process.exit(2);
  }
  const say = (msg: string) => process.stderr.write(`${msg}\n`);
  const running = await runAuthz(fileSource(env.data.SLUICE_AUTHZ_STATE_FILE, say), { host: env.data.AUTHZ_HOST, port: env.data.AUTHZ_PORT }, { secret: env.data.SLUICE_SECRET });
  say(`authz: listening on ${env.data.AUTHZ_HOST}:${running.port}`);
  const shutdown = () => void running.stop().then(() => process.exit(0));
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) void main();
