// The judgement of one rollout step: pure (no I/O, no clock). Given the
// thresholds and the canary's and the stable upstream's traffic since the step
// began, decide promote, hold or rollback, with a reason naming the threshold.
//
// Rules, in order:
//   1. Fewer canary requests than min_requests: hold (too little evidence).
//   2. Canary 5xx percent over max_5xx_percent: rollback, unless the stable
//      upstream fails at least as often (then the canary is not the cause: hold).
//   3. Canary p99 over max_p99_ms: rollback, unless stable's p99 is as high (hold).
//      No canary p99 yet while a latency threshold is set: hold.
//   4. Canary p99 more than max_p99_increase_ms above stable's: rollback
//      (skipped while stable has no p99, e.g. at the 100% step).
//   5. Otherwise promote.
// So a canary never worse than stable is never rolled back, and any breach
// over min_requests that stable does not share is.
import type { WindowStats } from '../telemetry/fleet-stats.ts';
import type { AnalysisThresholds, JudgedStats, ThresholdName, Verdict } from '../model/rollout.ts';

export interface Analysis {
  verdict: Verdict;
  reason: string;
  threshold?: ThresholdName;
  canary: JudgedStats;
  stable: JudgedStats;
}

export function percent5xx(stats: WindowStats): number {
  return stats.requests > 0 ? (100 * stats.status5xx) / stats.requests : 0;
}

export function judged(stats: WindowStats): JudgedStats {
  const out: JudgedStats = {
    requests: stats.requests,
    status2xx: stats.status2xx,
    status4xx: stats.status4xx,
    status5xx: stats.status5xx,
    percent5xx: percent5xx(stats),
  };
  if (stats.p50Ms !== undefined) out.p50Ms = stats.p50Ms;
  if (stats.p95Ms !== undefined) out.p95Ms = stats.p95Ms;
  if (stats.p99Ms !== undefined) out.p99Ms = stats.p99Ms;
  return out;
}

const fmt = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(2));

export function analyse(thresholds: AnalysisThresholds, canaryStats: WindowStats, stableStats: WindowStats): Analysis {
  const canary = judged(canaryStats);
  const stable = judged(stableStats);
  const decide = (verdict: Verdict, reason: string, threshold?: ThresholdName): Analysis => ({
    verdict, reason, canary, stable, ...(threshold ? { threshold } : {}),
  });

  if (canary.requests < thresholds.min_requests) {
    return decide('hold', `min_requests: canary has ${canary.requests} of ${thresholds.min_requests} requests needed to judge`, 'min_requests');
  }

  if (canary.percent5xx > thresholds.max_5xx_percent) {
    const numbers = `canary 5xx ${fmt(canary.percent5xx)}% (${canary.status5xx}/${canary.requests}) > max_5xx_percent ${fmt(thresholds.max_5xx_percent)}%; stable ${fmt(stable.percent5xx)}% (${stable.status5xx}/${stable.requests})`;
    if (stable.requests > 0 && stable.percent5xx >= canary.percent5xx) return decide('hold', `max_5xx_percent: stable fails as often: ${numbers}`, 'max_5xx_percent');
    return decide('rollback', `max_5xx_percent: ${numbers}`, 'max_5xx_percent');
  }

  const latencyJudged = thresholds.max_p99_ms !== undefined || thresholds.max_p99_increase_ms !== undefined;
  if (latencyJudged && canary.p99Ms === undefined) {
    const threshold = thresholds.max_p99_ms !== undefined ? 'max_p99_ms' : 'max_p99_increase_ms';
    return decide('hold', `${threshold}: no canary latency percentiles yet`, threshold);
  }
  const canaryP99 = canary.p99Ms ?? 0;

  if (thresholds.max_p99_ms !== undefined && canaryP99 > thresholds.max_p99_ms) {
    const numbers = `canary p99 ${fmt(canaryP99)} ms > max_p99_ms ${thresholds.max_p99_ms} ms; stable p99 ${stable.p99Ms === undefined ? 'unknown' : `${fmt(stable.p99Ms)} ms`}`;
    if (stable.p99Ms !== undefined && stable.p99Ms >= canaryP99) return decide('hold', `max_p99_ms: stable is as slow: ${numbers}`, 'max_p99_ms');
    return decide('rollback', `max_p99_ms: ${numbers}`, 'max_p99_ms');
  }

  if (thresholds.max_p99_increase_ms !== undefined && stable.p99Ms !== undefined && canaryP99 - stable.p99Ms > thresholds.max_p99_increase_ms) {
    return decide(
      'rollback',
      `max_p99_increase_ms: canary p99 ${fmt(canaryP99)} ms is ${fmt(canaryP99 - stable.p99Ms)} ms above stable's ${fmt(stable.p99Ms)} ms (> ${thresholds.max_p99_increase_ms} ms)`,
      'max_p99_increase_ms',
    );
  }

  return decide('promote', `within thresholds: canary 5xx ${fmt(canary.percent5xx)}% over ${canary.requests} requests${canary.p99Ms === undefined ? '' : `, p99 ${fmt(canary.p99Ms)} ms`}`);
}
