// CPU per Check in Sluice's authz service, without Envoy: where a check's time
// goes, for profiling and for before/after comparisons of control-plane/src/authz.
//
//   in-process  service.check() on an already-decoded request           (decision only)
//   codec       requestDeserialize(bytes) -> check() -> responseSerialize (what the wire path adds)
//   wire        a grpc-js client on loopback -> the service in a child process; the
//               child's own CPU time divided by the checks it answered
//   envoy       vegeta at a fixed rate (ENVOY_RATE/s) through one real Envoy on
//               Sluice's translated listener (that implementation's translate/) ->
//               the service in a child process; the child's CPU per check. One check
//               per wake-up, headers as Envoy really forwards them: the figure the
//               latency bench's CPU column shows, without its 2,000/s saturation.
//
// Each arm runs for the API-key route and the RS256 JWT route with Envoy-shaped
// CheckRequests (addresses, time, the headers Envoy forwards, context_extensions),
// encoded once with the real CheckRequest type. CPU is process.cpuUsage (user+sys),
// so a busy machine inflates it less than wall time; medians over rounds.
//
// Run: node --import tsx bench/authz-check-profile.ts
//   ROUNDS (default 5), N (checks per round and arm, default 3000), CONCURRENCY (wire, default 32),
//   ARMS (comma-separated subset of in-process,codec,wire,envoy; default the first three),
//   ENVOY_RATE (req/s, default 800), ENVOY_S (measured seconds per arm, default 5),
//   ENVOY_WARM_S (warm-up seconds before, default 10: V8 is still optimising the path for thousands of checks),
//   COMPARE=/path/to/another/checkout (its control-plane/src/authz is run interleaved, as "other"),
//   PROFILE=1 writes .cpuprofile files (in-process: run this under node --cpu-prof;
//   wire and envoy: the server child gets --cpu-prof, written to bench/profiles/<arm>/).
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { AUTHZ_CONTEXT } from '../control-plane/src/model/index.ts';
import { messageType } from '../control-plane/src/proto/envoy.ts';
import { generateApiKey } from '../control-plane/src/store/api-keys.ts';
import { SnapshotCache } from '../control-plane/src/xds/cache.ts';
import { NodeRegistry } from '../control-plane/src/xds/registry.ts';
import { AdsServer } from '../control-plane/src/xds/server.ts';
import { makeSnapshot } from '../control-plane/src/xds/snapshot.ts';
import { startEnvoy, type EnvoyHandle } from '../test/helpers/envoy.ts';
import { parseTestState } from '../test/helpers/gateway.ts';
import { makeSigningKey } from '../test/helpers/jwks-server.ts';
import { freePort, sleep } from '../test/helpers/net.ts';
import { startPlainUpstream, vegeta, type HttpTarget, type PlainUpstream } from './load-tools.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const N = Number(process.env.N ?? 3_000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 32);
const ARMS = (process.env.ARMS ?? 'in-process,codec,wire').split(',');
const ENVOY_RATE = Number(process.env.ENVOY_RATE ?? 800);
const ENVOY_S = Number(process.env.ENVOY_S ?? 5);
const ENVOY_WARM_S = Number(process.env.ENVOY_WARM_S ?? 10);
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
  /** The raw API keys and the reused tokens, for HTTP requests through Envoy. */
  keys: string[];
  tokens: string[];
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
    // CHECK_METHOD is in client.ts since the worker stopped loading the proto registry (wire.ts before).
    wire: (await import(pathToFileURL(path.join(dir, existsSync(path.join(dir, 'client.ts')) ? 'client.ts' : 'wire.ts')).href)) as WireModule,
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
    keys: keys.map((k) => k.key),
    tokens,
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
  /** System (kernel) share of cpu, µs. */
  sys?: number;
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
        process.send!({ cpu: cpuMicros(), sys: process.cpuUsage().system });
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

