// CPU per Check in Sluice's authz service, without Envoy: where a check's time
// goes, for profiling and for before/after comparisons of control-plane/src/authz.
//
//   in-process  service.check() on an already-decoded request           (decision only)
//   codec       requestDeserialize(bytes) -> check() -> responseSerialize (what the wire path adds)
//   wire        a grpc-js client on loopback -> the service in a child process; the
//               child's own CPU time divided by the checks it answered
//
// Each arm runs for the API-key route and the RS256 JWT route with Envoy-shaped
// CheckRequests (addresses, time, the headers Envoy forwards, context_extensions),
// encoded once with the real CheckRequest type. CPU is process.cpuUsage (user+sys),
// so a busy machine inflates it less than wall time; medians over rounds.
//
// Run: node --import tsx bench/authz-check-profile.ts
//   ROUNDS (default 5), N (checks per round and arm, default 3000), CONCURRENCY (wire, default 32),
//   ARMS (comma-separated subset of in-process,codec,wire),
//   COMPARE=/path/to/another/checkout (its control-plane/src/authz is run interleaved, as "other"),
//   PROFILE=1 writes .cpuprofile files (in-process: run this under node --cpu-prof;
//   wire: the server child gets --cpu-prof, written to bench/profiles/).
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { AUTHZ_CONTEXT } from '../control-plane/src/model/index.ts';
import { messageType } from '../control-plane/src/proto/envoy.ts';
import { generateApiKey } from '../control-plane/src/store/api-keys.ts';
import { parseTestState } from '../test/helpers/gateway.ts';
import { makeSigningKey } from '../test/helpers/jwks-server.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const N = Number(process.env.N ?? 3_000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 32);
const ARMS = (process.env.ARMS ?? 'in-process,codec,wire').split(',');
const SECRET = 'bench-authz-secret-0123456789abcdefghijklmnop';
const ISSUER = 'https://issuer.bench/main';
const AUDIENCE = 'sluice-bench';
const CREDENTIALS = 50;
const here = path.dirname(fileURLToPath(import.meta.url));

/** jwt sends 50 tokens round and round (a client reuses its token); jwt-cold a new token every time. */
type Route = 'api-key' | 'jwt' | 'jwt-cold';
const ROUTES: readonly Route[] = ['api-key', 'jwt', 'jwt-cold'];
/** Distinct tokens for jwt-cold: its warm-up takes the first WARM_COLD, the measured checks the rest, each once. */
const COLD_TOKENS = Number(process.env.COLD_TOKENS ?? 1_500);
const WARM_COLD = 1_000;
const WARM = { 'in-process': 2_000, wire: 3_000 };

/** Checks measured and warm-up checks before them, per route. */
function counts(route: Route, arm: keyof typeof WARM): { warm: number; count: number } {
  return route === 'jwt-cold' ? { warm: WARM_COLD, count: COLD_TOKENS } : { warm: WARM[arm], count: N };
}

/** What the server side needs to answer: the State and the API-key hashes, as JSON. */
interface Fixture {
  state: unknown;
  apiKeys: Array<{ credential: string; keyHash: string }>;
  /** Encoded CheckRequests per route, base64, cycled through. */
  requests: Record<Route, string[]>;
}

/** The service module's surface this harness uses (so another checkout's copy can be loaded). */
interface ServiceModule {
  AuthzService: new (options: { secret?: string }) => {
    update(input: { state: unknown; apiKeys: unknown }): void;
    check(request: unknown): Promise<unknown>;
    listen(host: string, port: number): Promise<number>;
    close(): Promise<void>;
  };
}
interface WireModule {
  CHECK_METHOD: { requestDeserialize(bytes: Buffer): unknown; responseSerialize(message: unknown): Buffer };
}

function implRoot(which: string): string {
  return which === 'this' ? path.resolve(here, '..') : which;
}

async function loadImpl(which: string): Promise<{ service: ServiceModule; wire: WireModule }> {
  const dir = path.join(implRoot(which), 'control-plane/src/authz');
  return {
    service: (await import(pathToFileURL(path.join(dir, 'service.ts')).href)) as ServiceModule,
    wire: (await import(pathToFileURL(path.join(dir, 'wire.ts')).href)) as WireModule,
  };
}

/** An Envoy-shaped CheckRequest (what ext_authz sends with default settings). */
function envoyRequest(i: number, credentialHeaders: Record<string, string>, prefix: string, context: Record<string, string>): Record<string, unknown> {
  const path = `${prefix}items/${i}?page=2`;
  const addr = (address: string, port: number) => ({ address: { socket_address: { address, port_value: port } } });
  return {
    attributes: {
      source: addr('127.0.0.1', 40_000 + (i % 20_000)),
      destination: addr('127.0.0.1', 10_000),
      request: {
        time: { seconds: 1_760_000_000 + i, nanos: 123_456_000 },
        http: {
          id: String(1_000_000_000_000 + i),
          method: 'GET',
          headers: {
            ':authority': 'api.example.test',
            ':method': 'GET',
            ':path': path,
            ':scheme': 'http',
            'user-agent': 'Go-http-client/1.1',
            accept: 'application/json',
            'accept-encoding': 'gzip',
            'x-forwarded-proto': 'http',
            'x-request-id': `6f1c2a4e-0b7d-4c1e-9a55-${String(i).padStart(12, '0')}`,
            ...credentialHeaders,
          },
          path,
          host: 'api.example.test',
          scheme: 'http',
          protocol: 'HTTP/1.1',
        },
      },
      context_extensions: context,
      metadata_context: {},
      route_metadata_context: {},
    },
  };
}

