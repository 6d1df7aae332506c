// Batch validation with the pinned Envoy: many translated configs in one
// `envoy --mode validate` run, bisected on failure to name each config Envoy
// refuses and its message.
//
// The bootstrap is written as a binary proto (`.pb`), so the translator's encoded
// bytes reach Envoy as they are; only two things are rewritten, because a static
// bootstrap has no ADS to fetch them:
//   - the listener's HCM `rds` becomes an inline `route_config` (the translated
//     RouteConfiguration, as decoded from its bytes);
//   - an EDS cluster becomes a STATIC cluster carrying its translated
//     ClusterLoadAssignment inline (Envoy applies the same address checks).
// Each config gets its own listener port (so its own listener and route names)
// and its upstream clusters a per-config prefix, so configs never clash.
// The rest of the product's bootstrap (envoy/bootstrap.ts: node, runtime layers,
// overload manager, the xds cluster) is merged over the .pb with --config-yaml, so
// Envoy judges with the limits the product ships.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { adsBootstrap, type EnvoyBootstrap } from '../../envoy/bootstrap.ts';
import { PROTO_INCLUDE_DIRS, messageType } from '../../control-plane/src/proto/envoy.ts';
import { parseState, type State } from '../../control-plane/src/model/index.ts';
import { translate, type EnvoyResources, type TranslateOptions } from '../../control-plane/src/translate/index.ts';
import { stateArbitrary, type ArbitraryOptions } from './arbitraries.ts';
import { ENVOY_BIN } from './envoy.ts';
import type { StateInput } from './gateway.ts';

/** One config to judge: its translated resources (translated with a unique listener port). */
export interface ValidationCase {
  resources: EnvoyResources;
}

/** Envoy's verdict per case, in input order: undefined when accepted, else Envoy's message. */
export type Verdicts = Array<string | undefined>;

export interface BatchStats {
  /** Envoy processes run (one per batch, plus the bisection steps). */
  envoyRuns: number;
}

const UPSTREAM_CLUSTER_PREFIX = 'upstream_';

type Msg = protobuf.Message<object> & Record<string, unknown>;

const T = {
  listener: () => messageType('envoy.config.listener.v3.Listener'),
  hcm: () => messageType('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager'),
  routes: () => messageType('envoy.config.route.v3.RouteConfiguration'),
  cluster: () => messageType('envoy.config.cluster.v3.Cluster'),
  cla: () => messageType('envoy.config.endpoint.v3.ClusterLoadAssignment'),
};

// ---- rewriting one config into static resources ------------------------------

/** Upstream clusters renamed with a per-config tag; service clusters (authz, ratelimit) stay shared. */
function renamer(tag: string): (name: string) => string {
  return (name) => (name.startsWith(UPSTREAM_CLUSTER_PREFIX) ? `c${tag}_${name}` : name);
}

function decode(type: protobuf.Type, bytes: Uint8Array): Msg {
  return type.decode(bytes) as Msg;
}

function renameRouteClusters(routeConfig: Msg, rename: (name: string) => string): void {
  type Action = { cluster?: string; weighted_clusters?: { clusters?: Array<{ name?: string }> }; request_mirror_policies?: Array<{ cluster?: string }> };
  const vhosts = (routeConfig.virtual_hosts ?? []) as Array<{ routes?: Array<{ route?: Action }> }>;
  for (const vhost of vhosts) {
    for (const route of vhost.routes ?? []) {
      const action = route.route;
      if (!action) continue;
      if (action.cluster) action.cluster = rename(action.cluster);
      for (const weighted of action.weighted_clusters?.clusters ?? []) if (weighted.name) weighted.name = rename(weighted.name);
      for (const mirror of action.request_mirror_policies ?? []) if (mirror.cluster) mirror.cluster = rename(mirror.cluster);
    }
  }
}