/** The server child's node flags; with a profile name, a .cpuprofile lands in bench/profiles/. */
function childExecArgv(profileName?: string): string[] {
  const execArgv = ['--import', 'tsx'];
  if (profileName) {
    // One folder per arm: tsx's loader thread writes its own profile beside the main thread's.
    const dir = path.join(here, 'profiles', profileName);
    mkdirSync(dir, { recursive: true });
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  return execArgv;
}

async function wire(impl: string, fixture: Fixture, route: Route, profileName?: string): Promise<number> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], { execArgv: childExecArgv(profileName), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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

// ---- envoy: one real Envoy on Sluice's listener in front of the child's service ----

interface TranslateModule {
  translate(state: unknown, options: Record<string, unknown>): { listeners: unknown[]; routes: unknown[]; clusters: unknown[]; endpoints: unknown[] };
}

/** One Envoy for the whole run; each arm points its authz cluster at that arm's child. */
interface EnvoyRig {
  envoy: EnvoyHandle;
  registry: NodeRegistry;
  cache: SnapshotCache;
  ads: AdsServer;
  upstream: PlainUpstream;
  listenerPort: number;
  revision: number;
}

async function startEnvoyRig(): Promise<EnvoyRig> {
  const upstream = await startPlainUpstream();
  const cache = new SnapshotCache();
  const registry = new NodeRegistry();
  const ads = new AdsServer({ cache, registry });
  const adsPort = await ads.listen('127.0.0.1', 0);
  const envoy = await startEnvoy({ adsPort, nodeId: 'authz-profile', nodeCluster: 'authz-profile', metricsSink: false });
  return { envoy, registry, cache, ads, upstream, listenerPort: await freePort(), revision: 1 };
}

async function stopEnvoyRig(rig: EnvoyRig): Promise<void> {
  await rig.envoy.stop();
  await rig.ads.close();
  await rig.upstream.close();
}

/** Installs `impl`'s translation of the fixture with the authz cluster at `authzPort`; resolves once Envoy has it. */
async function pointEnvoyAt(rig: EnvoyRig, impl: string, fixture: Fixture, authzPort: number): Promise<void> {
  const translateModule = (await import(pathToFileURL(path.join(implRoot(impl), 'control-plane/src/translate/index.ts')).href)) as TranslateModule;
  rig.revision += 1;
  const input = fixture.state as { upstreams: Array<{ endpoints: unknown[] }> } & Record<string, unknown>;
  const state = parseTestState({
    ...input,
    revision: rig.revision,
    upstreams: [{ ...input.upstreams[0], name: 'echo', endpoints: [{ host: '127.0.0.1', port: rig.upstream.port }] }],
  } as Parameters<typeof parseTestState>[0]);
  const out = translateModule.translate(state, {
    authz: { clusterName: 'sluice_authz', host: '127.0.0.1', port: authzPort },
    listenerPort: rig.listenerPort,
    listenerAddress: '127.0.0.1',
  });
  rig.cache.setSnapshot('authz-profile', makeSnapshot(rig.revision, [...out.listeners, ...out.routes, ...out.clusters, ...out.endpoints] as Parameters<typeof makeSnapshot>[1]));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const node = rig.registry.list().find((n) => n.nodeId === 'authz-profile');
    if (node?.lastNack) throw new Error(`Envoy rejected the config: ${node.lastNack.message}`);
    if (node?.syncedRevision === rig.revision) break;
    if (rig.envoy.exited || Date.now() > deadline) throw new Error(`Envoy did not sync revision ${rig.revision}\n${rig.envoy.logTail()}`);
    await sleep(20);
  }
  await rig.envoy.waitReady();
}

/** Headers an ordinary API client sends besides its credential (Envoy forwards all of them unless told otherwise). */
const CLIENT_HEADERS = {
  accept: 'application/json',
  'accept-language': 'en-US,en;q=0.9',
  'user-agent': 'bench-client/1.0 (linux; x86_64)',
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
};

async function throughEnvoy(rig: EnvoyRig, impl: string, fixture: Fixture, route: 'api-key' | 'jwt', profileName?: string): Promise<number> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], { execArgv: childExecArgv(profileName), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const { port } = await request(child, { start: { impl, fixture } });
    await pointEnvoyAt(rig, impl, fixture, port!);
    const url = `http://127.0.0.1:${rig.listenerPort}${route === 'api-key' ? '/key/items' : '/jwt/items'}?page=2`;
    const targets: HttpTarget[] =
      route === 'api-key'
        ? fixture.keys.map((key) => ({ url, headers: { ...CLIENT_HEADERS, 'x-api-key': key } }))
        : fixture.tokens.map((token) => ({ url, headers: { ...CLIENT_HEADERS, authorization: `Bearer ${token}` } }));
    await vegeta(targets, ENVOY_RATE, ENVOY_WARM_S); // warm the child's JIT and Envoy's connection to it
    const before = await request(child, { cpu: true });
    const report = await vegeta(targets, ENVOY_RATE, ENVOY_S);
    const after = await request(child, { cpu: true });
    // A refusal means the wrong path was measured; a 503 (a check past Envoy's deadline
    // on a starved machine) was still answered by the child, so it only earns a note.
    if (Object.keys(report.outcomes).some((k) => /^4\d\d$/.test(k))) throw new Error(`${route} through Envoy: refused: ${JSON.stringify(report.outcomes)}`);
    if ((report.outcomes['200'] ?? 0) !== report.requests) process.stdout.write(`  note: ${impl} ${route} envoy: not all 200: ${JSON.stringify(report.outcomes)}\n`);
    if (process.env.VERBOSE) {
      process.stdout.write(`  ${impl} ${route} envoy: kernel ${((after.sys! - before.sys!) / report.requests).toFixed(0)} µs of ${((after.cpu! - before.cpu!) / report.requests).toFixed(0)} µs per check\n`);
    }
    return (after.cpu! - before.cpu!) / report.requests;
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
  const rig = ARMS.includes('envoy') ? await startEnvoyRig() : undefined;
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
        if (rig && route !== 'jwt-cold') {
          const profile = process.env.PROFILE && round === 0 ? `envoy-${label(impl)}-${route}` : undefined;
          add(`${label(impl)} ${route} envoy`, await throughEnvoy(rig, impl, fixture, route, profile));
        }
      }
    }
    process.stdout.write(`round ${round + 1}/${ROUNDS} done\n`);
  }
  if (rig) await stopEnvoyRig(rig);
  process.stdout.write('\nµs CPU per check (median of rounds; all rounds)\n');
  for (const [key, values] of [...results].sort(([a], [b]) => a.localeCompare(b))) {
    process.stdout.write(`${key.padEnd(28)} ${median(values).toFixed(1).padStart(7)}   [${values.map((v) => v.toFixed(0)).join(' ')}]\n`);
  }
  process.stdout.write(`load average at end ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
}

if (process.argv.includes('--serve')) await serveChild();
else await main();
