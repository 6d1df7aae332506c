// The rollout state machine, pure: a record plus an event gives the next record.
// The controller (controller.ts) persists the result and commits the route
// weight it names; nothing here does I/O or reads a clock (times come in as
// arguments).
//
//   running --promote--> running (next step) ... --promote at 100--> succeeded
//   running --rollback--> failed (weight 0)       running --hold--> running (step extended)
//   running --hold beyond max_holds--> paused      running|paused --pause/resume--> paused|running
//   running|paused --abort--> aborted (weight 0)   running|paused --route changed by someone else--> aborted (weight left alone)
import type { Analysis } from './analysis.ts';
import type { RolloutSpec, RolloutState, StepDecision, WeightChange } from '../model/rollout.ts';

export interface RolloutRecord {
  id: string;
  route: string;
  stable: string;
  canary: string;
  spec: RolloutSpec;
  state: RolloutState;
  /** Index into spec.steps. */
  step: number;
  /** Canary percent decided on. */
  weight: number;
  /** Canary percent committed to the route; differs from weight only while a change is in flight. */
  appliedWeight: number;
  holds: number;
  reason?: string;
  stepStartedMs?: number;
  decisions: StepDecision[];
  changes: WeightChange[];
  createdBy: string;
  createdMs: number;
  updatedMs: number;
  finishedMs?: number;
  /** Compare-and-set version of the stored row. */
  version: number;
}

export function isActive(state: RolloutState): boolean {
  return state === 'running' || state === 'paused';
}

/** When a running step is next judged: one step_seconds after it began, plus one per hold. */
export function judgeAtMs(record: RolloutRecord): number | undefined {
  if (record.state !== 'running' || record.stepStartedMs === undefined) return undefined;
  return record.stepStartedMs + (record.holds + 1) * record.spec.step_seconds * 1000;
}

/** A weight change that has been decided but not yet committed. */
export function pendingWeight(record: RolloutRecord): number | undefined {
  return record.weight === record.appliedWeight ? undefined : record.weight;
}

export function decisionOf(record: RolloutRecord, analysis: Analysis, nowMs: number): StepDecision {
  return {
    step: record.step,
    weight: record.weight,
    verdict: analysis.verdict,
    reason: analysis.reason,
    ...(analysis.threshold ? { threshold: analysis.threshold } : {}),
    since: new Date(record.stepStartedMs ?? nowMs).toISOString(),
    at: new Date(nowMs).toISOString(),
    canary: analysis.canary,
    stable: analysis.stable,
  };
}

/** The record after a step's judgement. */
export function afterJudgement(record: RolloutRecord, analysis: Analysis, nowMs: number): RolloutRecord {
  const decisions = [...record.decisions, decisionOf(record, analysis, nowMs)];
  const base = { ...record, decisions, updatedMs: nowMs };
  switch (analysis.verdict) {
    case 'promote': {
      const next = record.step + 1;
      const weight = record.spec.steps[next];
      if (weight === undefined) return { ...base, state: 'succeeded', finishedMs: nowMs, reason: `promoted: ${analysis.reason}` };
      return { ...base, step: next, weight, holds: 0, stepStartedMs: nowMs };
    }
    case 'hold': {
      const holds = record.holds + 1;
      if (holds <= record.spec.analysis.max_holds) return { ...base, holds };
      // Out of patience without a verdict: keep the weight (one this rollout chose) and ask a human.
      return { ...base, holds, state: 'paused', reason: `paused after ${holds} inconclusive judgements: ${analysis.reason}` };
    }
    case 'rollback':
      return { ...base, state: 'failed', weight: 0, finishedMs: nowMs, reason: `rolled back: ${analysis.reason}` };
  }
}

export function paused(record: RolloutRecord, actor: string, nowMs: number): RolloutRecord {
  return { ...record, state: 'paused', reason: `paused by ${actor}`, updatedMs: nowMs };
}

/** A resumed step starts over: its window and its holds begin afresh. */
export function resumed(record: RolloutRecord, actor: string, nowMs: number): RolloutRecord {
  return { ...record, state: 'running', reason: `resumed by ${actor}`, holds: 0, stepStartedMs: nowMs, updatedMs: nowMs };
}

/** Aborted by an operator: all traffic back to stable. */
export function aborted(record: RolloutRecord, reason: string, nowMs: number): RolloutRecord {
  return { ...record, state: 'aborted', weight: 0, reason, finishedMs: nowMs, updatedMs: nowMs };
}

/**
 * Aborted because someone else changed the route: their weight stands, the
 * rollout lets go of the route and changes nothing (nothing left in flight).
 */
export function letGo(record: RolloutRecord, reason: string, nowMs: number): RolloutRecord {
  const state: RolloutState = isActive(record.state) ? 'aborted' : record.state;
  return { ...record, state, weight: record.appliedWeight, reason, finishedMs: record.finishedMs ?? nowMs, updatedMs: nowMs };
}

/** The record once `weight` is committed in `revision`. */
export function applied(record: RolloutRecord, revision: number, nowMs: number, why: string): RolloutRecord {
  const changes = [...record.changes, { weight: record.weight, revision, at: new Date(nowMs).toISOString(), why }];
  return { ...record, appliedWeight: record.weight, changes, updatedMs: nowMs };
}
