// API keys: generated here, shown to the operator once, stored only as an
// HMAC-SHA256 under the server secret. The visible prefix identifies a key in
// lists and logs without revealing it.
import { createHmac, randomBytes } from 'node:crypto';
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
