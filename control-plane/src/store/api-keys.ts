// API keys: generated here, shown to the operator once, stored only as an
// HMAC-SHA256 under the server secret. The visible prefix identifies a key in
// lists and logs without revealing it.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { CredentialKey } from './config-store.ts';

const KEY_PREFIX = 'sk_';

export interface NewApiKey extends CredentialKey {
  /** The key itself: returned once in the create response, never stored or logged. */
  key: string;
}

export function generateApiKey(secret: string): NewApiKey {
  const prefix = KEY_PREFIX + randomBytes(6).toString('base64url').replace(/[-_]/g, 'x').slice(0, 8);
  const key = `${prefix}.${randomBytes(32).toString('base64url')}`;
  return { key, prefix, hash: hashApiKey(secret, key) };
}

export function hashApiKey(secret: string, key: string): string {
  return createHmac('sha256', secret).update(key).digest('hex');
}

/** Constant-time comparison of a presented key against a stored hash. */
export function apiKeyMatches(secret: string, presented: string, storedHash: string): boolean {
  const a = Buffer.from(hashApiKey(secret, presented), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The visible prefix of a presented key (for logs), or undefined if it is not one of ours. */
export function apiKeyPrefix(presented: string): string | undefined {
  const dot = presented.indexOf('.');
  return presented.startsWith(KEY_PREFIX) && dot > 0 ? presented.slice(0, dot) : undefined;
}
