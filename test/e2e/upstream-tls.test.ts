// Upstream TLS through a real Envoy to real HTTPS upstreams on 127.0.0.1: what the
// model says is what Envoy does. Verification is on whenever `tls` is present
// (trust: ca_pem or the system CA bundle file; name: sni, else the endpoint's own
// name), a self-signed or wrongly named upstream is refused before any request
// reaches it, and only an explicit insecure_skip_verify skips the checks. Every
// TLS combination the model admits is ACKed. Certificates are made at test time.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UpstreamSchema, type UpstreamInput } from '../../control-plane/src/model/index.ts';
import { DEFAULT_SYSTEM_CA_FILE } from '../../control-plane/src/translate/clusters.ts';
import { clusterName } from '../../control-plane/src/translate/names.ts';
import { startGateway, type Gateway, type StateInput } from '../helpers/gateway.ts';
import { sleep } from '../helpers/net.ts';
import { certFactory, type CertFactory, type CertAndKey } from '../helpers/tls.ts';
import { fetchVia, startHttpUpstream, type FetchResult, type HttpUpstream } from '../helpers/upstream.ts';

let certs: CertFactory;
let gw: Gateway;
let ca: CertAndKey;
let otherCa: CertAndKey;
/** Self-signed, with every name the tests use: only trust can fail. */
let selfSigned: HttpUpstream;
/** Signed by `ca`, for a.example only. */
let caA: HttpUpstream;
/** Signed by `ca`, for localhost and 127.0.0.1. */
let caLocal: HttpUpstream;
/** Signed by a CA that the gateway's "system" bundle holds, for 127.0.0.1. */
let sysSigned: HttpUpstream;

before(async () => {
  certs = certFactory();
  ca = certs.ca('sluice-e2e-ca');
  otherCa = certs.ca('sluice-e2e-other-ca');
  const systemCa = certs.ca('sluice-e2e-system-ca');
  selfSigned = await startHttpUpstream({ name: 'self-signed', tls: certs.selfSigned({ dns: ['localhost', 'a.example'], ips: ['127.0.0.1'] }) });
  caA = await startHttpUpstream({ name: 'ca-a', tls: certs.signed(ca, { dns: ['a.example'] }) });
  caLocal = await startHttpUpstream({ name: 'ca-local', tls: certs.signed(ca, { dns: ['localhost'], ips: ['127.0.0.1'] }) });
  sysSigned = await startHttpUpstream({ name: 'sys-signed', tls: certs.signed(systemCa, { ips: ['127.0.0.1'] }) });
  // The gateway's "system" bundle: the real one plus one test root, so tls: {} can be
  // shown to reach an upstream the system trusts (no test may touch the real bundle).
  const systemBundle = path.join(certs.dir, 'system-bundle.pem');
  writeFileSync(systemBundle, `${readFileSync(DEFAULT_SYSTEM_CA_FILE, 'utf8')}\n${systemCa.cert}`);
  gw = await startGateway({ envoys: [{ nodeId: 'tls-1' }], translateOptions: { systemCaFile: systemBundle } });
});

after(async () => {
  await gw?.stop();
  await Promise.all([selfSigned, caA, caLocal, sysSigned].map((u) => u?.close()));
  certs?.cleanup();
});

function upstream(name: string, server: HttpUpstream, host: string, tls: UpstreamInput['tls']): UpstreamInput {
  return { name, endpoints: [{ host, port: server.port }], tls };
}

/**
 * GET through Envoy. A STRICT_DNS cluster may not have resolved `localhost` yet
 * right after the ACK ("no healthy upstream"): ask again, a bounded number of times.
 */
async function get(route: string): Promise<FetchResult> {
  for (let attempt = 0; ; attempt += 1) {
    const res = await fetchVia(gw.envoys[0]!.port, `/${route}`, { timeoutMs: 5_000 });
    if (res.status !== 503 || !/no healthy upstream/.test(res.body) || attempt >= 50) return res;
    await sleep(100);
  }
}

async function assertReached(route: string, server: HttpUpstream): Promise<void> {
  const before = server.requests;
  const res = await get(route);
  assert.equal(res.status, 200, `${route}: ${res.body}`);
  assert.equal(res.headers['x-upstream'], server.name, route);
  assert.equal(server.requests, before + 1, route);
}

/** `chain`: the certificate is not signed by a trusted CA; `name`: it does not carry the expected name. */
type RefusalReason = 'chain' | 'name';

async function assertRefused(route: string, server: HttpUpstream, reason: RefusalReason): Promise<void> {
  const before = server.requests;
  const res = await get(route);
  assert.equal(res.status, 503, `${route}: expected a refusal, got ${res.status} ${res.body}`);
  assert.equal(server.requests, before, `${route}: the upstream must never see the request`);
  // Refused for a certificate reason (untrusted chain or wrong name), not some other failure.
  const failures = await verifyFailures(route);
  assert.ok(failures[reason] > 0, `${route}: expected a ${reason} verification failure, counted ${JSON.stringify(failures)}`);
}

/** Envoy's per-cluster TLS verification failure counters (the route and upstream share a name here). */
async function verifyFailures(upstreamName: string): Promise<{ chain: number; name: number }> {
  const prefix = `cluster\\.${clusterName(upstreamName)}\\.ssl\\.`;
  const res = await gw.envoys[0]!.handle.admin(`/stats?filter=${encodeURIComponent(`^${prefix}fail_verify_`)}`);
  const counter = (stat: string): number => Number(new RegExp(`^${prefix}${stat}: (\\d+)$`, 'm').exec(res.body)?.[1] ?? 0);
  return { chain: counter('fail_verify_error'), name: counter('fail_verify_san') };
}

