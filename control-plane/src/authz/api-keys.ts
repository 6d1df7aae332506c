// API keys as the authz service sees them: recognise a presented key, hash it the
// way the store does, and compare hashes in constant time. The store (which
// generates keys) is not importable from authz/, so the one-line HMAC is repeated
// here; test/unit/authz-api-keys.test.ts pins it to the store's function.
import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * One stored key, as the composition root hands it over (from the store's
 * credential_keys): which credential it belongs to and its HMAC-SHA256 (hex).
 * Its consumer and expiry come from that credential in the State.
 */
export interface ApiKeyRecord {
  credential: string;
  keyHash: string;
}

/** `sk_` + 8 letters/digits (the visible prefix) + `.` + 32 random bytes in base64url. */
const API_KEY_SHAPE = /^sk_[A-Za-z0-9]{8}\.[A-Za-z0-9_-]{43}$/;

/** Loose test for "this Bearer token is meant as an API key" (decides which check applies). */
export function looksLikeApiKey(value: string): boolean {
  return value.startsWith('sk_');
}

/** True when the value has exactly the shape the store generates. */
export function isWellFormedApiKey(value: string): boolean {
  return API_KEY_SHAPE.test(value);
}

/** HMAC-SHA256 of the key under the server secret, hex: the same as store/api-keys.ts hashApiKey. */
export function hashPresentedKey(secret: string, key: string): string {
  return createHmac('sha256', secret).update(key).digest('hex');
}

/** Constant-time equality of two hex digests (false when the lengths differ). */
export function sameHash(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && left.length > 0 && timingSafeEqual(left, right);
}
