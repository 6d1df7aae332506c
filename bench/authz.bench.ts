// Latency the authz check adds, through one real Envoy to a real upstream, at a
// fixed request rate (vegeta, constant rate), arms interleaved in rounds:
//   open        Sluice's listener, a route with auth.mode none        (baseline)
//   api-key     Sluice's listener, auth.mode api_key -> Sluice's authz service
//   jwt         Sluice's listener, auth.mode jwt (RS256)  -> Sluice's authz service
//   envoy-open  a static listener in the same Envoy, no filter but the router (baseline for the next)
//   envoy-jwt   the same static listener, Envoy's own jwt_authn filter, same key and tokens
//   envoy-authz-floor  the same static listener, ext_authz configured as Sluice configures it,
//               calling bench/authz-floor (Go, grpc-go) that answers every Check OK and
//               nothing else: what Envoy's ext_authz call costs by itself on this machine
// Sluice's arms are compared with `open`, jwt_authn with `envoy-open`: each check's
// added latency is measured against the listener it runs on. Budget (DESIGN.md):
// added p99 <= 1 ms for API keys and <= 2 ms for JWTs at 2,000 requests/s.
//
// Run: bash bench/setup.sh && node --import tsx bench/authz.bench.ts
//   RATE (req/s, default 2000), DURATION_S (per arm per round, default 10),
//   ROUNDS (default 3), WARMUP_S (per arm, default 2), CREDENTIALS (distinct keys/tokens, default 50),
//   JIT_WARMUP_S (default 15: the authz arms first run this long at half RATE),
//   ARMS (comma-separated subset of the arms)
//   ENVOY_CONCURRENCY (Envoy worker threads, default 2: what deploy/, docker-compose.yml
//   and `npm start` run; 1 puts the proxying and the ext_authz call on one thread)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { AUTHZ_READ_HEADERS } from '../control-plane/src/model/contract.ts';
import { RequestPathWorker } from '../control-plane/src/request-path/host.ts';
import { requestPathState } from '../control-plane/src/request-path/protocol.ts';
import type { ApiKeyRecord } from '../control-plane/src/authz/api-keys.ts';
import { generateApiKey } from '../control-plane/src/store/api-keys.ts';
import { translate } from '../control-plane/src/translate/index.ts';
import { SnapshotCache } from '../control-plane/src/xds/cache.ts';
import { NodeRegistry } from '../control-plane/src/xds/registry.ts';
import { AdsServer } from '../control-plane/src/xds/server.ts';
import { makeSnapshot } from '../control-plane/src/xds/snapshot.ts';
import { startEnvoy, type EnvoyHandle } from '../test/helpers/envoy.ts';
import { parseTestState, type StateInput } from '../test/helpers/gateway.ts';
import { makeSigningKey } from '../test/helpers/jwks-server.ts';
import { freePort, sleep } from '../test/helpers/net.ts';
import { fetchVia } from '../test/helpers/upstream.ts';
import { machine, median, processCpuMs, roundOrder, runProblems, SETTLE_MS, startPlainUpstream, tool, vegeta, type HttpTarget, type LoadReport } from './load-tools.ts';

const RATE = Number(process.env.RATE ?? 2_000);
const DURATION_S = Number(process.env.DURATION_S ?? 10);
const ENVOY_CONCURRENCY = Number(process.env.ENVOY_CONCURRENCY ?? 2);
if (!Number.isInteger(ENVOY_CONCURRENCY) || ENVOY_CONCURRENCY < 1) throw new Error('ENVOY_CONCURRENCY must be a whole number >= 1');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WARMUP_S = Number(process.env.WARMUP_S ?? 2);
const CREDENTIALS = Number(process.env.CREDENTIALS ?? 50);
/**
 * The authz service's code (grpc-js, HTTP/2, the check) is still being compiled by
 * V8's optimiser for thousands of checks after start: through Envoy at 800/s, a
 * third of the service's CPU went to TurboFan 10 s in, and CPU per check fell from
 * ~375 to ~250 µs after 25 s. The budget is for a service that has been running,
 * so the Sluice arms are warmed this long before anything is measured.
 */
