// A deliberately tiny state-of-the-world ADS server for tests. It proves that
// our proto encoders produce what a real Envoy accepts, independently of the
// real xDS server in control-plane/src/xds/. No snapshots, no per-node state,
// no resource-name filtering: one map typeUrl -> { version, resources }.
import * as grpc from '@grpc/grpc-js';
import { decode, encode, type DiscoveryRequest, type DiscoveryResponse } from '../../control-plane/src/proto/codec.ts';

export const ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

export interface PackedAny {
  type_url: string;
  value: Uint8Array;
}

interface TypeState {
  version: string;
  resources: PackedAny[];
}

/** What one stream last sent per type. */
interface SentState {
  version?: string;
  nonce?: string;
}

type AdsCall = grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;

const toBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

// Hand-written service definition: no proto-loader, the codec does the bytes.
const adsService: grpc.ServiceDefinition = {
  StreamAggregatedResources: {
    path: ADS_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: (msg: DiscoveryRequest) => toBuffer(encode('envoy.service.discovery.v3.DiscoveryRequest', msg)),
    requestDeserialize: (buf: Buffer) => decode('envoy.service.discovery.v3.DiscoveryRequest', buf) as DiscoveryRequest,
    responseSerialize: (msg: DiscoveryResponse) => toBuffer(encode('envoy.service.discovery.v3.DiscoveryResponse', msg)),
    responseDeserialize: (buf: Buffer) => decode('envoy.service.discovery.v3.DiscoveryResponse', buf) as DiscoveryResponse,
  },
};

export interface MinimalAds {
  port: number;
  /** Every DiscoveryRequest received, in order (ACKs and NACKs included). */
  readonly received: readonly DiscoveryRequest[];
  /** Replaces the resources of one type and pushes them to every stream subscribed to it. */
  set(typeUrl: string, version: string, resources: PackedAny[]): void;
  /** Requests that carried error_detail (Envoy rejected a response). */
  nacks(): DiscoveryRequest[];
  /** True once some stream ACKed `version` of `typeUrl`. */
  acked(typeUrl: string, version: string): boolean;
  close(): Promise<void>;
}

export async function startMinimalAds({ port = 0 }: { port?: number } = {}): Promise<MinimalAds> {
  const state = new Map<string, TypeState>();
  const streams = new Map<AdsCall, Map<string, SentState>>();
  const received: DiscoveryRequest[] = [];
  let nonces = 0;

  const send = (call: AdsCall, sent: Map<string, SentState>, typeUrl: string): void => {
    const current = state.get(typeUrl);
    if (!current) return;
    const nonce = String(++nonces);
    sent.set(typeUrl, { version: current.version, nonce });
    call.write({ version_info: current.version, type_url: typeUrl, nonce, resources: current.resources });
  };

  const onRequest = (call: AdsCall, sent: Map<string, SentState>, req: DiscoveryRequest): void => {
    received.push(req);
    const typeUrl = req.type_url ?? '';
    const last = sent.get(typeUrl);
    if (!last) sent.set(typeUrl, {}); // subscribed; set() will push when data arrives
    // A NACK carries the previously accepted version, which differs from ours;
    // answering it would re-send the rejected config in a loop.
    if (req.error_detail) return;
    // ACK of what we just sent.
    if (last?.nonce !== undefined && req.response_nonce === last.nonce) return;
    const current = state.get(typeUrl);
    if (current && current.version !== (req.version_info ?? '')) send(call, sent, typeUrl);
  };

  const server = new grpc.Server();
  server.addService(adsService, {
    StreamAggregatedResources: (call: AdsCall) => {
      const sent = new Map<string, SentState>();
      streams.set(call, sent);
      call.on('data', (req: DiscoveryRequest) => onRequest(call, sent, req));
      call.on('end', () => {
        streams.delete(call);
        call.end();
      });
      call.on('error', () => streams.delete(call));
      call.on('cancelled', () => streams.delete(call));
    },
  });
  const boundPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });

  return {
    port: boundPort,
    received,
    set(typeUrl, version, resources) {
      state.set(typeUrl, { version, resources });
      for (const [call, sent] of streams) {
        const last = sent.get(typeUrl);
        if (last && last.version !== version) send(call, sent, typeUrl);
      }
    },
    nacks: () => received.filter((r) => r.error_detail),
    acked: (typeUrl, version) =>
      received.some((r) => r.type_url === typeUrl && r.version_info === version && !r.error_detail && r.response_nonce),
    close: () =>
      new Promise<void>((resolve) => {
        for (const call of streams.keys()) call.end();
        streams.clear();
        server.forceShutdown();
        resolve();
      }),
  };
}