async function buildFixture(): Promise<Fixture> {
  const signing = await makeSigningKey('RS256', 'bench-kid');
  const keys = Array.from({ length: CREDENTIALS }, () => generateApiKey(SECRET));
  const route = (name: string, prefix: string, auth: Record<string, unknown>) => ({ name, match: { path: { prefix } }, action: { upstream: 'echo' }, auth });
  const stateInput = {
    revision: 1,
    upstreams: [{ name: 'echo', endpoints: [{ host: '127.0.0.1', port: 9 }] }],
    routes: [route('key', '/key/', { mode: 'api_key' }), route('jwt', '/jwt/', { mode: 'jwt', jwt_providers: ['main'] })],
    consumers: Array.from({ length: CREDENTIALS }, (_, i) => ({ name: `consumer-${i}`, tags: ['gold'] })),
    credentials: Array.from({ length: CREDENTIALS }, (_, i) => ({ name: `key-${i}`, consumer: `consumer-${i}`, kind: 'api_key' as const })),
    jwt_providers: [{ name: 'main', issuer: ISSUER, audiences: [AUDIENCE], algorithms: ['RS256'], jwks: { keys: [signing.jwk as { kty: string }] } }],
  };
  parseTestState(stateInput as Parameters<typeof parseTestState>[0]); // fail here, not in the child, if the State is invalid
  const now = Math.floor(Date.now() / 1000);
  const sign = (i: number) => signing.sign({ iss: ISSUER, aud: AUDIENCE, sub: `user-${i}`, iat: now, exp: now + 3600, scope: 'read write' });
  const tokens = await Promise.all(Array.from({ length: CREDENTIALS }, (_, i) => sign(i)));
  const coldTokens = await Promise.all(Array.from({ length: WARM_COLD + COLD_TOKENS }, (_, i) => sign(i)));
  const type = messageType('envoy.service.auth.v3.CheckRequest');
  const encode = (message: Record<string, unknown>) => Buffer.from(type.encode(type.fromObject(message)).finish()).toString('base64');
  const context = (name: string, mode: string) => ({ [AUTHZ_CONTEXT.route]: name, [AUTHZ_CONTEXT.authMode]: mode });
  return {
    state: stateInput,
    apiKeys: keys.map((k, i) => ({ credential: `key-${i}`, keyHash: k.hash })),
    requests: {
      'api-key': keys.map((k, i) => encode(envoyRequest(i, { 'x-api-key': k.key }, '/key/', context('key', 'api_key')))),
      jwt: tokens.map((t, i) => encode(envoyRequest(i, { authorization: `Bearer ${t}` }, '/jwt/', { ...context('jwt', 'jwt'), [AUTHZ_CONTEXT.jwtProviders]: 'main' }))),
      'jwt-cold': coldTokens.map((t, i) => encode(envoyRequest(i, { authorization: `Bearer ${t}` }, '/jwt/', { ...context('jwt', 'jwt'), [AUTHZ_CONTEXT.jwtProviders]: 'main' }))),
    },
  };
}

async function startService(impl: ServiceModule, fixture: Fixture) {
  const service = new impl.AuthzService({ secret: SECRET });
  service.update({ state: parseTestState(fixture.state as Parameters<typeof parseTestState>[0]), apiKeys: fixture.apiKeys });
  return service;
}

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/** Checks the answer is an allow (a bench of refusals would measure the wrong path). */
function assertAllowed(response: unknown, what: string): void {
  const code = (response as { status?: { code?: number } }).status?.code ?? 0;
  if (code !== 0) throw new Error(`${what}: the check refused (${JSON.stringify(response).slice(0, 300)})`);
}

/** µs of CPU per check for `n` checks, `concurrency` in flight at a time. */
async function inProcess(impl: { service: ServiceModule; wire: WireModule }, fixture: Fixture, route: Route, withCodec: boolean): Promise<number> {
  const service = await startService(impl.service, fixture);
  const bytes = fixture.requests[route].map((b) => Buffer.from(b, 'base64'));
  const decoded = bytes.map((b) => impl.wire.CHECK_METHOD.requestDeserialize(b));
  const { warm, count } = counts(route, 'in-process');
  assertAllowed(await service.check(decoded[0]), `${route} in-process`);
  const one = async (i: number) => {
    if (!withCodec) return service.check(decoded[i % decoded.length]);
    const request = impl.wire.CHECK_METHOD.requestDeserialize(bytes[i % bytes.length]!);
    return impl.wire.CHECK_METHOD.responseSerialize(await service.check(request));
  };
  for (let i = 1; i < warm; i += 1) await one(i); // warm the JIT for this impl
  const started = cpuMicros();
  for (let i = warm; i < warm + count; i += 1) await one(i);
  const used = cpuMicros() - started;
  await service.close();
  return used / count;
}

