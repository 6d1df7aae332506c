// The rollout state machine (rollout/machine.ts), the weight <-> action mapping
// (rollout/weights.ts) and the request schema (model/rollout.ts): pure, no I/O.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { analyse } from '../../control-plane/src/rollout/analysis.ts';
import { aborted, afterJudgement, applied, judgeAtMs, letGo, paused, pendingWeight, resumed, type RolloutRecord } from '../../control-plane/src/rollout/machine.ts';
import { actionFor, weightOf } from '../../control-plane/src/rollout/weights.ts';
import { RolloutSpecSchema } from '../../control-plane/src/model/rollout.ts';
import type { WindowStats } from '../../control-plane/src/telemetry/fleet-stats.ts';

const spec = RolloutSpecSchema.parse({ canary: 'v2', steps: [5, 25, 50, 100], step_seconds: 2, analysis: { max_5xx_percent: 5, min_requests: 10, max_holds: 2 } });
const T0 = 1_700_000_000_000;

function record(over: Partial<RolloutRecord> = {}): RolloutRecord {
  return {
    id: 'r1', route: 'shop', stable: 'v1', canary: 'v2', spec, state: 'running', step: 0, weight: 5, appliedWeight: 5, holds: 0,
    stepStartedMs: T0, decisions: [], changes: [], createdBy: 'ops', createdMs: T0, updatedMs: T0, version: 1, ...over,
  };
}
const traffic = (requests: number, status5xx: number): WindowStats => ({ requests, status2xx: requests - status5xx, status4xx: 0, status5xx });
const good = analyse(spec.analysis, traffic(100, 0), traffic(900, 0));
const bad = analyse(spec.analysis, traffic(100, 20), traffic(900, 0));
const thin = analyse(spec.analysis, traffic(3, 0), traffic(900, 0));

test('promote walks the steps in order and succeeds after the 100% step', () => {
  let r = record();
  const weights: number[] = [];
  for (let i = 0; i < spec.steps.length; i++) {
    r = afterJudgement(r, good, T0 + (i + 1) * 2000);
    if (r.state === 'running') {
      weights.push(r.weight);
      assert.equal(pendingWeight(r), r.weight, 'a promotion is a decided, not yet committed, weight');
      r = applied(r, 10 + i, T0 + (i + 1) * 2000, 'step');
    }
  }
  assert.deepEqual(weights, [25, 50, 100]);
  assert.equal(r.state, 'succeeded');
  assert.equal(r.weight, 100);
  assert.equal(r.decisions.length, 4);
  assert.deepEqual(r.changes.map((c) => c.weight), [25, 50, 100]);
  assert.ok(r.decisions.every((d) => d.verdict === 'promote' && d.canary.requests === 100));
});

test('rollback sets weight 0 at once and fails with the reason naming the threshold', () => {
  const r = afterJudgement(record({ step: 1, weight: 25, appliedWeight: 25 }), bad, T0 + 2000);
  assert.equal(r.state, 'failed');
  assert.equal(r.weight, 0);
  assert.equal(pendingWeight(r), 0);
  assert.match(r.reason ?? '', /^rolled back: max_5xx_percent/);
  assert.equal(r.decisions.at(-1)?.verdict, 'rollback');
  assert.equal(r.decisions.at(-1)?.canary.status5xx, 20);
});

test('holds extend the step by step_seconds each; beyond max_holds the rollout pauses at its weight', () => {
  let r = record();
  assert.equal(judgeAtMs(r), T0 + 2000);
  r = afterJudgement(r, thin, T0 + 2000);
  assert.equal(r.state, 'running');
  assert.equal(judgeAtMs(r), T0 + 4000);
  r = afterJudgement(r, thin, T0 + 4000);
  r = afterJudgement(r, thin, T0 + 6000);
  assert.equal(r.state, 'paused');
  assert.equal(r.weight, 5, 'a pause keeps the weight the rollout chose');
  assert.equal(pendingWeight(r), undefined);
  assert.match(r.reason ?? '', /min_requests/);
  assert.equal(judgeAtMs(r), undefined, 'a paused rollout is not judged');
});

test('pause, resume (fresh window), abort (weight 0) and letting go of a route someone else changed', () => {
  const p = paused(record({ holds: 1 }), 'ops', T0 + 100);
  assert.equal(p.state, 'paused');
  const r = resumed(p, 'ops', T0 + 5000);
  assert.equal(r.state, 'running');
  assert.equal(r.holds, 0);
  assert.equal(judgeAtMs(r), T0 + 7000);
  const a = aborted(record({ step: 2, weight: 50, appliedWeight: 50 }), 'aborted by ops', T0);
  assert.equal(a.state, 'aborted');
  assert.equal(pendingWeight(a), 0);
  const g = letGo(record({ step: 2, weight: 100, appliedWeight: 50 }), 'route changed', T0);
  assert.equal(g.state, 'aborted');
  assert.equal(pendingWeight(g), undefined, 'nothing left in flight: the route stays as that person set it');
});

test('weights map to the actions :canary writes, and back', () => {
  assert.deepEqual(actionFor('v1', 'v2', 0), { upstream: 'v1' });
  assert.deepEqual(actionFor('v1', 'v2', 100), { upstream: 'v2' });
  assert.deepEqual(actionFor('v1', 'v2', 25), { split: [{ upstream: 'v1', weight: 75 }, { upstream: 'v2', weight: 25 }] });
  fc.assert(fc.property(fc.integer({ min: 0, max: 100 }), (w) => weightOf(actionFor('v1', 'v2', w), 'v1', 'v2') === w));
  assert.equal(weightOf({ upstream: 'other' }, 'v1', 'v2'), undefined);
  assert.equal(weightOf({ split: [{ upstream: 'v1', weight: 50 }, { upstream: 'x', weight: 50 }] }, 'v1', 'v2'), undefined);
});

test('the rollout request schema names the field at fault', () => {
  const issues = (body: unknown) => { const r = RolloutSpecSchema.safeParse(body); return r.success ? [] : r.error.issues.map((i) => i.path.join('.')); };
  assert.deepEqual(issues({ canary: 'v2', steps: [5, 25, 50, 100], step_seconds: 30, analysis: { max_5xx_percent: 1 } }), []);
  assert.deepEqual(issues({ canary: 'v2', steps: [50, 25, 100], step_seconds: 30, analysis: { max_5xx_percent: 1 } }), ['steps.1']);
  assert.deepEqual(issues({ canary: 'v2', steps: [5, 50], step_seconds: 30, analysis: { max_5xx_percent: 1 } }), ['steps.1']);
  assert.deepEqual(issues({ canary: 'v2', steps: [100], step_seconds: 0, analysis: { max_5xx_percent: 1 } }), ['step_seconds']);
  assert.deepEqual(issues({ canary: 'V2!', steps: [100], step_seconds: 1, analysis: { max_5xx_percent: 101 } }), ['canary', 'analysis.max_5xx_percent']);
  assert.deepEqual(issues({ canary: 'v2', steps: [100], step_seconds: 1, analysis: { max_5xx_percent: 1, extra: 1 } }), ['analysis']);
});