test('every TLS combination the model admits is ACKed by Envoy', async () => {
  const endpointSets: Array<[string, UpstreamInput['endpoints']]> = [
    ['ip4', [{ host: '127.0.0.1', port: 9 }]],
    ['ip6', [{ host: '::1', port: 9 }, { host: '0:0:0:0:0:0:0:1', port: 10 }]],
    ['dns', [{ host: 'localhost', port: 9 }]],
    ['mixed', [{ host: 'LocalHost', port: 9 }, { host: '127.0.0.1', port: 10 }]],
  ];
  const tlsOptions: Array<UpstreamInput['tls']> = [];
  for (const sni of [undefined, 'a.example']) {
    for (const verify of [undefined, {}, { ca_pem: ca.cert }, { ca_pem: `${ca.cert}${otherCa.cert}` }]) {
      for (const insecure_skip_verify of [undefined, true as const]) tlsOptions.push({ sni, verify, insecure_skip_verify });
    }
  }
  const admitted: UpstreamInput[] = [];
  let refused = 0;
  for (const [label, endpoints] of endpointSets) {
    for (const [index, tls] of tlsOptions.entries()) {
      for (const protocol of ['http1', 'http2'] as const) {
        const candidate: UpstreamInput = { name: `m-${label}-${index}-${protocol}`, endpoints, tls, protocol };
        const parsed = UpstreamSchema.safeParse(candidate);
        if (parsed.success) admitted.push(candidate);
        else {
          // The only refused combination: skipping verification while asking for it.
          assert.ok(tls?.insecure_skip_verify && tls.verify, `unexpected refusal of ${JSON.stringify(candidate)}: ${parsed.error.message}`);
          refused += 1;
        }
      }
    }
  }
  assert.equal(admitted.length + refused, endpointSets.length * tlsOptions.length * 2);
  assert.equal(refused, 48, 'skip + verify, for 3 verify forms x 2 sni x 2 protocols x 4 endpoint sets');
  // apply() throws if Envoy NACKs any of them.
  await gw.apply({ revision: 1, upstreams: admitted });
});

test('verification is the default; a self-signed or misnamed upstream is refused, the right CA and name reach it', async () => {
  const upstreams: UpstreamInput[] = [
    // Self-signed (names all correct): refused unless verification is explicitly skipped.
    upstream('self-tls-default', selfSigned, '127.0.0.1', {}),
    upstream('self-verify', selfSigned, 'localhost', { verify: {} }),
    upstream('self-sni-verify', selfSigned, '127.0.0.1', { sni: 'localhost', verify: {} }),
    upstream('self-skip', selfSigned, '127.0.0.1', { insecure_skip_verify: true }),
    upstream('self-skip-sni', selfSigned, 'localhost', { sni: 'b.example', insecure_skip_verify: true }),
    // Own CA: the right sni reaches it; a wrong one, or no name at all, does not.
    upstream('ca-sni', caA, '127.0.0.1', { sni: 'a.example', verify: { ca_pem: ca.cert } }),
    upstream('ca-wrong-sni', caA, '127.0.0.1', { sni: 'b.example', verify: { ca_pem: ca.cert } }),
    upstream('ca-ip-no-name', caA, '127.0.0.1', { verify: { ca_pem: ca.cert } }),
    upstream('ca-dns-wrong-name', caA, 'localhost', { verify: { ca_pem: ca.cert } }),
    upstream('ca-other-ca', caLocal, '127.0.0.1', { verify: { ca_pem: otherCa.cert } }),
    // Without sni the endpoint's own name is checked: IP SAN for an IP, DNS SAN for a hostname.
    upstream('ca-ip-san', caLocal, '127.0.0.1', { verify: { ca_pem: ca.cert } }),
    upstream('ca-dns-san', caLocal, 'localhost', { verify: { ca_pem: `${otherCa.cert}${ca.cert}` } }),
    // tls: {} trusts the system bundle (here the real one plus a test root).
    upstream('sys-default', sysSigned, '127.0.0.1', {}),
    upstream('sys-wrong-sni', sysSigned, '127.0.0.1', { sni: 'a.example' }),
  ];
  const routes: StateInput['routes'] = upstreams.map((u) => ({ name: u.name, match: { path: { prefix: `/${u.name}` } }, action: { upstream: u.name } }));
  await gw.apply({ revision: 2, upstreams, routes });

  await assertRefused('self-tls-default', selfSigned, 'chain');
  await assertRefused('self-verify', selfSigned, 'chain');
  await assertRefused('self-sni-verify', selfSigned, 'chain');
  await assertReached('self-skip', selfSigned);
  await assertReached('self-skip-sni', selfSigned);

  await assertReached('ca-sni', caA);
  await assertRefused('ca-wrong-sni', caA, 'name');
  await assertRefused('ca-ip-no-name', caA, 'name');
  await assertRefused('ca-dns-wrong-name', caA, 'name');
  await assertRefused('ca-other-ca', caLocal, 'chain');

  await assertReached('ca-ip-san', caLocal);
  await assertReached('ca-dns-san', caLocal);

  await assertReached('sys-default', sysSigned);
  await assertRefused('sys-wrong-sni', sysSigned, 'name');
});
