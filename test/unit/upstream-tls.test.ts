// Upstream TLS in the model and the translator: a CA bundle is admitted only when
// every block is a parsable CA certificate, and what is emitted verifies trust and
// name by default (system bundle file + SAN), with no verification only on an
// explicit insecure_skip_verify. Certificates are made at test time with openssl.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type Issue, UpstreamSchema, issuesFromZod } from '../../control-plane/src/model/index.ts';
import type { UpstreamInput } from '../../control-plane/src/model/index.ts';
import { decode, encode, unpackAny } from '../../control-plane/src/proto/codec.ts';
import type { Cluster__Output } from '../../control-plane/src/proto/generated/envoy/config/cluster/v3/Cluster.ts';
import type { UpstreamTlsContext__Output } from '../../control-plane/src/proto/generated/envoy/extensions/transport_sockets/tls/v3/UpstreamTlsContext.ts';
import { DEFAULT_SYSTEM_CA_FILE, upstreamCluster } from '../../control-plane/src/translate/clusters.ts';
import { certFactory } from '../helpers/tls.ts';

const certs = certFactory();
after(() => certs.cleanup());
const CA = certs.ca('sluice-unit-ca');
const OTHER_CA = certs.ca('sluice-unit-other-ca');
const LEAF = certs.signed(CA, { dns: ['a.example'] });
const SELF_SIGNED_LEAF = certs.selfSigned({ dns: ['localhost'] });

const CA_PATH = ['tls', 'verify', 'ca_pem'];

function upstreamWith(tls: UpstreamInput['tls'], hosts: string[] = ['10.0.0.1']): UpstreamInput {
  return { name: 'users', endpoints: hosts.map((host) => ({ host, port: 443 })), tls };
}

function issuesFor(tls: UpstreamInput['tls'], hosts?: string[]): Issue[] {
  const result = UpstreamSchema.safeParse(upstreamWith(tls, hosts));
  return result.success ? [] : issuesFromZod(result.error);
}

function assertCaRefused(caPem: string, label: string, messagePart?: RegExp): void {
  const issues = issuesFor({ verify: { ca_pem: caPem } });
  assert.ok(issues.length > 0, `${label}: expected a rejection`);
  const issue = issues.find((i) => JSON.stringify(i.path) === JSON.stringify(CA_PATH));
  assert.ok(issue, `${label}: expected an issue at ${JSON.stringify(CA_PATH)}, got ${JSON.stringify(issues)}`);
  if (messagePart) assert.match(issue.message, messagePart, label);
}

/** A PEM block with base64 that decodes to something that is not a certificate. */
function block(body: string): string {
  return `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
}

describe('upstream tls.verify.ca_pem (PEM rule)', () => {
  it('admits one CA certificate and a bundle of CAs', () => {
    assert.deepEqual(issuesFor({ verify: { ca_pem: CA.cert } }), []);
    assert.deepEqual(issuesFor({ verify: { ca_pem: `${CA.cert}\n${OTHER_CA.cert}` } }), []);
  });

  it('refuses garbage inside valid markers, naming the field', () => {
    assertCaRefused(block('bm90IGEgY2VydGlmaWNhdGUgYXQgYWxs'), 'garbage base64', /not a parsable X\.509 certificate/);
    assertCaRefused(block('!!!! not base64 !!!!'), 'not base64', /not a parsable/);
  });

  it('refuses a leaf (non-CA) certificate, signed or self-signed', () => {
    assertCaRefused(LEAF.cert, 'CA-signed leaf', /is not a CA certificate/);
    assertCaRefused(SELF_SIGNED_LEAF.cert, 'self-signed leaf', /is not a CA certificate/);
  });

  it('refuses a bundle of two certificates where one is bad, saying which', () => {
    assertCaRefused(`${CA.cert}${block('AAAA')}`, 'good then garbage', /^certificate 2: /);
    assertCaRefused(`${LEAF.cert}${CA.cert}`, 'leaf then CA', /^certificate 1: /);
  });

  it('refuses an empty block, no block, text outside blocks, a key block, and trailing bytes', () => {
    assertCaRefused(block(''), 'empty block', /empty block/);
    assertCaRefused('-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----', 'empty block without newline', /empty block/);
    assertCaRefused('', 'empty string');
    assertCaRefused('not a certificate', 'no block');
    assertCaRefused(`# my CA\n${CA.cert}`, 'comment outside', /outside/);
    assertCaRefused(`${CA.cert}${CA.key}`, 'private key pasted too', /not a certificate/);
    assertCaRefused(CA.cert.replace('-----END CERTIFICATE-----', '-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----'), 'unterminated block', /outside/);
    // The DER of the CA plus extra bytes: parsers may ignore the tail, Sluice does not admit it.
    const der = Buffer.from(CA.cert.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    assertCaRefused(block(Buffer.concat([der, Buffer.from([0, 0, 0])]).toString('base64')), 'trailing bytes', /not a parsable X\.509 certificate/);
  });

  it('bounds the bundle: size and count', () => {
    assertCaRefused(CA.cert.repeat(33), '33 certificates', /at most 32/);
    assert.deepEqual(issuesFor({ verify: { ca_pem: CA.cert.repeat(32) } }), []);
    assertCaRefused(`${CA.cert}${' '.repeat(65_536)}`, 'over 64 KiB');
  });
});

