// What Envoy is told to send. Headers come from the service in the
// RateLimitResponse (response_headers_to_add), not from the filter's
// enable_x_ratelimit_headers: the filter's option writes the draft-03 header
// format (`X-RateLimit-Limit: 100, 100;w=60`) from the descriptor statuses and
// has no Retry-After, and switching it on is a translate/ change for every
// route; the service knows the exact remaining count and the time a slot frees,
// and Envoy adds these headers to both allowed responses and the 429 it answers
// itself. The 429's body (raw_body) is problem+json naming the policy.
import { PERIOD_SECONDS } from '../model/contract.ts';
import type { RateLimitPolicy } from '../model/index.ts';
import type { RateLimitRequest, RateLimitResponse } from '../proto/codec.ts';
import type { PlannedCounter } from './descriptors.ts';
import type { CounterVerdict, Decision } from './window.ts';

type DescriptorStatus = NonNullable<RateLimitResponse['statuses']>[number];
type Unit = NonNullable<NonNullable<DescriptorStatus['current_limit']>['unit']>;

const UNITS: Readonly<Record<RateLimitPolicy['limit']['per'], Unit>> = { second: 'SECOND', minute: 'MINUTE', hour: 'HOUR', day: 'DAY' };

/** Seconds for a header: rounded up, so a client that waits that long is not refused for being early. */
export function headerSeconds(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}

/** The answer for a counted decision: one status per request descriptor, headers for the binding counter. */
export function countedResponse(request: RateLimitRequest, counters: readonly PlannedCounter[], decision: Decision): RateLimitResponse {
  const statuses: DescriptorStatus[] = (request.descriptors ?? []).map(() => ({ code: 'OK' }));
  counters.forEach((counter, i) => {
    const verdict = decision.verdicts[i]!;
    for (const index of counter.descriptors) statuses[index] = descriptorStatus(counter, verdict);
  });
  const binding = bindingCounter(counters, decision);
  if (!binding) return { overall_code: 'OK', statuses };
  const { counter, verdict } = binding;
  const capacity = counter.spec.capacity;
  const headers = [
    { key: 'x-ratelimit-limit', value: String(capacity) },
    { key: 'x-ratelimit-remaining', value: String(Math.max(0, capacity - verdict.used)) },
    { key: 'x-ratelimit-reset', value: String(headerSeconds(decision.admitted ? verdict.resetMs : verdict.retryAfterMs)) },
  ];
  if (decision.admitted) return { overall_code: 'OK', statuses, response_headers_to_add: headers };
  const retryAfter = Math.max(1, headerSeconds(verdict.retryAfterMs));
  return {
    overall_code: 'OVER_LIMIT',
    statuses,
    response_headers_to_add: [...headers, { key: 'retry-after', value: String(retryAfter) }, { key: 'content-type', value: 'application/problem+json' }],
    raw_body: problem(429, 'Too Many Requests', `rate limit '${counter.policy.name}' exceeded; retry after ${retryAfter} s`, counter.policy.name, retryAfter),
  };
}

/** The answer when the store failed and some policy's failure mode is deny. */
export function unavailableResponse(request: RateLimitRequest, policy: string): RateLimitResponse {
  return {
    overall_code: 'OVER_LIMIT',
    statuses: (request.descriptors ?? []).map(() => ({ code: 'OVER_LIMIT' })),
    response_headers_to_add: [
      { key: 'retry-after', value: '1' },
      { key: 'content-type', value: 'application/problem+json' },
    ],
    raw_body: problem(429, 'Too Many Requests', `rate limit '${policy}' cannot be checked right now and refuses while it cannot`, policy, 1),
  };
}

/** Bytes, not a string: protobufjs reads a string in a bytes field as base64. */
function problem(status: number, title: string, detail: string, policy: string, retryAfterS: number): Buffer {
  return Buffer.from(JSON.stringify({ type: 'about:blank', title, status, detail, policy, retry_after_s: retryAfterS }));
}

function descriptorStatus(counter: PlannedCounter, verdict: CounterVerdict): DescriptorStatus {
  const policy = counter.policy;
  const untilReset = verdict.over ? verdict.retryAfterMs : verdict.resetMs;
  return {
    code: verdict.over ? 'OVER_LIMIT' : 'OK',
    current_limit: { name: policy.name, requests_per_unit: counter.spec.capacity, unit: UNITS[policy.limit.per] },
    limit_remaining: Math.max(0, counter.spec.capacity - verdict.used),
    duration_until_reset: { seconds: String(Math.floor(untilReset / 1000)), nanos: (untilReset % 1000) * 1_000_000 },
  };
}

/**
 * The counter the headers describe: when refused, the over counter that frees
 * last (the client must wait for it); when admitted, the one with the fewest
 * requests left (then the shortest period, then the policy name, for stable output).
 */
function bindingCounter(counters: readonly PlannedCounter[], decision: Decision): { counter: PlannedCounter; verdict: CounterVerdict } | undefined {
  let best: { counter: PlannedCounter; verdict: CounterVerdict } | undefined;
  counters.forEach((counter, i) => {
    const verdict = decision.verdicts[i]!;
    if (!decision.admitted && !verdict.over) return;
    if (!best || binds(counter, verdict, best.counter, best.verdict, decision.admitted)) best = { counter, verdict };
  });
  return best;
}

function binds(a: PlannedCounter, av: CounterVerdict, b: PlannedCounter, bv: CounterVerdict, admitted: boolean): boolean {
  if (!admitted) return av.retryAfterMs !== bv.retryAfterMs ? av.retryAfterMs > bv.retryAfterMs : a.policy.name < b.policy.name;
  const left = (c: PlannedCounter, v: CounterVerdict) => c.spec.capacity - v.used;
  if (left(a, av) !== left(b, bv)) return left(a, av) < left(b, bv);
  const period = (c: PlannedCounter) => PERIOD_SECONDS[c.policy.limit.per];
  if (period(a) !== period(b)) return period(a) < period(b);
  return a.policy.name < b.policy.name;
}
