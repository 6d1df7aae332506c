// Certificates for tests, made at test time with Debian's openssl CLI in a temp
// folder (never committed keys): a CA, server certificates it signs, and
// self-signed ones. EC P-256 keys keep generation fast.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const OPENSSL = '/usr/bin/openssl';

export interface CertAndKey {
  /** PEM certificate. */
  cert: string;
  /** PEM private key (unencrypted). */
  key: string;
}

export interface SubjectNames {
  /** DNS subjectAltNames. */
  dns?: string[];
  /** IP subjectAltNames. */
  ips?: string[];
}

export interface CertFactory {
  /** A CA certificate (basicConstraints CA:TRUE) and its key. */
  ca(commonName: string): CertAndKey;
  /** A server (leaf, CA:FALSE) certificate signed by `issuer`. */
  signed(issuer: CertAndKey, names: SubjectNames): CertAndKey;
  /** A self-signed server (leaf, CA:FALSE) certificate. */
  selfSigned(names: SubjectNames): CertAndKey;
  /** The temp folder holding the keys and certificates. */
  dir: string;
  /** Removes the temp folder. */
  cleanup(): void;
}

const CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SLUICE_TEST_SAN
`;

function subjectAltName(names: SubjectNames): string {
  const entries = [...(names.dns ?? []).map((d) => `DNS:${d}`), ...(names.ips ?? []).map((ip) => `IP:${ip}`)];
  if (entries.length === 0) throw new Error('a server certificate needs at least one name');
  return entries.join(',');
}

export function certFactory(): CertFactory {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-tls-'));
  const config = path.join(dir, 'openssl.cnf');
  writeFileSync(config, CONFIG);
  let counter = 0;
  const files = () => {
    counter += 1;
    return { cert: path.join(dir, `${counter}.crt`), key: path.join(dir, `${counter}.key`), csr: path.join(dir, `${counter}.csr`) };
  };
  const run = (args: string[], san = 'DNS:unused'): void => {
    execFileSync(OPENSSL, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SLUICE_TEST_SAN: san } });
  };
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const read = (f: { cert: string; key: string }): CertAndKey => ({ cert: readFileSync(f.cert, 'utf8'), key: readFileSync(f.key, 'utf8') });

  return {
    dir,
    ca(commonName) {
      const f = files();
      run(['req', '-x509', ...newKey, '-keyout', f.key, '-out', f.cert, '-days', '2', '-config', config, '-extensions', 'ca_ext', '-subj', `/CN=${commonName}`]);
      return read(f);
    },
    signed(issuer, names) {
      const f = files();
      const issuerFiles = files();
      writeFileSync(issuerFiles.cert, issuer.cert);
      writeFileSync(issuerFiles.key, issuer.key);
      const san = subjectAltName(names);
      run(['req', '-new', ...newKey, '-keyout', f.key, '-out', f.csr, '-config', config, '-subj', '/CN=sluice-test-server'], san);
      run(
        ['x509', '-req', '-in', f.csr, '-CA', issuerFiles.cert, '-CAkey', issuerFiles.key, '-set_serial', String(1000 + counter),
          '-days', '2', '-extfile', config, '-extensions', 'leaf_ext', '-out', f.cert],
        san,
      );
      return read(f);
    },
    selfSigned(names) {
      const f = files();
      run(
        ['req', '-x509', ...newKey, '-keyout', f.key, '-out', f.cert, '-days', '2', '-config', config,
          '-extensions', 'leaf_ext', '-subj', '/CN=sluice-test-self-signed'],
        subjectAltName(names),
      );
      return read(f);
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