/** The listener with its RDS reference replaced by the translated route configuration, inline. */
function inlineRoutes(listenerBytes: Uint8Array, routeConfigs: ReadonlyMap<string, Msg>): Uint8Array {
  const listener = decode(T.listener(), listenerBytes);
  type Filter = { typed_config?: { type_url?: string; value?: Uint8Array } };
  const chains = (listener.filter_chains ?? []) as Array<{ filters?: Filter[] }>;
  for (const chain of chains) {
    for (const filter of chain.filters ?? []) {
      const any = filter.typed_config;
      if (!any?.type_url?.endsWith('.HttpConnectionManager') || !any.value) continue;
      const hcm = decode(T.hcm(), any.value);
      const rds = hcm.rds as { route_config_name?: string } | undefined;
      if (!rds) continue;
      const routeConfig = routeConfigs.get(rds.route_config_name ?? '');
      if (!routeConfig) throw new Error(`listener refers to unknown route configuration '${rds.route_config_name}'`);
      delete hcm.rds;
      hcm.route_config = routeConfig;
      any.value = T.hcm().encode(hcm).finish();
    }
  }
  return T.listener().encode(listener).finish();
}

/** An EDS cluster turned STATIC with its load assignment inline; other clusters unchanged but renamed. */
function staticCluster(clusterBytes: Uint8Array, assignments: ReadonlyMap<string, Msg>, rename: (name: string) => string): Uint8Array {
  const cluster = decode(T.cluster(), clusterBytes);
  const name = String(cluster.name);
  if (cluster.eds_cluster_config) {
    const cla = assignments.get(name);
    if (!cla) throw new Error(`EDS cluster '${name}' has no ClusterLoadAssignment`);
    delete cluster.eds_cluster_config;
    cluster.type = T.cluster().lookupEnum('DiscoveryType').values.STATIC;
    cluster.load_assignment = cla;
  }
  if (cluster.type === DNS_TYPES.STRICT_DNS || cluster.type === DNS_TYPES.LOGICAL_DNS) {
    cluster.typed_dns_resolver_config ??= loopbackDnsResolver();
  }
  const load = cluster.load_assignment as { cluster_name?: string } | undefined;
  if (load?.cluster_name) load.cluster_name = rename(load.cluster_name);
  cluster.name = rename(name);
  return T.cluster().encode(cluster).finish();
}

const DNS_TYPES = {
  get STRICT_DNS(): number {
    return T.cluster().lookupEnum('DiscoveryType').values.STRICT_DNS!;
  },
  get LOGICAL_DNS(): number {
    return T.cluster().lookupEnum('DiscoveryType').values.LOGICAL_DNS!;
  },
};

let caresRoot: protobuf.Root | undefined;

/**
 * Validate mode still resolves DNS clusters' names, and tests send traffic only to
 * loopback: those clusters get a c-ares resolver pointed at a dead loopback port
 * (the answer does not matter to validation). The bootstrap-wide resolver is not
 * used by clusters in validate mode, hence per cluster. Loaded from the same npm
 * package as the rest of Envoy's API, in a root of its own.
 */
function loopbackDnsResolver(): Record<string, unknown> {
  if (!caresRoot) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => {
      for (const dir of PROTO_INCLUDE_DIRS) if (existsSync(path.join(dir, target))) return path.join(dir, target);
      return target;
    };
    root.loadSync('envoy/extensions/network/dns_resolver/cares/v3/cares_dns_resolver.proto', { keepCase: true });
    root.resolveAll();
    caresRoot = root;
  }
  const name = 'envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig';
  const type = caresRoot.lookupType(name);
  const config = type.fromObject({ resolvers: [{ socket_address: { address: '127.0.0.1', port_value: 9 } }], dns_resolver_options: { no_default_search_domain: true } });
  return { name: 'envoy.network.dns_resolver.cares', typed_config: { type_url: `type.googleapis.com/${name}`, value: type.encode(config).finish() } };
}

export interface StaticConfig {
  listeners: Uint8Array[];
  /** By (renamed) cluster name, so shared service clusters appear once per batch. */
  clusters: Map<string, Uint8Array>;
}

