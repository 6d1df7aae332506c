// xDS TLS pieces that need no network: the XDS_* settings (files read and
// checked at start), certificate identities and the node-id rule, the xds
// cluster's TLS in adsBootstrap, and the shipped docker-compose/deploy files
// (parsed; their TLS wiring checked against what the code generates).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { adsBootstrap, XDS_CLUSTER, type EnvoyBootstrap, type JsonValue } from '../../envoy/bootstrap.ts';
import { loadConfig, repoRoot } from '../../control-plane/src/config/env.ts';
import { configError } from '../helpers/config-error.ts';
import { certificateIdentities, nodeIdAdmitted, parseAltNames, peerIdentity } from '../../control-plane/src/xds/peer-identity.ts';

let dir: string;
const certs = (name: string) => path.join(dir, 'certs', name);

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-xds-tls-unit-'));
  execFileSync('bash', [path.join(repoRoot, 'scripts/dev-certs.sh'), '--out', path.join(dir, 'certs'), 'node-a'], { stdio: 'ignore' });
});
after(() => rmSync(dir, { recursive: true, force: true }));


describe('XDS_* settings', () => {
  test('plaintext with a 4 MiB receive limit unless told otherwise', () => {
    const config = loadConfig({});
    assert.equal(config.xdsTls, undefined);
    assert.equal(config.xdsMaxReceiveBytes, 4 * 1024 * 1024);
    assert.equal(loadConfig({ XDS_MAX_RECEIVE_BYTES: '1048576' }).xdsMaxReceiveBytes, 1048576);
    assert.match(configError({ XDS_MAX_RECEIVE_BYTES: '100' }), /XDS_MAX_RECEIVE_BYTES: expected 65536 to 268435456 bytes/);
  });

  test('certificate, key and client CA are read once, with the default node-id pattern', () => {
    const config = loadConfig({ XDS_TLS_CERT: certs('server.crt'), XDS_TLS_KEY: certs('server.key'), XDS_CLIENT_CA: certs('ca.crt') });
    assert.deepEqual(config.xdsTls, {
      cert: readFileSync(certs('server.crt')),
      key: readFileSync(certs('server.key')),
      clientCa: readFileSync(certs('ca.crt')),
      nodeIdPattern: '{identity}',
    });
    const serverOnly = loadConfig({ XDS_TLS_CERT: certs('server.crt'), XDS_TLS_KEY: certs('server.key'), XDS_NODE_ID_PATTERN: '' });
    assert.equal(serverOnly.xdsTls?.clientCa, undefined);
  });

  test('a bad file, a missing half or a key from another certificate is named', () => {
    const notPem = path.join(dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    assert.match(configError({ XDS_TLS_CERT: path.join(dir, 'missing.crt'), XDS_TLS_KEY: certs('server.key') }), /XDS_TLS_CERT: cannot read the file \(ENOENT\)/);
    assert.match(configError({ XDS_TLS_CERT: notPem, XDS_TLS_KEY: certs('server.key') }), /XDS_TLS_CERT: expected a PEM certificate chain/);
    assert.match(configError({ XDS_TLS_CERT: certs('server.crt'), XDS_TLS_KEY: notPem }), /XDS_TLS_KEY: expected an unencrypted PEM private key/);
    assert.match(configError({ XDS_TLS_CERT: certs('server.crt') }), /XDS_TLS_KEY: expected a key file when XDS_TLS_CERT is set/);
    assert.match(configError({ XDS_TLS_KEY: certs('server.key') }), /XDS_TLS_CERT: expected a certificate file/);
    assert.match(configError({ XDS_CLIENT_CA: certs('ca.crt') }), /XDS_CLIENT_CA: client certificates need XDS_TLS_CERT/);
    assert.match(
      configError({ XDS_TLS_CERT: certs('server.crt'), XDS_TLS_KEY: certs('nodes/node-a.key') }),
      /XDS_TLS_KEY: the key does not belong to XDS_TLS_CERT's certificate/,
    );
    const tls = { XDS_TLS_CERT: certs('server.crt'), XDS_TLS_KEY: certs('server.key'), XDS_CLIENT_CA: certs('ca.crt') };
    assert.match(configError({ ...tls, XDS_NODE_ID_PATTERN: 'envoy-*' }), /XDS_NODE_ID_PATTERN: expected exactly one \{identity\} \(found 0\)/);
    assert.match(configError({ XDS_NODE_ID_PATTERN: '{identity}' }), /XDS_NODE_ID_PATTERN: only applies with XDS_CLIENT_CA/);
    assert.equal(loadConfig({ ...tls, XDS_NODE_ID_PATTERN: '{identity}-*' }).xdsTls?.nodeIdPattern, '{identity}-*');
  });
});

describe('certificate identity and the node-id rule', () => {
  test('a node certificate vouches for its DNS SAN; a certificate without SANs for its CN', () => {
    assert.deepEqual(certificateIdentities(new X509Certificate(readFileSync(certs('nodes/node-a.crt')))), ['node-a']);
    assert.deepEqual(certificateIdentities(new X509Certificate(readFileSync(certs('ca.crt')))), ['Sluice development CA']);
    const raw = new X509Certificate(readFileSync(certs('nodes/node-a.crt'))).raw;
    assert.deepEqual(peerIdentity({ raw } as Parameters<typeof peerIdentity>[0])?.identities, ['node-a']);
    assert.equal(peerIdentity(undefined), undefined);
  });

  test('URI SANs vouch for their last path segment; SANs win over the CN; IP SANs vouch for nothing', () => {
    const cert = { subjectAltName: 'URI:spiffe://example.org/ns/edge/sa/gateway-1, IP Address:10.0.0.1', subject: 'CN=other' };
    assert.deepEqual(certificateIdentities(cert), ['gateway-1']);
    assert.deepEqual(certificateIdentities({ subjectAltName: 'IP Address:10.0.0.1', subject: 'O=x\nCN=edge-7' }), ['edge-7']);
  });

  test("Node's quoted SAN values cannot smuggle in a second name", () => {
    assert.deepEqual(parseAltNames('DNS:"evil, DNS:node-b", DNS:ok'), [
      { kind: 'DNS', value: 'evil, DNS:node-b' },
      { kind: 'DNS', value: 'ok' },
    ]);
    assert.deepEqual(certificateIdentities({ subjectAltName: 'DNS:"evil, DNS:node-b"', subject: '' }), ['evil, DNS:node-b']);
  });

  test('patterns: {identity} literal, * one DNS-label-like run', () => {
    assert.ok(nodeIdAdmitted('node-a', ['node-a']));
    assert.ok(!nodeIdAdmitted('node-b', ['node-a']));
    assert.ok(!nodeIdAdmitted('node-a2', ['node-a']));
    assert.ok(nodeIdAdmitted('gw-7f9c', ['gw'], '{identity}-*'));
    assert.ok(!nodeIdAdmitted('gw-', ['gw'], '{identity}-*'));
    assert.ok(!nodeIdAdmitted('gw-a.b', ['gw'], '{identity}-*'));
    assert.ok(!nodeIdAdmitted('gw-a/b', ['gw'], '{identity}-*'));
    // Regex syntax in identities or patterns is literal.
    assert.ok(!nodeIdAdmitted('aXb', ['a.b']));
    assert.ok(nodeIdAdmitted('edge.(1)', ['(1)'], 'edge.{identity}'));
  });
});

const xdsCluster = (bootstrap: EnvoyBootstrap) => {
  const statics = bootstrap.static_resources as { clusters: Array<{ [k: string]: JsonValue }> };
  const cluster = statics.clusters.find((c) => c.name === XDS_CLUSTER);
  assert.ok(cluster, 'no xds cluster');
  return cluster;
};

describe('adsBootstrap tls', () => {
  const base = { nodeId: 'n', nodeCluster: 'g', adsPort: 18000, adminPort: 9901 };
  const files = { certFile: '/c/node.crt', keyFile: '/c/node.key', caFile: '/c/ca.crt' };

  test('plaintext unless asked', () => {
    assert.equal(xdsCluster(adsBootstrap({ ...base, adsHost: 'control-plane' })).transport_socket, undefined);
  });

  test('a host name goes into SNI and the DNS SAN check; an IP into an IP SAN check', () => {
    const named = xdsCluster(adsBootstrap({ ...base, adsHost: 'control-plane', tls: files })).transport_socket;
    assert.deepEqual(named, {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        sni: 'control-plane',
        common_tls_context: {
          alpn_protocols: ['h2'],
          tls_certificates: [{ certificate_chain: { filename: '/c/node.crt' }, private_key: { filename: '/c/node.key' } }],
          validation_context: {
            trusted_ca: { filename: '/c/ca.crt' },
            match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: 'control-plane' } }],
          },
        },
      },
    });
    const byIp = xdsCluster(adsBootstrap({ ...base, adsHost: '127.0.0.1', tls: files })).transport_socket as { typed_config: Record<string, JsonValue> };
    assert.equal(byIp.typed_config.sni, undefined);
    assert.match(JSON.stringify(byIp), /"san_type":"IP_ADDRESS","matcher":\{"exact":"127.0.0.1"\}/);
    const overridden = xdsCluster(adsBootstrap({ ...base, adsHost: '127.0.0.1', tls: { ...files, serverName: 'localhost' } })).transport_socket;
    assert.match(JSON.stringify(overridden), /"sni":"localhost"/);
  });
});

