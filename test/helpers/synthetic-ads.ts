// A bounded synthetic ADS fleet: N state-of-the-world ADS streams, each on its
// own HTTP/2 connection (like N Envoys), subscribing the way an Envoy does:
// CDS and LDS as wildcards, then EDS for the EDS clusters CDS named and RDS for
// the route tables the listeners' HTTP connection managers name; every
// response is ACKed. Per stream it records when it received and ACKed each
// route-table version. One stream can be stalled: it stops reading its HTTP/2
// stream (HTTP/2 flow control then holds the server's writes) and never
// answers again.
//
// Speaks only the ADS wire protocol, so it works against Sluice and against the
// go-control-plane reference (bench/anchor.ts) alike. Loopback only; the
// stream count is bounded by the caller (MAX_STREAMS at most).
import * as grpc from '@grpc/grpc-js';
import { decode, encode, unpackAny, type DiscoveryRequest } from '../../control-plane/src/proto/codec.ts';
import { TYPE } from '../../control-plane/src/xds/resources.ts';
import { sleep } from './net.ts';

const ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const HCM_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const MAX_STREAMS = 2_000;
/** Streams opened at once (a burst of a thousand connects would overflow the listen backlog). */
const OPEN_BATCH = 100;
/** Route-table versions remembered per stream (bounds memory over long runs). */
const HISTORY = 8;

interface RawResponse {
  version_info?: string;
  resources?: Array<{ type_url?: string; value?: Uint8Array }>;
  type_url?: string;
  nonce?: string;
}

/** One route-table version as a stream saw it: when it arrived and when the ACK went out (performance.now()). */
export interface RouteVersionSeen {
  version: string;
  receivedAt: number;
  ackedAt: number;
}

export interface SyntheticStream {
  readonly index: number;
  readonly nodeId: string;
  readonly stalled: boolean;
  /** Route-table versions received and ACKed, oldest first (the last HISTORY). */
  readonly routeVersions: readonly RouteVersionSeen[];
  /** Responses received, by type URL. */
  readonly responses: ReadonlyMap<string, number>;
}

export interface SyntheticFleet {
  readonly streams: readonly SyntheticStream[];
  /** The route names (over every route table) of a route-table version some stream received. */
  routeNames(version: string): ReadonlySet<string> | undefined;
  /** The stream's newest ACKed route-table version whose routes include `route`, if any. */
  ackedRoute(index: number, route: string): RouteVersionSeen | undefined;
  /** Resolves once every stream not in `except` has ACKed a route table naming `route`; rejects after timeoutMs. */
  waitForRoute(route: string, opts: { timeoutMs: number; except?: ReadonlySet<number> }): Promise<void>;
  /** Stops reading stream `index` (its HTTP/2 stream is paused) and never answers on it again. */
  stall(index: number): void;
  close(): void;
}

export interface SyntheticOptions {
  port: number;
  streams: number;
  nodePrefix?: string;
  /** node.cluster: the node group. */
  group?: string;
  /** Gives up opening (the first response on every stream) after this long. */
  openTimeoutMs?: number;
}

class Stream implements SyntheticStream {
  stalled = false;
  readonly routeVersions: RouteVersionSeen[] = [];
  readonly responses = new Map<string, number>();
  /** Names last asked for, per named type (EDS, RDS), as a sorted key. */
  private readonly asked = new Map<string, string[]>();
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<DiscoveryRequest, RawResponse>;
  private identified = false;

  constructor(
    readonly index: number,
    readonly nodeId: string,
    private readonly group: string,
    port: number,
    private readonly fleet: Fleet,
  ) {
    // A local subchannel pool: one connection per stream, as each Envoy has its own.
    this.client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    this.call = this.client.makeBidiStreamRequest(
      ADS_PATH,
      (msg: DiscoveryRequest) => Buffer.from(encode('envoy.service.discovery.v3.DiscoveryRequest', msg)),
      (bytes: Buffer) => decode('envoy.service.discovery.v3.DiscoveryResponse', bytes) as RawResponse,
    );
    this.call.on('data', (response: RawResponse) => this.onResponse(response));
    this.call.on('error', () => {}); // cancelled on close, or the server went away: the test judges by what arrived
    this.send({ type_url: TYPE.cluster });
    this.send({ type_url: TYPE.listener });
  }

  get answered(): boolean {
    return this.responses.size > 0;
  }

  stall(): void {
    this.stalled = true;
    this.call.pause();
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }

  private send(request: DiscoveryRequest): void {
    if (this.stalled) return;
    // Like Envoy, the node goes on the first request only.
    const withNode = this.identified ? request : { ...request, node: { id: this.nodeId, cluster: this.group } };
    this.identified = true;
    this.call.write(withNode);
  }

  private onResponse(response: RawResponse): void {
    if (this.stalled) return;
    const type = response.type_url ?? '';
    const version = response.version_info ?? '';
    const receivedAt = performance.now();
    this.responses.set(type, (this.responses.get(type) ?? 0) + 1);
    const resources = response.resources ?? [];
    if (type === TYPE.cluster) this.ask(TYPE.endpoint, this.fleet.named(type, version, resources, edsClusterNames));
    if (type === TYPE.listener) this.ask(TYPE.route, this.fleet.named(type, version, resources, routeTableNames));
    if (type === TYPE.route) this.fleet.named(type, version, resources, routeNamesIn);
    this.send({ type_url: type, version_info: version, response_nonce: response.nonce ?? '', resource_names: this.asked.get(type) ?? [] });
    if (type === TYPE.route) {
      this.routeVersions.push({ version, receivedAt, ackedAt: performance.now() });
      if (this.routeVersions.length > HISTORY) this.routeVersions.shift();
      this.fleet.routeAcked();
    }
  }