const JIT_WARMUP_S = Number(process.env.JIT_WARMUP_S ?? 15);

const SECRET = 'bench-authz-secret-0123456789abcdefghijklmnop';
const ISSUER = 'https://issuer.bench/main';
const AUDIENCE = 'sluice-bench';
const BUDGET_ADDED_P99_MS = { 'api-key': 1, jwt: 2 } as const;
const EXT_AUTHZ = 'envoy.filters.http.ext_authz';

type ArmName = 'open' | 'api-key' | 'jwt' | 'envoy-open' | 'envoy-jwt' | 'envoy-authz-floor';
const ALL_ARMS: readonly ArmName[] = ['open', 'api-key', 'jwt', 'envoy-open', 'envoy-jwt', 'envoy-authz-floor'];
/** ARMS=open,jwt runs a subset (for profiling); added latency needs each arm's baseline in the set. */
const ARMS: readonly ArmName[] = process.env.ARMS ? ALL_ARMS.filter((arm) => process.env.ARMS!.split(',').includes(arm)) : ALL_ARMS;
/** The arm each one is compared with (same listener, no check). */
const BASELINE: Partial<Record<ArmName, ArmName>> = { 'api-key': 'open', jwt: 'open', 'envoy-jwt': 'envoy-open', 'envoy-authz-floor': 'envoy-open' };

function benchState(upstreamPort: number, jwk: Record<string, unknown>): StateInput {
  const route = (name: string, prefix: string, auth: { mode: 'none' | 'api_key' | 'jwt'; jwt_providers?: string[] }) => ({
    name,
    match: { path: { prefix } },
    action: { upstream: 'echo' },
    auth,
  });
  return {
    revision: 1,
    upstreams: [{ name: 'echo', endpoints: [{ host: '127.0.0.1', port: upstreamPort }] }],
    routes: [route('open', '/open/', { mode: 'none' }), route('key', '/key/', { mode: 'api_key' }), route('jwt', '/jwt/', { mode: 'jwt', jwt_providers: ['main'] })],
    consumers: Array.from({ length: CREDENTIALS }, (_, i) => ({ name: `consumer-${i}` })),
    credentials: Array.from({ length: CREDENTIALS }, (_, i) => ({ name: `key-${i}`, consumer: `consumer-${i}`, kind: 'api_key' as const })),
    // Inline keys, like jwt_authn's local_jwks: neither side fetches anything during the run.
    jwt_providers: [{ name: 'main', issuer: ISSUER, audiences: [AUDIENCE], algorithms: ['RS256'], jwks: { keys: [jwk as { kty: string }] } }],
  };
}

/**
 * A static listener merged into the Envoy's bootstrap (--config-yaml): HCM with
 * jwt_authn for the same issuer, audience and key (local_jwks), ext_authz as the
 * translator writes it (filters.ts) but calling the authz-floor stub, and the
 * router. /jwt/ requires the provider, /floor/ the stub's OK; everything else
 * passes unchecked.
 */
