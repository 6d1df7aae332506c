// A JWKS endpoint on 127.0.0.1 that a test controls (which keys it serves, its
// Cache-Control, whether it answers at all, how often it was asked), and signing
// keys to mint test tokens with.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JSONWebKeySet, type JWK, type JWTPayload } from 'jose';

export interface JwksServer {
  /** The JWKS URL (http://127.0.0.1:<port>/jwks.json). */
  url: string;
  /** Requests answered with the key set. */
  readonly fetches: number;
  /** Requests seen, answered or not. */
  readonly attempts: number;
  setKeys(keys: JWK[]): void;
  /** Cache-Control on the answer; undefined sends none. */
  setCacheControl(value: string | undefined): void;
  /** While down, every request's connection is reset without an answer. */
  setDown(down: boolean): void;
  close(): Promise<void>;
}

export async function startJwksServer(keys: JWK[], cacheControl?: string): Promise<JwksServer> {
  let set: JSONWebKeySet = { keys };
  let control = cacheControl;
  let down = false;
  let fetches = 0;
  let attempts = 0;
  const server = http.createServer((req, res) => {
    attempts += 1;
    if (down) {
      req.socket.destroy();
      return;
    }
    if (req.url !== '/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    fetches += 1;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (control !== undefined) headers['cache-control'] = control;
    res.writeHead(200, headers).end(JSON.stringify(set));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/jwks.json`,
    get fetches() {
      return fetches;
    },
    get attempts() {
      return attempts;
    },
    setKeys: (next) => {
      set = { keys: next };
    },
    setCacheControl: (value) => {
      control = value;
    },
    setDown: (value) => {
      down = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export type SigningAlg = 'RS256' | 'ES256' | 'EdDSA' | 'PS256' | 'RS384';

export interface SigningKey {
  alg: SigningAlg;
  kid: string;
  privateKey: CryptoKey;
  /** The public JWK (with kid, alg, use) as a JWKS serves it. */
  jwk: JWK;
  /** Signs `claims` with this key; `header` overrides the protected header (kid, alg, ...). */
  sign(claims: JWTPayload, header?: Record<string, unknown>): Promise<string>;
}

export async function makeSigningKey(alg: SigningAlg, kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return {
    alg,
    kid,
    privateKey,
    jwk,
    sign: (claims, header = {}) => new SignJWT(claims).setProtectedHeader({ alg, kid, typ: 'JWT', ...header }).sign(privateKey),
  };
}

/** A compact JWS with the given header and payload and any signature text (for alg:none and tampering cases). */
export function rawToken(header: Record<string, unknown>, payload: Record<string, unknown>, signature = ''): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part(header)}.${part(payload)}.${signature}`;
}