// ---- wire: the server in a child process, so its CPU is its own ----

interface ChildMessage {
  port?: number;
  cpu?: number;
}

function request(child: ChildProcess, message: Record<string, unknown>): Promise<ChildMessage> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as ChildMessage));
    child.send(message);
  });
}

async function serveChild(): Promise<void> {
  let fixture: Fixture | undefined;
  let service: Awaited<ReturnType<typeof startService>> | undefined;
  process.on('message', (raw) => {
    const message = raw as { start?: { impl: string; fixture: Fixture }; cpu?: true; stop?: true };
    void (async () => {
      if (message.start) {
        fixture = message.start.fixture;
        service = await startService((await loadImpl(message.start.impl)).service, fixture);
        process.send!({ port: await service.listen('127.0.0.1', 0) });
      } else if (message.cpu) {
        process.send!({ cpu: cpuMicros() });
      } else if (message.stop) {
        await service?.close();
        process.send!({});
        process.exit(0);
      }
    })();
  });
}

/** Pre-encoded requests go out as they are; answers are checked for an allow by status code only. */
const rawMethod: grpc.MethodDefinition<Buffer, Buffer> = {
  path: '/envoy.service.auth.v3.Authorization/Check',
  requestStream: false,
  responseStream: false,
  requestSerialize: (b) => b,
  requestDeserialize: (b) => b,
  responseSerialize: (b) => b,
  responseDeserialize: (b) => b,
};

async function wire(impl: string, fixture: Fixture, route: Route, profileName?: string): Promise<number> {
  const execArgv = ['--import', 'tsx'];
  if (profileName) {
    const dir = path.join(here, 'profiles');
    mkdirSync(dir, { recursive: true });
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const { port } = await request(child, { start: { impl, fixture } });
    const Client = grpc.makeGenericClientConstructor({ Check: rawMethod }, 'Authorization');
    const client = new Client(`127.0.0.1:${port!}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      Check(req: Buffer, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): void;
    };
    const bytes = fixture.requests[route].map((b) => Buffer.from(b, 'base64'));
    const responseType = messageType('envoy.service.auth.v3.CheckResponse');
    const call = (i: number) =>
      new Promise<Buffer>((resolve, reject) => client.Check(bytes[i % bytes.length]!, (err, res) => (err ? reject(err) : resolve(res!))));
    assertAllowed(responseType.toObject(responseType.decode(await call(0))), `${route} wire`);
    const drive = async (from: number, to: number) => {
      let next = from;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < to) await call(next++);
        }),
      );
    };
    const { warm, count } = counts(route, 'wire');
    await drive(1, warm);
    const before = (await request(child, { cpu: true })).cpu!;
    await drive(warm, warm + count);
    const after = (await request(child, { cpu: true })).cpu!;
    client.close();
    return (after - before) / count;
  } finally {
    await request(child, { stop: true });
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const impls = ['this', ...(process.env.COMPARE ? [process.env.COMPARE] : [])];
  const label = (impl: string) => (impl === 'this' ? 'this' : 'other');
  const fixture = await buildFixture();
  const loaded = new Map(await Promise.all(impls.map(async (impl) => [impl, await loadImpl(impl)] as const)));
  const results = new Map<string, number[]>();
  const add = (key: string, value: number) => results.set(key, [...(results.get(key) ?? []), value]);
  process.stdout.write(`authz check CPU: ${N} checks per round and arm (jwt-cold: ${COLD_TOKENS} new tokens), ${ROUNDS} rounds, wire concurrency ${CONCURRENCY}; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
  for (let round = 0; round < ROUNDS; round += 1) {
    // Alternate which implementation goes first, so drift in machine load spreads evenly.
    const order = round % 2 ? [...impls].reverse() : impls;
    for (const impl of order) {
      for (const route of ROUTES) {
        if (ARMS.includes('in-process')) add(`${label(impl)} ${route} in-process`, await inProcess(loaded.get(impl)!, fixture, route, false));
        if (ARMS.includes('codec')) add(`${label(impl)} ${route} codec`, await inProcess(loaded.get(impl)!, fixture, route, true));
        if (ARMS.includes('wire')) {
          const profile = process.env.PROFILE && round === 0 ? `wire-${label(impl)}-${route}` : undefined;
          add(`${label(impl)} ${route} wire`, await wire(impl, fixture, route, profile));
        }
      }
    }
    process.stdout.write(`round ${round + 1}/${ROUNDS} done\n`);
  }
  process.stdout.write('\nµs CPU per check (median of rounds; all rounds)\n');
  for (const [key, values] of [...results].sort(([a], [b]) => a.localeCompare(b))) {
    process.stdout.write(`${key.padEnd(28)} ${median(values).toFixed(1).padStart(7)}   [${values.map((v) => v.toFixed(0)).join(' ')}]\n`);
  }
  process.stdout.write(`load average at end ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
}

if (process.argv.includes('--serve')) await serveChild();
else await main();
