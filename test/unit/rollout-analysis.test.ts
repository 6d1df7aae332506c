// The rollout judgement (rollout/analysis.ts): examples for each rule, and
// properties over arbitrary traffic (fast-check): a canary never worse than
// stable is never rolled back; any 5xx breach over min_requests that stable
// does not share is; nothing is judged below min_requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { analyse, percent5xx } from '../../control-plane/src/rollout/analysis.ts';
import { AnalysisThresholdsSchema, type AnalysisThresholds } from '../../control-plane/src/model/rollout.ts';
import type { WindowStats } from '../../control-plane/src/telemetry/fleet-stats.ts';

const thresholds = (over: Partial<AnalysisThresholds> = {}): AnalysisThresholds => AnalysisThresholdsSchema.parse({ max_5xx_percent: 5, min_requests: 100, ...over });
const stats = (requests: number, status5xx: number, p99Ms?: number): WindowStats => ({
  requests, status2xx: requests - status5xx, status4xx: 0, status5xx, ...(p99Ms === undefined ? {} : { p50Ms: p99Ms / 2, p95Ms: p99Ms * 0.9, p99Ms }),
});

test('too few canary requests: hold, naming min_requests', () => {
  const a = analyse(thresholds(), stats(99, 99), stats(1000, 0));
  assert.equal(a.verdict, 'hold');
  assert.equal(a.threshold, 'min_requests');
  assert.match(a.reason, /^min_requests: canary has 99 of 100/);
});

test('a 20% 5xx canary against a clean stable: rollback naming max_5xx_percent, with the numbers', () => {
  const a = analyse(thresholds(), stats(500, 100), stats(2000, 0));
  assert.equal(a.verdict, 'rollback');
  assert.equal(a.threshold, 'max_5xx_percent');
  assert.match(a.reason, /^max_5xx_percent: canary 5xx 20% \(100\/500\) > max_5xx_percent 5%; stable 0% \(0\/2000\)/);
  assert.equal(a.canary.percent5xx, 20);
  assert.equal(a.stable.requests, 2000);
});

test('stable failing as much as the canary: hold, not rollback (the canary is not the cause)', () => {
  const a = analyse(thresholds(), stats(500, 100), stats(500, 150));
  assert.equal(a.verdict, 'hold');
  assert.equal(a.threshold, 'max_5xx_percent');
});

test('p99 over max_p99_ms: rollback; stable as slow: hold; no percentiles yet: hold', () => {
  const t = thresholds({ max_p99_ms: 300 });
  assert.equal(analyse(t, stats(500, 0, 450), stats(500, 0, 20)).verdict, 'rollback');
  assert.equal(analyse(t, stats(500, 0, 450), stats(500, 0, 20)).threshold, 'max_p99_ms');
  assert.equal(analyse(t, stats(500, 0, 450), stats(500, 0, 500)).verdict, 'hold');
  assert.equal(analyse(t, stats(500, 0), stats(500, 0, 20)).verdict, 'hold');
  assert.equal(analyse(t, stats(500, 0, 250), stats(500, 0, 20)).verdict, 'promote');
});

test('p99 400 ms above stable with max_p99_increase_ms 200: rollback; skipped without a stable p99', () => {
  const t = thresholds({ max_p99_increase_ms: 200 });
  const a = analyse(t, stats(500, 0, 420), stats(500, 0, 20));
  assert.equal(a.verdict, 'rollback');
  assert.equal(a.threshold, 'max_p99_increase_ms');
  assert.match(a.reason, /400 ms above stable's 20 ms/);
  assert.equal(analyse(t, stats(500, 0, 420), stats(0, 0)).verdict, 'promote', 'at 100% stable has no traffic: absolute thresholds only');
});

test('within every threshold: promote', () => {
  const a = analyse(thresholds({ max_p99_ms: 100, max_p99_increase_ms: 50 }), stats(500, 5, 30), stats(500, 5, 25));
  assert.equal(a.verdict, 'promote');
  assert.equal(a.threshold, undefined);
});

// ---- properties -------------------------------------------------------------

const arbThresholds = fc.record({
  max_5xx_percent: fc.double({ min: 0, max: 100, noNaN: true }),
  max_p99_ms: fc.option(fc.integer({ min: 1, max: 5000 }), { nil: undefined }),
  max_p99_increase_ms: fc.option(fc.integer({ min: 0, max: 5000 }), { nil: undefined }),
  min_requests: fc.integer({ min: 1, max: 1000 }),
  max_holds: fc.integer({ min: 0, max: 10 }),
});

const arbStats = (minRequests = 0) =>
  fc.integer({ min: minRequests, max: 100_000 }).chain((requests) =>
    fc.record({
      requests: fc.constant(requests),
      status5xx: fc.integer({ min: 0, max: requests }),
      p99Ms: fc.option(fc.double({ min: 0.1, max: 10_000, noNaN: true }), { nil: undefined }),
    }),
  ).map(({ requests, status5xx, p99Ms }) => stats(requests, status5xx, p99Ms));

test('property: a canary never worse than stable (5xx share and p99) is never rolled back', () => {
  fc.assert(
    fc.property(arbThresholds, arbStats(1), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 100_000 }), (t, stable, errShare, latShare, canaryRequests) => {
      // The canary's 5xx share and p99 are at most stable's.
      const canary5xx = Math.floor(canaryRequests * (percent5xx(stable) / 100) * errShare);
      const canaryP99 = stable.p99Ms === undefined ? undefined : stable.p99Ms * latShare;
      const canary = stats(canaryRequests, canary5xx, canaryP99);
      assert.ok(percent5xx(canary) <= percent5xx(stable));
      assert.notEqual(analyse(t, canary, stable).verdict, 'rollback');
    }),
    { numRuns: 2000 },
  );
});

test('property: a 5xx breach over min_requests that stable does not share is always rolled back, naming max_5xx_percent', () => {
  fc.assert(
    fc.property(arbThresholds, arbStats(0), arbStats(0), (t, canary, stable) => {
      fc.pre(canary.requests >= t.min_requests);
      fc.pre(percent5xx(canary) > t.max_5xx_percent);
      fc.pre(stable.requests === 0 || percent5xx(stable) < percent5xx(canary));
      const a = analyse(t, canary, stable);
      assert.equal(a.verdict, 'rollback');
      assert.equal(a.threshold, 'max_5xx_percent');
      assert.match(a.reason, /max_5xx_percent/);
    }),
    { numRuns: 2000 },
  );
});

test('property: below min_requests the verdict is always hold; every verdict carries the numbers it used', () => {
  fc.assert(
    fc.property(arbThresholds, arbStats(0), arbStats(0), (t, canary, stable) => {
      const a = analyse(t, canary, stable);
      if (canary.requests < t.min_requests) assert.equal(a.verdict, 'hold');
      assert.equal(a.canary.requests, canary.requests);
      assert.equal(a.canary.status5xx, canary.status5xx);
      assert.equal(a.stable.requests, stable.requests);
      if (a.verdict !== 'promote') assert.ok(a.threshold && a.reason.startsWith(a.threshold), a.reason);
    }),
    { numRuns: 2000 },
  );
});
