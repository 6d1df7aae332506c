// Retry delays for anything that waits on Postgres coming back (the change
// feed's reconnects, the publisher's State loads). Exponential so a long outage
// costs few attempts; "full jitter" (a random delay up to the cap) so replicas
// that lost Postgres together do not all reconnect in the same instant.

export interface BackoffPolicy {
  /** Cap of the first retry's delay, in ms. */
  initialMs: number;
  /** Cap of every delay, in ms. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 10_000 };

/**
 * The delay before retry number `attempt` (1 for the first retry): uniform in
 * [cap/2, cap] with cap = min(maxMs, initialMs * 2^(attempt-1)). Half the cap is
 * kept as a floor so a retry never fires at once after a failure.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(attempt, 1) - 1, 30); // 2^30 already exceeds any sane cap
  const cap = Math.min(policy.maxMs, policy.initialMs * 2 ** exponent);
  return Math.round(cap / 2 + random() * (cap / 2));
}
