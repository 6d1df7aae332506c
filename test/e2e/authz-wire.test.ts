// What a real Envoy sends the authz service, read off the wire: a gRPC server on
// loopback records each CheckRequest's bytes and answers with the real
// AuthzService. Envoy must send only the headers the service reads (the ext_authz
// filter's allowed_headers), the path must still carry the query the API-key
// parameter comes in, and the service's lean decoder must read Envoy's real
// bytes exactly as protobufjs's full decode does.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { readsHeader } from '../../control-plane/src/authz/decide.ts';
import { AuthzService } from '../../control-plane/src/authz/service.ts';
import { CHECK_METHOD } from '../../control-plane/src/authz/client.ts';
import { decodeCheckRequest, type WireCheckRequest } from '../../control-plane/src/authz/wire.ts';
import { messageType } from '../../control-plane/src/proto/envoy.ts';
import { generateApiKey, type NewApiKey } from '../../control-plane/src/store/api-keys.ts';
import { startGateway, parseTestState, type Gateway, type StateInput } from '../helpers/gateway.ts';
import { fetchVia, startHttpUpstream, type EchoBody, type HttpUpstream } from '../helpers/upstream.ts';

const SECRET = 'e2e-authz-wire-secret-0123456789abcdefghij';
const requestType = messageType('envoy.service.auth.v3.CheckRequest');

let gw: Gateway;
let upstream: HttpUpstream;
let server: grpc.Server;
let key: NewApiKey;
const service = new AuthzService({ secret: SECRET });
/** Every CheckRequest Envoy sent, as bytes. */
const received: Uint8Array[] = [];

/** Raw bytes in; the real service decides; its answer encoded as the service encodes it. */
const recordingMethod: grpc.MethodDefinition<Buffer, Buffer> = {
  ...CHECK_METHOD,
  requestSerialize: (b) => b,
  requestDeserialize: (b) => b,
  responseSerialize: (b) => b,
  responseDeserialize: (b) => b,
};

function state(upstreamPort: number): StateInput {
  const route = (name: string, prefix: string, auth: { mode: 'api_key'; api_key_query?: string }) => ({ name, match: { path: { prefix } }, action: { upstream: 'echo' }, auth });
  return {
    revision: 1,
    upstreams: [{ name: 'echo', endpoints: [{ host: '127.0.0.1', port: upstreamPort }] }],
    routes: [route('key', '/key/', { mode: 'api_key' }), route('query', '/query/', { mode: 'api_key', api_key_query: 'api_key' })],
    consumers: [{ name: 'alice' }],
    credentials: [{ name: 'alice-key', consumer: 'alice', kind: 'api_key' }],
  };
}

before(async () => {
  key = generateApiKey(SECRET);
  upstream = await startHttpUpstream({ name: 'echo' });
  server = new grpc.Server();
  server.addService({ Check: recordingMethod }, {
    Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      received.push(new Uint8Array(call.request));
      service.check(decodeCheckRequest(call.request)).then((response) => callback(null, CHECK_METHOD.responseSerialize(response)), (err: unknown) => callback(err as grpc.ServiceError));
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  gw = await startGateway({ envoys: [{ nodeId: 'authz-wire' }], translateOptions: { authz: { clusterName: 'sluice_authz', host: '127.0.0.1', port } } });
  const input = state(upstream.port);
  service.update({ state: parseTestState(input), apiKeys: [{ credential: 'alice-key', keyHash: key.hash }] });
  await gw.apply(input);
});

after(async () => {
  await gw?.stop();
  server?.forceShutdown();
  await service.close();
  await upstream?.close();
});

/** Headers an ordinary client sends besides its credential; none of them is the service's business. */
const CLIENT_HEADERS = { accept: 'application/json', cookie: 'session=abc', 'user-agent': 'wire-test/1.0', 'x-custom-thing': 'v', 'x-api-keys': 'lookalike' };

async function send(path: string, headers: Record<string, string>): Promise<{ check: WireCheckRequest; bytes: Uint8Array; echo: EchoBody }> {
  const before = received.length;
  const res = await fetchVia(gw.envoys[0]!.port, path, { headers });
  assert.equal(res.status, 200, res.body);
  assert.equal(received.length, before + 1, 'one check per request');
  const bytes = received[received.length - 1]!;
  return { check: requestType.decode(bytes) as unknown as WireCheckRequest, bytes, echo: JSON.parse(res.body) as EchoBody };
}

test('Envoy sends the authz service only the headers it reads; the credential still arrives', async () => {
  const { check, echo } = await send('/key/items', { ...CLIENT_HEADERS, 'x-api-key': key.key });
  const names = Object.keys(check.attributes?.request?.http?.headers ?? {}).sort();
  assert.deepEqual(names, ['x-api-key'], 'every other client header stays in Envoy');
  assert.equal(echo.headers['x-sluice-consumer'], 'alice');
  assert.equal(echo.headers['x-api-key'], undefined);
  assert.equal(echo.headers.cookie, 'session=abc', 'headers the check did not see still reach the upstream');
});

test('a Bearer API key comes through Authorization', async () => {
  const { check, echo } = await send('/key/items', { ...CLIENT_HEADERS, authorization: `Bearer ${key.key}` });
  assert.deepEqual(Object.keys(check.attributes?.request?.http?.headers ?? {}), ['authorization']);
  assert.equal(echo.headers.authorization, undefined);
  assert.equal(echo.headers['x-sluice-credential'], 'alice-key');
});

test('the path keeps its query (API keys in a query parameter), and the parameter is gone upstream', async () => {
  const { check, echo } = await send(`/query/items?api_key=${encodeURIComponent(key.key)}&page=2`, CLIENT_HEADERS);
  assert.equal(check.attributes?.request?.http?.path, `/query/items?api_key=${encodeURIComponent(key.key)}&page=2`);
  assert.equal(echo.path, '/query/items?page=2');
  assert.equal(echo.headers['x-sluice-consumer'], 'alice');
});

test("the lean decoder reads Envoy's real CheckRequests as the full decode does", () => {
  assert.ok(received.length >= 3);
  for (const bytes of received) {
    const full = requestType.decode(bytes) as unknown as WireCheckRequest;
    const lean = decodeCheckRequest(bytes);
    const view = (r: WireCheckRequest) => ({
      headers: Object.entries(r.attributes?.request?.http?.headers ?? {}).filter(([name]) => readsHeader(name)).sort(),
      path: r.attributes?.request?.http?.path,
      context: Object.entries(r.attributes?.context_extensions ?? {}).sort(),
    });
    assert.deepEqual(view(lean), view(full));
  }
});