/** One config's resources as static bootstrap pieces; `tag` keeps its cluster names apart from other configs'. */
export function toStatic(resources: EnvoyResources, tag: string): StaticConfig {
  const rename = renamer(tag);
  const routeConfigs = new Map<string, Msg>();
  for (const resource of resources.routes) {
    const routeConfig = decode(T.routes(), resource.value);
    renameRouteClusters(routeConfig, rename);
    routeConfigs.set(resource.name, routeConfig);
  }
  const assignments = new Map<string, Msg>();
  for (const resource of resources.endpoints) assignments.set(resource.name, decode(T.cla(), resource.value));
  const clusters = new Map<string, Uint8Array>();
  for (const resource of resources.clusters) clusters.set(rename(resource.name), staticCluster(resource.value, assignments, rename));
  return { listeners: resources.listeners.map((resource) => inlineRoutes(resource.value, routeConfigs)), clusters };
}

// ---- the bootstrap --------------------------------------------------------------

function varint(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  while (rest > 127) {
    out.push((rest & 127) | 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** A length-delimited protobuf field: how an embedded message is written on the wire. */
function embedded(fieldNumber: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([...varint((fieldNumber << 3) | 2), ...varint(bytes.length)]), bytes]);
}

// Field numbers in envoy.config.bootstrap.v3.Bootstrap / Bootstrap.StaticResources.
const BOOTSTRAP_STATIC_RESOURCES = 2;
const STATIC_LISTENERS = 1;
const STATIC_CLUSTERS = 2;

/** Bootstrap{static_resources{listeners, clusters}} in the binary form Envoy reads from a `.pb` file. */
export function staticBootstrapBytes(configs: readonly StaticConfig[]): Buffer {
  const parts: Buffer[] = [];
  const clusters = new Map<string, Uint8Array>();
  for (const config of configs) {
    for (const listener of config.listeners) parts.push(embedded(STATIC_LISTENERS, listener));
    for (const [name, cluster] of config.clusters) clusters.set(name, cluster);
  }
  for (const cluster of clusters.values()) parts.push(embedded(STATIC_CLUSTERS, cluster));
  return embedded(BOOTSTRAP_STATIC_RESOURCES, Buffer.concat(parts));
}

/**
 * The product's bootstrap (envoy/bootstrap.ts) minus ADS subscriptions and admin,
 * merged over the .pb by Envoy: the judge runs with the product's runtime limits
 * (e.g. re2.max_program_size), overload settings and static xds cluster.
 */
export function productOverlay(): EnvoyBootstrap {
  const product = adsBootstrap({ nodeId: 'sluice-validate', nodeCluster: 'sluice-validate', adsHost: '127.0.0.1', adsPort: 1, adminPort: 1 });
  const { dynamic_resources: _dynamic, admin: _admin, ...rest } = product;
  return rest;
}

// ---- running Envoy --------------------------------------------------------------

interface RunResult {
  ok: boolean;
  message: string;
}

/**
 * Envoy's own reason from a failed validate run. Proto-constraint failures come
 * after a text dump of the whole offending message; keep the reason, drop the dump.
 */
export function envoyMessage(output: string): string {
  const constraint = output.match(/Proto constraint validation failed \(.*\)/);
  if (constraint) return constraint[0];
  const initializing = output.match(/error initializing configuration '[^']*': (.*)/);
  if (initializing) return initializing[1]!.replace(/\s*goo\.gle\/\S+\s*$/, '').trim();
  const lines = output.split('\n').filter((line) => line.trim() !== '');
  return (lines.find((line) => /critical|error/.test(line)) ?? lines.at(-1) ?? '(no output)').trim();
}

export async function validateStatic(configs: readonly StaticConfig[]): Promise<RunResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-validate-'));
  try {
    const file = path.join(dir, 'bootstrap.pb');
    writeFileSync(file, staticBootstrapBytes(configs));
    const args = ['--mode', 'validate', '-c', file, '--config-yaml', JSON.stringify(productOverlay()), '--disable-hot-restart', '-l', 'critical'];
    return await new Promise<RunResult>((resolve, reject) => {
      const child = spawn(ENVOY_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ ok: code === 0, message: code === 0 ? '' : envoyMessage(output) }));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Judges every case: one Envoy run for the batch; when it fails, halves are
 * judged again until each refused case stands alone with Envoy's message.
 */
export async function validateBatch(cases: readonly ValidationCase[], stats: BatchStats = { envoyRuns: 0 }, tags?: readonly string[]): Promise<Verdicts> {
  const verdicts: Verdicts = new Array(cases.length).fill(undefined);
  const statics = cases.map((c, index) => toStatic(c.resources, tags?.[index] ?? String(index)));
  const judge = async (indices: number[]): Promise<void> => {
    if (indices.length === 0) return;
    stats.envoyRuns += 1;
    const result = await validateStatic(indices.map((i) => statics[i]!));
    if (result.ok) return;
    if (indices.length === 1) {
      verdicts[indices[0]!] = result.message;
      return;
    }
    const middle = Math.ceil(indices.length / 2);
    await judge(indices.slice(0, middle));
    await judge(indices.slice(middle));
    // Refused together, accepted apart: the configs clash in the shared bootstrap
    // (a validator bug, or a resource whose name is not per-config). Never pass silently.
    if (indices.every((i) => verdicts[i] === undefined)) {
      verdicts[indices[0]!] = `refused only together with ${indices.length - 1} other config(s): ${result.message}`;
    }
  };
  await judge(cases.map((_, index) => index));
  return verdicts;
}

// ---- the property: what the model admits, Envoy accepts ------------------------------

/**
 * Translation settings for the i-th config: its own listener port, and in turn
 * no services; the authz and rate-limit services; everything main.ts configures
 * (services, access log, trace export), so each filter and cluster is judged.
 */
export function translateOptionsFor(index: number): TranslateOptions {
  // Validate mode binds nothing; the port only has to differ within a batch.
  const base: TranslateOptions = { listenerPort: 10_000 + (index % 50_000), listenerAddress: '127.0.0.1' };
  const services: TranslateOptions = {
    ...base,
    authz: { clusterName: 'sluice_authz', host: '127.0.0.1', port: 9001 },
    ratelimit: { clusterName: 'sluice_ratelimit', host: '127.0.0.1', port: 9002, domain: 'sluice' },
  };
  switch (index % 3) {
    case 0:
      return base;
    case 1:
      return services;
    default:
      return {
        ...services,
        accessLog: { to: 'stdout' },
        tracing: { samplingPercent: 100, otlpCollector: { clusterName: 'sluice_otlp_collector', host: '127.0.0.1', port: 4317 } },
      };
  }
}

/** Envoy's verdict on one admitted State: undefined when accepted; a translator crash counts as a rejection. */
export async function judgeOne(state: State, index = 0): Promise<string | undefined> {
  let resources: EnvoyResources;
  try {
    resources = translate(state, translateOptionsFor(index));
  } catch (err) {
    return `translate threw: ${(err as Error).message}`;
  }
  const result = await validateStatic([toStatic(resources, String(index))]);
  return result.ok ? undefined : result.message;
}

export interface PropertyOptions {
  seed: number;
  /** Admitted configs to judge. */
  runs: number;
  /** Configs per Envoy run (default 50). */
  batchSize?: number;
  /** Shrink at most this many findings (default 3), each with at most `shrinkRuns` single-config Envoy runs (default 150). */
  shrinkFindings?: number;
  shrinkRuns?: number;
  arbitraryOptions: ArbitraryOptions;
  log?: (line: string) => void;
}

export interface Finding {
  /** fast-check replay: `{seed, path}` regenerates the admitted config (and `minimalPath` the shrunk one). */
  path: string;
  input: StateInput;
  message: string;
  minimal?: { input: StateInput; message: string; path: string };
}

export interface PropertyReport {
  seed: number;
  /** Configs generated, and how many the model admitted (the rest prove nothing and are not judged). */
  generated: number;
  admitted: number;
  envoyRuns: number;
  findings: Finding[];
}

/** The generator the property runs on: States the model admits, with a count of how many were generated. */
export function admittedStates(opts: ArbitraryOptions, tally: { generated: number; admitted: number }): fc.Arbitrary<StateInput> {
  return stateArbitrary(opts).filter((input) => {
    tally.generated += 1;
    const ok = parseState(input).ok;
    if (ok) tally.admitted += 1;
    return ok;
  });
}

function parsed(input: StateInput): State {
  const result = parseState(input);
  if (!result.ok) throw new Error(`generator produced a refused State: ${JSON.stringify(result.issues)}`);
  return result.value;
}

/**
 * Generates `runs` admitted States from `seed`, has Envoy judge them in batches,
 * and shrinks the first findings to minimal counterexamples (fast-check replays
 * the finding's path and shrinks, one Envoy run per candidate).
 */
export async function checkAdmittedAccepted(opts: PropertyOptions): Promise<PropertyReport> {
  const log = opts.log ?? (() => {});
  const tally = { generated: 0, admitted: 0 };
  const arbitrary = admittedStates(opts.arbitraryOptions, tally);
  const report: PropertyReport = { seed: opts.seed, generated: 0, admitted: 0, envoyRuns: 0, findings: [] };
  const batchSize = opts.batchSize ?? 50;
  for (let start = 0; start < opts.runs; start += batchSize) {
    // One batch at a time (a path skips to run `start` without generating the runs before it).
    const batch = fc.sample(arbitrary, { seed: opts.seed, path: String(start), numRuns: Math.min(batchSize, opts.runs - start) });
    const cases: Array<ValidationCase | undefined> = [];
    batch.forEach((input, offset) => {
      const index = start + offset;
      try {
        cases.push({ resources: translate(parsed(input), translateOptionsFor(index)) });
      } catch (err) {
        cases.push(undefined);
        report.findings.push({ path: String(index), input, message: `translate threw: ${(err as Error).message}` });
      }
    });
    const judged = cases.flatMap((c, offset) => (c ? [{ c, index: start + offset }] : []));
    const stats = { envoyRuns: 0 };
    const verdicts = await validateBatch(judged.map((j) => j.c), stats, judged.map((j) => String(j.index)));
    report.envoyRuns += stats.envoyRuns;
    verdicts.forEach((message, k) => {
      if (message !== undefined) report.findings.push({ path: String(judged[k]!.index), input: batch[judged[k]!.index - start]!, message });
    });
    log(`judged ${start + batch.length}/${opts.runs}, ${report.findings.length} rejected so far`);
  }
  report.generated = tally.generated;
  report.admitted = tally.admitted;
  report.findings.sort((a, b) => Number(a.path) - Number(b.path));
  for (const finding of report.findings.slice(0, opts.shrinkFindings ?? 3)) {
    finding.minimal = await shrink(arbitrary, opts.seed, finding, opts.shrinkRuns ?? 150);
    log(`shrunk finding at path ${finding.path}: ${finding.minimal?.message ?? '(did not reproduce alone)'}`);
  }
  return report;
}

async function shrink(arbitrary: fc.Arbitrary<StateInput>, seed: number, finding: Finding, budget: number): Promise<Finding['minimal']> {
  let runs = 0;
  let last: { input: StateInput; message: string } | undefined;
  const property = fc.asyncProperty(arbitrary, async (input) => {
    // Past the budget every candidate passes, so fast-check keeps the smallest failure found so far.
    if (runs >= budget) return true;
    runs += 1;
    const message = await judgeOne(parsed(input), Number(finding.path));
    if (message !== undefined) last = { input, message };
    return message === undefined;
  });
  const details = await fc.check(property, { seed, path: finding.path, numRuns: 1 });
  if (!details.failed || !last) return undefined;
  return { input: details.counterexample?.[0] ?? last.input, message: last.message, path: details.counterexamplePath ?? finding.path };
}

/**
 * JSON of a State input with long strings abbreviated (length in characters and
 * UTF-8 bytes kept), and DEL, C1 controls and line separators escaped, which
 * JSON.stringify leaves raw and a terminal shows as nothing.
 */
export function describeInput(input: unknown, maxString = 120): string {
  const json = JSON.stringify(input, (_key, value: unknown) => {
    if (typeof value !== 'string' || value.length <= maxString) return value;
    return `${value.slice(0, 40)}…[${value.length} chars, ${Buffer.byteLength(value, 'utf8')} bytes]`;
  });
  return json.replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