describe('shipped deploy files', () => {
  const read = (file: string) => readFileSync(path.join(repoRoot, file), 'utf8');

  test('deploy/envoy-bootstrap.yaml: its xds cluster is what adsBootstrap makes with TLS', () => {
    const shipped = parse(read('deploy/envoy-bootstrap.yaml')) as EnvoyBootstrap;
    const node = shipped.node as { id: string; cluster: string };
    const generated = adsBootstrap({
      nodeId: node.id,
      nodeCluster: node.cluster,
      adsHost: 'control-plane',
      adsPort: 18000,
      adminPort: 9901,
      tls: { certFile: '/etc/sluice/certs/node.crt', keyFile: '/etc/sluice/certs/node.key', caFile: '/etc/sluice/certs/ca.crt' },
    });
    assert.deepEqual(xdsCluster(shipped), xdsCluster(generated));
    assert.deepEqual(shipped.dynamic_resources, generated.dynamic_resources);
  });

  test('docker-compose.yml: the control plane requires client certificates and Envoy mounts its own', () => {
    const compose = parse(read('docker-compose.yml')) as {
      services: Record<string, { environment?: Record<string, string>; volumes?: string[]; ports?: string[] }>;
    };
    const cp = compose.services['control-plane']!;
    assert.equal(cp.environment?.XDS_TLS_CERT, '/certs/server.crt');
    assert.equal(cp.environment?.XDS_TLS_KEY, '/certs/server.key');
    assert.equal(cp.environment?.XDS_CLIENT_CA, '/certs/ca.crt');
    for (const file of ['server.crt', 'server.key', 'ca.crt']) assert.ok(cp.volumes?.includes(`./.certs/${file}:/certs/${file}:ro`), file);
    assert.deepEqual(cp.ports, ['127.0.0.1:9080:9080']);
    const envoy = compose.services.envoy!;
    for (const mount of ['nodes/envoy-compose.crt:/etc/sluice/certs/node.crt', 'nodes/envoy-compose.key:/etc/sluice/certs/node.key', 'ca.crt:/etc/sluice/certs/ca.crt']) {
      assert.ok(envoy.volumes?.includes(`./.certs/${mount}:ro`), mount);
    }
  });

  test('deploy/kubernetes: every document parses and the control plane mounts its xDS certificates', () => {
    const docs = parseAllDocuments(read('deploy/kubernetes/sluice.yaml'));
    for (const doc of docs) assert.deepEqual(doc.errors, []);
    const deployment = docs.map((d) => d.toJS() as { kind: string; spec?: unknown }).find((d) => d.kind === 'Deployment');
    const text = JSON.stringify(deployment);
    for (const variable of ['XDS_TLS_CERT', 'XDS_TLS_KEY', 'XDS_CLIENT_CA']) assert.ok(text.includes(`"name":"${variable}"`), variable);
    assert.ok(text.includes('"secretName":"sluice-xds-tls"'));
  });

  test('.certs/ is git-ignored', () => {
    assert.match(read('.gitignore'), /^\.certs\/$/m);
  });
});
