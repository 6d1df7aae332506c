// The authz service hashes presented API keys itself (it may not import store/):
// its hash must be the store's, and its key-shape check must accept every key
// the store generates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateApiKey, hashApiKey } from '../../control-plane/src/store/api-keys.ts';
import { hashPresentedKey, isWellFormedApiKey, looksLikeApiKey, sameHash } from '../../control-plane/src/authz/api-keys.ts';

const SECRET = 'unit-authz-secret-0123456789abcdefghij';

test('a presented key hashes to what the store stored', () => {
  for (let i = 0; i < 200; i += 1) {
    const key = generateApiKey(SECRET);
    assert.equal(hashPresentedKey(SECRET, key.key), key.hash);
    assert.equal(hashPresentedKey(SECRET, key.key), hashApiKey(SECRET, key.key));
    assert.notEqual(hashPresentedKey(`${SECRET}x`, key.key), key.hash);
  }
});

test('every generated key has the shape the service accepts; near misses do not', () => {
  for (let i = 0; i < 200; i += 1) {
    const { key } = generateApiKey(SECRET);
    assert.ok(isWellFormedApiKey(key), key.slice(0, 12));
    assert.ok(looksLikeApiKey(key));
    assert.ok(!isWellFormedApiKey(`${key}x`));
    assert.ok(!isWellFormedApiKey(key.slice(0, -1)));
    assert.ok(!isWellFormedApiKey(` ${key}`));
    assert.ok(!isWellFormedApiKey(key.replace('.', '_')));
  }
  assert.ok(!isWellFormedApiKey('sk_'));
  assert.ok(!looksLikeApiKey('eyJhbGciOi'));
});

test('sameHash: equal digests only, never throws on length or garbage', () => {
  const a = hashApiKey(SECRET, 'a');
  const b = hashApiKey(SECRET, 'b');
  assert.ok(sameHash(a, a));
  assert.ok(sameHash(a, a.toUpperCase()));
  assert.ok(!sameHash(a, b));
  assert.ok(!sameHash(a, a.slice(0, 62)));
  assert.ok(!sameHash('', ''));
  assert.ok(!sameHash(a, 'not hex'));
});
