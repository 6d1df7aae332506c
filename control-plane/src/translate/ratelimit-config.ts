// State -> rate-limit config resources (ratelimit.config.ratelimit.v3.RateLimitConfig,
// Sluice's own definition in proto/ratelimit/): the limits of one domain as the
// descriptor tree envoyproxy/ratelimit reads over xDS, so that service can take
// the place of Sluice's with no other change. Pure: no I/O, no clock.
//
// The tree follows the descriptors the ratelimit filter sends (model/contract.ts,
// RATELIMIT_DESCRIPTOR), one branch per policy:
//
//   (sluice_policy = <policy name>)
//     -> (<key of part 1>)            no value: each distinct value counts alone
//        -> (<key of part 2>) ... -> the policy's limit on the last node
//
// A header part's entry is left out when the request lacks the header, so the
// descriptor is shorter; each header node therefore also has its following parts
// as siblings (the branch that skips it), and every node after which only header
// parts remain carries the limit too. (A policy with h header parts has at most
// 2^h leaves; the model allows 8 parts.)
//
// Limits: requests_per_unit is the policy's capacity (requests + burst, the
// most Sluice admits in one window). envoyproxy/ratelimit counts fixed windows
// only, so a sliding_window policy served to it becomes a fixed window of the
// same length: the documented difference of swapping services.
import { PERIOD_SECONDS, RATELIMIT_DESCRIPTOR, type RateLimitKeyPart, type RateLimitPolicy, type State } from '../model/index.ts';
import type { RlsConfig } from '../proto/codec.ts';
import type { RateLimitDescriptor } from '../proto/generated/ratelimit/config/ratelimit/v3/RateLimitDescriptor.ts';
import type { RateLimitPolicy as RlsLimit } from '../proto/generated/ratelimit/config/ratelimit/v3/RateLimitPolicy.ts';
import { compareStrings } from './util.ts';

export const RATELIMIT_CONFIG_MESSAGE = 'ratelimit.config.ratelimit.v3.RateLimitConfig' as const;

/**
 * One RateLimitConfig per domain, named after its domain (envoyproxy/ratelimit
 * refuses two configs for one domain). Sluice's filter sends one domain, so this
 * is one resource with every policy of the State, sorted by name.
 */
export function rateLimitConfigs(state: State, domain: string): RlsConfig[] {
  const policies = [...state.rate_limit_policies].sort((a, b) => compareStrings(a.name, b.name));
  return [{ name: domain, domain, descriptors: policies.map(policyDescriptor) }];
}

function policyDescriptor(policy: RateLimitPolicy): RateLimitDescriptor {
  const limit = rlsLimit(policy);
  return node(RATELIMIT_DESCRIPTOR.policy, policy.name, policy.key, 0, limit);
}

/** A node; the parts from index `next` on go below it. */
function node(key: string, value: string | undefined, parts: readonly RateLimitKeyPart[], next: number, limit: RlsLimit): RateLimitDescriptor {
  const children = branches(parts, next, limit);
  return {
    key,
    ...(value !== undefined ? { value } : {}),
    ...(onlyHeadersFrom(parts, next) ? { rate_limit: limit } : {}),
    ...(children.length > 0 ? { descriptors: children } : {}),
  };
}

/** The nodes a descriptor can continue with at part `i`: that part, or (for a header) whatever follows it. */
function branches(parts: readonly RateLimitKeyPart[], i: number, limit: RlsLimit): RateLimitDescriptor[] {
  const part = parts[i];
  if (part === undefined) return [];
  const here = node(descriptorKey(part), undefined, parts, i + 1, limit);
  return typeof part === 'string' ? [here] : [here, ...branches(parts, i + 1, limit)];
}

/** True when every part from `i` on is a header (so the descriptor may end before them). */
function onlyHeadersFrom(parts: readonly RateLimitKeyPart[], i: number): boolean {
  return parts.slice(i).every((part) => typeof part !== 'string');
}

/** The descriptor entry key the filter emits for a key part (translate/filters.ts descriptorAction). */
export function descriptorKey(part: RateLimitKeyPart): string {
  if (part === 'route') return RATELIMIT_DESCRIPTOR.route;
  if (part === 'consumer') return RATELIMIT_DESCRIPTOR.consumer;
  if (part === 'client_ip') return RATELIMIT_DESCRIPTOR.clientIp;
  return `${RATELIMIT_DESCRIPTOR.headerPrefix}${part.header}`;
}

const UNIT_BY_SECONDS: ReadonlyMap<number, NonNullable<RlsLimit['unit']>> = new Map([
  [1, 'SECOND'],
  [60, 'MINUTE'],
  [3_600, 'HOUR'],
  [86_400, 'DAY'],
]);

function rlsLimit(policy: RateLimitPolicy): RlsLimit {
  const unit = UNIT_BY_SECONDS.get(PERIOD_SECONDS[policy.limit.per]);
  if (!unit) throw new Error(`rate-limit period '${policy.limit.per}' has no RateLimitConfig unit`);
  return { unit, requests_per_unit: policy.limit.requests + (policy.burst ?? 0) };
}