  /** Subscribes a named type to `names` when they changed (Envoy asks for new clusters' endpoints, new listeners' routes). */
  private ask(type: string, names: ReadonlySet<string>): void {
    const sorted = [...names].sort();
    const before = this.asked.get(type);
    if (before && before.join('\n') === sorted.join('\n')) return;
    this.asked.set(type, sorted);
    const held = this.fleet.lastVersion(this, type);
    this.send({ type_url: type, resource_names: sorted, version_info: held });
  }
}

type Resources = NonNullable<RawResponse['resources']>;

function edsClusterNames(resources: Resources): Set<string> {
  const names = new Set<string>();
  for (const any of resources) {
    const cluster = decode('envoy.config.cluster.v3.Cluster', any.value ?? new Uint8Array()) as { name?: string; type?: string; eds_cluster_config?: unknown };
    if (cluster.type === 'EDS' || cluster.eds_cluster_config) names.add(cluster.name ?? '');
  }
  return names;
}

function routeTableNames(resources: Resources): Set<string> {
  const names = new Set<string>();
  for (const any of resources) {
    const listener = decode('envoy.config.listener.v3.Listener', any.value ?? new Uint8Array()) as {
      filter_chains?: Array<{ filters?: Array<{ typed_config?: { type_url?: string; value?: Uint8Array } }> }>;
    };
    for (const chain of listener.filter_chains ?? []) {
      for (const filter of chain.filters ?? []) {
        if (filter.typed_config?.type_url !== HCM_TYPE) continue;
        const hcm = unpackAny(filter.typed_config) as { rds?: { route_config_name?: string } };
        if (hcm.rds?.route_config_name) names.add(hcm.rds.route_config_name);
      }
    }
  }
  return names;
}

function routeNamesIn(resources: Resources): Set<string> {
  const names = new Set<string>();
  for (const any of resources) {
    const table = decode('envoy.config.route.v3.RouteConfiguration', any.value ?? new Uint8Array()) as {
      virtual_hosts?: Array<{ routes?: Array<{ name?: string }> }>;
    };
    for (const vhost of table.virtual_hosts ?? []) for (const route of vhost.routes ?? []) if (route.name) names.add(route.name);
  }
  return names;
}

class Fleet implements SyntheticFleet {
  readonly streams: Stream[] = [];
  /** Decoded names per type and version: every stream gets the same bytes for a version, so decode once. */
  private readonly decoded = new Map<string, Set<string>>();
  private readonly waiters = new Set<() => void>();

  named(type: string, version: string, resources: Resources, read: (resources: Resources) => Set<string>): Set<string> {
    const key = `${type} ${version}`;
    let names = this.decoded.get(key);
    if (!names) {
      names = read(resources);
      this.decoded.set(key, names);
    }
    return names;
  }

  /** What the stream last ACKed of `type` (an Envoy sends it with a changed subscription). */
  lastVersion(stream: Stream, type: string): string | undefined {
    if (type !== TYPE.route) return undefined;
    return stream.routeVersions.at(-1)?.version;
  }

  routeNames(version: string): ReadonlySet<string> | undefined {
    return this.decoded.get(`${TYPE.route} ${version}`);
  }

  ackedRoute(index: number, route: string): RouteVersionSeen | undefined {
    const versions = this.streams[index]?.routeVersions ?? [];
    for (let i = versions.length - 1; i >= 0; i--) if (this.routeNames(versions[i]!.version)?.has(route)) return versions[i];
    return undefined;
  }

  routeAcked(): void {
    for (const waiter of this.waiters) waiter();
  }

  waitForRoute(route: string, { timeoutMs, except }: { timeoutMs: number; except?: ReadonlySet<number> }): Promise<void> {
    // Streams already seen holding the route are not scanned again: O(streams) in all per wait, not per ACK.
    const missing = new Set(this.streams.filter((s) => !except?.has(s.index)).map((s) => s.index));
    const sweep = (): boolean => {
      for (const index of missing) if (this.ackedRoute(index, route)) missing.delete(index);
      return missing.size === 0;
    };
    if (sweep()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        if (sweep()) done();
      };
      const timer = setTimeout(() => done(new Error(`${missing.size} streams did not ACK route ${route} within ${timeoutMs} ms (e.g. #${[...missing].slice(0, 5).join(', #')})`)), timeoutMs);
      this.waiters.add(check);
    });
  }

  stall(index: number): void {
    this.streams[index]!.stall();
  }

  close(): void {
    for (const stream of this.streams) stream.close();
  }
}

/** Opens `streams` ADS streams (in batches) and resolves once each has had a first response. */
export async function startSyntheticFleet(opts: SyntheticOptions): Promise<SyntheticFleet> {
  if (!Number.isInteger(opts.streams) || opts.streams < 1 || opts.streams > MAX_STREAMS) throw new Error(`streams must be 1..${MAX_STREAMS}`);
  const fleet = new Fleet();
  const deadline = Date.now() + (opts.openTimeoutMs ?? 60_000);
  const prefix = opts.nodePrefix ?? 'synthetic';
  try {
    for (let first = 0; first < opts.streams; first += OPEN_BATCH) {
      const batch: Stream[] = [];
      for (let i = first; i < Math.min(opts.streams, first + OPEN_BATCH); i++) {
        const stream = new Stream(i, `${prefix}-${i}`, opts.group ?? 'default', opts.port, fleet);
        fleet.streams.push(stream);
        batch.push(stream);
      }
      while (!batch.every((s) => s.answered)) {
        if (Date.now() > deadline) throw new Error(`synthetic ADS: ${batch.filter((s) => !s.answered).length} streams got no response`);
        await sleep(10);
      }
    }
  } catch (err) {
    fleet.close();
    throw err;
  }
  return fleet;
}