function staticBootstrap(port: number, upstreamPort: number, jwks: string, floorPort: number): string {
  const cluster = 'bench_jwt_authn_upstream';
  const floorCluster = 'bench_authz_floor';
  const noExtAuthz = { [EXT_AUTHZ]: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute', disabled: true } };
  return JSON.stringify({
    static_resources: {
      listeners: [
        {
          name: 'bench_jwt_authn',
          address: { socket_address: { address: '127.0.0.1', port_value: port } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'bench_jwt_authn',
                    route_config: {
                      name: 'bench_jwt_authn',
                      virtual_hosts: [
                        {
                          name: 'all',
                          domains: ['*'],
                          routes: [
                            { match: { prefix: '/floor/' }, route: { cluster } },
                            { match: { prefix: '/' }, route: { cluster }, typed_per_filter_config: noExtAuthz },
                          ],
                        },
                      ],
                    },
                    http_filters: [
                      {
                        name: 'envoy.filters.http.jwt_authn',
                        typed_config: {
                          '@type': 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
                          providers: { main: { issuer: ISSUER, audiences: [AUDIENCE], local_jwks: { inline_string: jwks }, forward: false } },
                          rules: [{ match: { prefix: '/jwt/' }, requires: { provider_name: 'main' } }],
                        },
                      },
                      {
                        name: EXT_AUTHZ,
                        typed_config: {
                          '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
                          grpc_service: { envoy_grpc: { cluster_name: floorCluster }, timeout: '0.5s' },
                          transport_api_version: 'V3',
                          status_on_error: { code: 'ServiceUnavailable' },
                          allowed_headers: { patterns: [...AUTHZ_READ_HEADERS.exact.map((exact) => ({ exact })), { prefix: AUTHZ_READ_HEADERS.prefix }] },
                        },
                      },
                      { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          name: cluster,
          type: 'STATIC',
          connect_timeout: '1s',
          load_assignment: {
            cluster_name: cluster,
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: upstreamPort } } } }] }],
          },
        },
        {
          name: floorCluster,
          type: 'STATIC',
          connect_timeout: '1s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: {
            cluster_name: floorCluster,
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: floorPort } } } }] }],
          },
        },
      ],
    },
  });
}