describe('upstream tls (verification by default)', () => {
  it('refuses insecure_skip_verify together with verify, and anything but true', () => {
    const both = issuesFor({ insecure_skip_verify: true, verify: {} });
    assert.ok(both.some((i) => JSON.stringify(i.path) === JSON.stringify(['tls', 'insecure_skip_verify'])), JSON.stringify(both));
    const falsy = issuesFor({ insecure_skip_verify: false as unknown as true });
    assert.ok(falsy.some((i) => JSON.stringify(i.path) === JSON.stringify(['tls', 'insecure_skip_verify'])), JSON.stringify(falsy));
  });

  function tlsContext(tls: UpstreamInput['tls'], hosts?: string[], options: { systemCaFile?: string } = {}): UpstreamTlsContext__Output {
    const upstream = UpstreamSchema.parse(upstreamWith(tls, hosts));
    // Through the wire format, as Envoy sees it.
    const bytes = encode('envoy.config.cluster.v3.Cluster', upstreamCluster(upstream, options));
    const socket = (decode('envoy.config.cluster.v3.Cluster', bytes) as unknown as Cluster__Output).transport_socket;
    assert.ok(socket?.typed_config, 'a TLS transport socket');
    return unpackAny(socket.typed_config) as unknown as UpstreamTlsContext__Output;
  }

  it('tls: {} and verify: {} trust the system CA bundle file (never system_root_certs) and check the endpoint IP', () => {
    for (const tls of [{}, { verify: {} }]) {
      const context = tlsContext(tls, ['10.0.0.2', '10.0.0.1', '0:0:0:0:0:0:0:1']);
      const validation = context.common_tls_context?.validation_context;
      assert.equal(validation?.trusted_ca?.filename, DEFAULT_SYSTEM_CA_FILE);
      assert.equal(validation?.system_root_certs ?? undefined, undefined);
      assert.deepEqual(validation?.match_typed_subject_alt_names, [
        { san_type: 'IP_ADDRESS', matcher: { exact: '10.0.0.1' } },
        { san_type: 'IP_ADDRESS', matcher: { exact: '10.0.0.2' } },
        { san_type: 'IP_ADDRESS', matcher: { exact: '::1' } },
      ]);
      assert.equal(context.sni || undefined, undefined, 'an IP is never sent as SNI');
    }
  });

  it('uses the systemCaFile option when given', () => {
    assert.equal(tlsContext({}, undefined, { systemCaFile: '/etc/pki/tls/certs/ca-bundle.crt' }).common_tls_context?.validation_context?.trusted_ca?.filename, '/etc/pki/tls/certs/ca-bundle.crt');
  });

  it('a hostname endpoint is sent as SNI and checked as a DNS SAN; sni overrides both', () => {
    const byHost = tlsContext({ verify: { ca_pem: CA.cert } }, ['API.Example.com']);
    assert.equal(byHost.sni, 'api.example.com');
    assert.equal(byHost.common_tls_context?.validation_context?.trusted_ca?.inline_string, CA.cert);
    assert.deepEqual(byHost.common_tls_context?.validation_context?.match_typed_subject_alt_names, [{ san_type: 'DNS', matcher: { exact: 'api.example.com' } }]);
    const bySni = tlsContext({ sni: 'users.internal' }, ['api.example.com', '10.0.0.1']);
    assert.equal(bySni.sni, 'users.internal');
    assert.deepEqual(bySni.common_tls_context?.validation_context?.match_typed_subject_alt_names, [{ san_type: 'DNS', matcher: { exact: 'users.internal' } }]);
  });

  it('endpoints with different names: no SNI, and the certificate must carry one of them', () => {
    const mixed = tlsContext({}, ['b.example', 'a.example', '10.0.0.1']);
    assert.equal(mixed.sni || undefined, undefined);
    assert.deepEqual(mixed.common_tls_context?.validation_context?.match_typed_subject_alt_names, [
      { san_type: 'DNS', matcher: { exact: 'a.example' } },
      { san_type: 'DNS', matcher: { exact: 'b.example' } },
      { san_type: 'IP_ADDRESS', matcher: { exact: '10.0.0.1' } },
    ]);
  });

  it('insecure_skip_verify emits no validation context at all', () => {
    const skip = tlsContext({ insecure_skip_verify: true, sni: 'x.example' });
    assert.equal(skip.sni, 'x.example');
    assert.equal(skip.common_tls_context?.validation_context ?? undefined, undefined);
  });
});
