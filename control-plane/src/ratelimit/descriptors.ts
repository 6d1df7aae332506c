// From Envoy's descriptors to counters. Each descriptor Sluice's translator emits
// starts with (sluice_policy, <name>) and then carries the policy's key values in
// the policy's order (model/contract.ts, RATELIMIT_DESCRIPTOR). A descriptor that
// does not start that way, or names a policy the current State does not have
// (Envoy may briefly run a revision ahead of or behind the service), is not
// limited here.
import { createHash } from 'node:crypto';
import { PERIOD_SECONDS, RATELIMIT_DESCRIPTOR } from '../model/contract.ts';
import type { RateLimitPolicy } from '../model/index.ts';
import type { RateLimitRequest } from '../proto/codec.ts';
import type { CounterSpec } from './window.ts';

/** Hash tags must not contain braces; domains are kept to a plain, short alphabet. */
export const DOMAIN_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** One counter the request touches and the descriptors (by index) it answers for. */
export interface PlannedCounter {
  policy: RateLimitPolicy;
  spec: CounterSpec;
  descriptors: number[];
}

export interface Plan {
  counters: PlannedCounter[];
  /** Descriptors not limited here (not Sluice's layout, or an unknown policy). */
  ignored: number;
}

/**
 * The counters for one request. Two descriptors that map to the same counter are
 * merged (their hits summed), so one request can never count twice against a
 * check that saw the counter only once.
 */
export function planCounters(request: RateLimitRequest, domain: string, policies: ReadonlyMap<string, RateLimitPolicy>): Plan {
  const byKey = new Map<string, PlannedCounter>();
  let ignored = 0;
  // hits_addend 0 (unset) means 1. (The per-descriptor hits_addend of newer Envoy
  // APIs is not in the protos Sluice loads, so Envoy's value arrives here only.)
  const hits = positiveOr(request.hits_addend, 1);
  (request.descriptors ?? []).forEach((descriptor, index) => {
    const entries = descriptor.entries ?? [];
    const first = entries[0];
    const policy = first?.key === RATELIMIT_DESCRIPTOR.policy ? policies.get(first.value ?? '') : undefined;
    if (!policy) {
      ignored += 1;
      return;
    }
    const key = counterKey(domain, policy, entries.slice(1));
    const seen = byKey.get(key);
    if (seen) {
      seen.spec.hits += hits;
      seen.descriptors.push(index);
      return;
    }
    byKey.set(key, {
      policy,
      descriptors: [index],
      spec: {
        key,
        algorithm: policy.algorithm,
        capacity: capacityOf(policy),
        windowMs: PERIOD_SECONDS[policy.limit.per] * 1000,
        hits,
      },
    });
  });
  return { counters: [...byKey.values()], ignored };
}

/** The most requests a policy admits in one window. */
export function capacityOf(policy: RateLimitPolicy): number {
  return policy.limit.requests + (policy.burst ?? 0);
}

/**
 * `{rl:<domain>}:<policy>:<algorithm letter><window ms>:<layout>:<hash of the key values>`.
 * The hash tag keeps a request's counters in one Redis Cluster slot; the window
 * shape is part of the key so changing a policy's period or algorithm starts a
 * fresh count instead of misreading the old buckets (changing `requests` keeps
 * the count); the values are hashed because they come from clients (headers).
 * The layout names what the Redis script keeps in the hash (COUNTER_LAYOUT).
 */
export function counterKey(domain: string, policy: RateLimitPolicy, entries: ReadonlyArray<{ key?: string; value?: string }>): string {
  const shape = `${policy.algorithm === 'fixed_window' ? 'f' : 's'}${PERIOD_SECONDS[policy.limit.per] * 1000}`;
  const prefix = `{rl:${domain}}:${policy.name}:${shape}:${COUNTER_LAYOUT}:`;
  const values = JSON.stringify(entries.map((entry) => [entry.key ?? '', entry.value ?? '']));
  // The same few clients send the same values over and over: a sha256 per decision
  // is the costliest step of planning, so recent keys are remembered (bounded).
  const cacheKey = prefix + values;
  const cached = recentKeys.get(cacheKey);
  if (cached !== undefined) return cached;
  const key = prefix + createHash('sha256').update(values).digest('base64url').slice(0, 22);
  if (cacheKey.length > RECENT_KEY_MAX_CHARS) return key;
  if (recentKeys.size >= RECENT_KEYS_MAX) recentKeys.clear();
  recentKeys.set(cacheKey, key);
  return key;
}

/**
 * Version of what a counter hash holds: 'b2' is buckets plus the 't'/'lo' summary
 * (redis-store.ts). A script that reads hashes differently must use another
 * layout name, so that during a rolling upgrade the old and new scripts never
 * read each other's hashes (each counts apart for at most one window instead).
 */
export const COUNTER_LAYOUT = 'b2';

/** Counter keys by their unhashed form; cleared whole when full (values come from clients, so it must stay bounded). */
const recentKeys = new Map<string, string>();
const RECENT_KEYS_MAX = 10_000;
/** Long values (big headers) are hashed every time, so the cache holds at most ~10,000 x 512 chars. */
const RECENT_KEY_MAX_CHARS = 512;

/** A positive integer, else the fallback. */
function positiveOr(value: number | undefined | null, fallback: number): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : fallback;
}