/** bench/authz-floor on a free port; resolves once it says where it listens. */
async function startAuthzFloor(): Promise<{ port: number; child: ReturnType<typeof spawn> }> {
  const child = spawn(tool('authz-floor'), ['-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const port = Number(/listening (\d+)/.exec(line.toString())?.[1]);
  if (!port) throw new Error(`authz-floor did not start: ${line.toString()}`);
  child.stdout!.resume();
  return { port, child };
}

/** Checks Envoy's ext_authz filter on the static listener has answered (ok) at least once: the floor arm really calls the stub. */
async function floorChecks(envoy: EnvoyHandle): Promise<number> {
  const stats = await (await fetch(`${envoy.adminUrl}/stats?filter=bench_jwt_authn\\.ext_authz\\.ok$`)).text();
  return Number(/: (\d+)/.exec(stats)?.[1] ?? 0);
}

async function waitSynced(registry: NodeRegistry, envoy: EnvoyHandle, nodeId: string, revision: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const node = registry.list().find((n) => n.nodeId === nodeId);
    if (node?.lastNack) throw new Error(`Envoy rejected the bench config: ${node.lastNack.message}`);
    if (node?.syncedRevision === revision) break;
    if (envoy.exited || Date.now() > deadline) throw new Error(`Envoy did not sync revision ${revision}\n${envoy.logTail()}`);
    await sleep(20);
  }
  await envoy.waitReady();
}

async function expectStatus(port: number, path: string, headers: Record<string, string>, status: number, what: string): Promise<void> {
  const res = await fetchVia(port, path, { headers });
  if (res.status !== status) throw new Error(`${what}: expected ${status}, got ${res.status} ${res.body.slice(0, 200)}`);
}

const fmt = (ms: number): string => ms.toFixed(3);

tool('vegeta'); // fail fast, before starting anything
const upstream = await startPlainUpstream();
const floor = await startAuthzFloor();
const signing = await makeSigningKey('RS256', 'bench-kid');
// The services run as the product runs them: on the request-path worker thread.
const quiet = { info: () => {}, warn: () => {}, error: (msg: string) => console.error(msg) };
const authz = await RequestPathWorker.start({
  log: quiet,
  authz: { host: '127.0.0.1', port: 0, secret: SECRET },
  ratelimit: { host: '127.0.0.1', port: 0, domain: 'sluice' },
});
const cache = new SnapshotCache();
const registry = new NodeRegistry();
const ads = new AdsServer({ cache, registry });
let envoy: EnvoyHandle | undefined;
try {
  const authzPort = authz.authzPort;
  const adsPort = await ads.listen('127.0.0.1', 0);
  const sluicePort = await freePort();
  const staticPort = await freePort();
  const nodeId = 'authz-bench';
  envoy = await startEnvoy({
    adsPort,
    nodeId,
    nodeCluster: 'authz-bench',
    concurrency: ENVOY_CONCURRENCY,
    extraArgs: ['--config-yaml', staticBootstrap(staticPort, upstream.port, JSON.stringify({ keys: [signing.jwk] }), floor.port)],
  });

  const keys = Array.from({ length: CREDENTIALS }, () => generateApiKey(SECRET));
  const records: ApiKeyRecord[] = keys.map((key, i) => ({ credential: `key-${i}`, keyHash: key.hash }));
  const state = parseTestState(benchState(upstream.port, signing.jwk as Record<string, unknown>));
  await authz.install({ state: requestPathState(state), apiKeys: records });
  const { listeners, routes, clusters, endpoints } = translate(state, {
    authz: { clusterName: 'sluice_authz', host: '127.0.0.1', port: authzPort },
    listenerPort: sluicePort,
    listenerAddress: '127.0.0.1',
  });
  cache.setSnapshot('authz-bench', makeSnapshot(state.revision, [...listeners, ...routes, ...clusters, ...endpoints]));
  await waitSynced(registry, envoy, nodeId, state.revision);
  const envoyPid = envoy.pid;

  const now = Math.floor(Date.now() / 1000);
  const tokens = await Promise.all(
    Array.from({ length: CREDENTIALS }, (_, i) => signing.sign({ iss: ISSUER, aud: AUDIENCE, sub: `user-${i}`, iat: now, exp: now + 3_600 })),
  );
  const url = (port: number, path: string) => `http://127.0.0.1:${port}${path}`;
  const targets: Record<ArmName, HttpTarget[]> = {
    open: [{ url: url(sluicePort, '/open/bench') }],
    'api-key': keys.map((k) => ({ url: url(sluicePort, '/key/bench'), headers: { 'x-api-key': k.key } })),
    jwt: tokens.map((t) => ({ url: url(sluicePort, '/jwt/bench'), headers: { authorization: `Bearer ${t}` } })),
    'envoy-open': [{ url: url(staticPort, '/open/bench') }],
    'envoy-jwt': tokens.map((t) => ({ url: url(staticPort, '/jwt/bench'), headers: { authorization: `Bearer ${t}` } })),
    'envoy-authz-floor': keys.map((k) => ({ url: url(staticPort, '/floor/bench'), headers: { 'x-api-key': k.key } })),
  };

  // Each arm does what it claims: checks refuse without a credential, admit with one.
  await expectStatus(sluicePort, '/key/bench', {}, 401, 'api-key route without a key');
  await expectStatus(sluicePort, '/jwt/bench', {}, 401, 'jwt route without a token');
  await expectStatus(staticPort, '/jwt/bench', {}, 401, 'jwt_authn route without a token');
  for (const arm of ARMS) await expectStatus(Number(new URL(targets[arm][0]!.url).port), new URL(targets[arm][0]!.url).pathname, targets[arm][0]!.headers ?? {}, 200, arm);
  if (ARMS.includes('envoy-authz-floor') && (await floorChecks(envoy)) < 1) throw new Error('envoy-authz-floor: the route did not call the stub');

  console.log(`machine: ${machine()}`);
  console.log(`rate ${RATE}/s, ${DURATION_S} s per arm per round, ${ROUNDS} rounds, ${CREDENTIALS} distinct keys/tokens, Envoy --concurrency ${ENVOY_CONCURRENCY}, authz JIT warm-up ${JIT_WARMUP_S} s`);
  for (const arm of ARMS) if (arm === 'api-key' || arm === 'jwt') await vegeta(targets[arm], Math.max(1, Math.round(RATE / 2)), JIT_WARMUP_S);
  for (const arm of ARMS) await vegeta(targets[arm], RATE, WARMUP_S);

  const results: Record<ArmName, LoadReport[]> = { open: [], 'api-key': [], jwt: [], 'envoy-open': [], 'envoy-jwt': [], 'envoy-authz-floor': [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const arm of roundOrder(ARMS, round)) {
      // CPU per request of this process (the authz service's) and of Envoy: tells a
      // slow check apart from a starved one on a busy machine.
      await sleep(SETTLE_MS);
      const cpuBefore = { authz: processCpuMs(process.pid), envoy: processCpuMs(envoyPid) };
      const report = await vegeta(targets[arm], RATE, DURATION_S);
      const perRequestUs = (before: number, pid: number) => (((processCpuMs(pid) - before) * 1000) / Math.max(1, report.requests)).toFixed(0);
      results[arm].push(report);
      const bad = runProblems(report, '200', RATE);
      console.log(
        `round ${round + 1} ${arm.padEnd(10)} p50 ${fmt(report.p50Ms)} ms  p99 ${fmt(report.p99Ms)} ms  (${report.requests} req at ${report.rate.toFixed(0)}/s; ` +
          `CPU per request: authz ${perRequestUs(cpuBefore.authz, process.pid)} us, Envoy ${perRequestUs(cpuBefore.envoy, envoyPid)} us)${bad}`,
      );
    }
  }

  const invalid = ARMS.filter((arm) => results[arm].some((r) => runProblems(r, '200', RATE) !== ''));
  console.log('\n| arm | p50 ms | p99 ms | added p50 ms | added p99 ms | budget (added p99) | ratio |');
  console.log('|---|---|---|---|---|---|---|');
  const added: Partial<Record<ArmName, { p50: number; p99: number }>> = {};
  for (const arm of ARMS) {
    const p50 = median(results[arm].map((r) => r.p50Ms));
    const p99 = median(results[arm].map((r) => r.p99Ms));
    const base = BASELINE[arm];
    let extra = '| — | — | — | — |';
    if (base && ARMS.includes(base)) {
      // Per round differences (arm minus its baseline in the same round), then the median.
      const a50 = median(results[arm].map((r, i) => r.p50Ms - results[base][i]!.p50Ms));
      const a99 = median(results[arm].map((r, i) => r.p99Ms - results[base][i]!.p99Ms));
      added[arm] = { p50: a50, p99: a99 };
      const budget = arm === 'api-key' || arm === 'jwt' ? BUDGET_ADDED_P99_MS[arm] : undefined;
      extra = `| ${fmt(a50)} | ${fmt(a99)} | ${budget === undefined ? '—' : `${budget} ms`} | ${budget === undefined ? '—' : (Math.max(0, a99) / budget).toFixed(2)} |`;
    }
    console.log(`| ${arm}${invalid.includes(arm) ? ' (not comparable!)' : ''} | ${fmt(p50)} | ${fmt(p99)} ${extra}`);
  }
  const sluiceJwt = added.jwt;
  const envoyJwt = added['envoy-jwt'];
  if (sluiceJwt && envoyJwt) {
    console.log(`\nJWT added latency, Sluice authz minus Envoy jwt_authn: p50 ${fmt(sluiceJwt.p50 - envoyJwt.p50)} ms, p99 ${fmt(sluiceJwt.p99 - envoyJwt.p99)} ms`);
  }
  if (invalid.length > 0) console.log(`\nWARNING: arms with errors or a rate not held: ${invalid.join(', ')} (their latencies are not comparable)`);
} finally {
  await envoy?.stop();
  await ads.close();
  await authz.close();
  await upstream.close();
  floor.child.kill();
}
process.exit(0);
