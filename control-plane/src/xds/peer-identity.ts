// Who is on the other end of an ADS stream, when xDS runs with client
// certificates: the names the peer's verified certificate vouches for, and the
// rule that says which node ids those names may claim.
//
// The rule (also in SECURITY.md): a certificate's identities are its DNS SANs
// and the last path segment of each URI SAN (so a SPIFFE id
// spiffe://example.org/ns/edge/sa/gateway-1 vouches for "gateway-1"); only a
// certificate with neither falls back to its subject CN (as RFC 6125 does for
// host names). A node id is admitted when it matches the node-id pattern for
// one of those identities. The default pattern `{identity}` means "equal".
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';

export const DEFAULT_NODE_ID_PATTERN = '{identity}';

const PLACEHOLDER = '{identity}';

/** One entry of a certificate's subjectAltName, e.g. { kind: 'DNS', value: 'node-a' }. */
export interface AltName {
  kind: string;
  value: string;
}

/**
 * Parses Node's rendering of subjectAltName ("DNS:a, URI:spiffe://x/y,
 * IP Address:127.0.0.1"). Node quotes a value as a JSON string when it holds
 * characters that would make this ambiguous (a comma, a quote), so a value can
 * never smuggle in a second entry.
 */
export function parseAltNames(text: string | undefined): AltName[] {
  const names: AltName[] = [];
  let i = 0;
  const input = text ?? '';
  while (i < input.length) {
    const colon = input.indexOf(':', i);
    if (colon < 0) break;
    const kind = input.slice(i, colon).trim();
    let value: string;
    let next: number;
    if (input[colon + 1] === '"') {
      const end = closingQuote(input, colon + 2);
      value = JSON.parse(input.slice(colon + 1, end + 1)) as string;
      next = input.indexOf(', ', end + 1);
    } else {
      next = input.indexOf(', ', colon + 1);
      value = input.slice(colon + 1, next < 0 ? undefined : next);
    }
    names.push({ kind, value });
    if (next < 0) break;
    i = next + 2;
  }
  return names;
}

function closingQuote(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  throw new Error('unterminated quoted value in subjectAltName');
}

/** The subject's CN from Node's "C=..\nCN=.." rendering (quoted values are JSON strings). */
function commonName(subject: string): string | undefined {
  for (const line of subject.split('\n')) {
    if (!line.startsWith('CN=')) continue;
    const raw = line.slice(3);
    return raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
  }
  return undefined;
}

function lastPathSegment(uri: string): string | undefined {
  try {
    const segments = new URL(uri).pathname.split('/').filter((s) => s !== '');
    const last = segments.at(-1);
    return last === undefined ? undefined : decodeURIComponent(last);
  } catch {
    return undefined;
  }
}

/** The names `cert` vouches for (see the rule at the top of this file). */
export function certificateIdentities(cert: Pick<X509Certificate, 'subjectAltName' | 'subject'>): string[] {
  const identities = new Set<string>();
  for (const { kind, value } of parseAltNames(cert.subjectAltName)) {
    if (kind === 'DNS') identities.add(value);
    if (kind === 'URI') {
      const segment = lastPathSegment(value);
      if (segment) identities.add(segment);
    }
  }
  if (identities.size === 0) {
    const cn = commonName(cert.subject);
    if (cn) identities.add(cn);
  }
  return [...identities];
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * `{identity}` stands for one certificate identity, taken literally; `*` stands
 * for one or more of [A-Za-z0-9_-] (no dot, no slash, like a DNS label
 * wildcard); everything else is literal. `{identity}-*` lets every replica
 * sharing one certificate "gateway" use node ids gateway-<pod>.
 */
export function nodeIdAdmitted(nodeId: string, identities: readonly string[], pattern = DEFAULT_NODE_ID_PATTERN): boolean {
  const [before = '', after = ''] = pattern.split(PLACEHOLDER);
  const part = (literal: string) => literal.split('*').map(escapeRegExp).join('[A-Za-z0-9_-]+');
  return identities.some((identity) =>
    new RegExp(`^${part(before)}${escapeRegExp(identity)}${part(after)}$`).test(nodeId),
  );
}

/** The verified peer of one call. */
export interface PeerIdentity {
  /** What the certificate vouches for. */
  identities: string[];
  /** True when this peer may speak for `nodeId`. */
  admits(nodeId: string): boolean;
}

/**
 * The identity of a TLS peer whose certificate the server verified, from
 * grpc-js's auth context (`sslPeerCertificate` is only set for an authorized
 * peer); undefined when there is none.
 */
export function peerIdentity(peer: PeerCertificate | undefined, pattern = DEFAULT_NODE_ID_PATTERN): PeerIdentity | undefined {
  if (!peer?.raw) return undefined;
  let identities: string[];
  try {
    identities = certificateIdentities(new X509Certificate(peer.raw));
  } catch {
    return undefined; // unreadable names vouch for nothing
  }
  return { identities, admits: (nodeId) => nodeIdAdmitted(nodeId, identities, pattern) };
}
