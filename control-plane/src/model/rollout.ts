// Automated canary rollouts: what an operator asks for (RolloutSpec) and what the
// admin API shows back (RolloutView). The controller lives in rollout/; this file
// is only the shapes, so the admin API can validate and show them without
// importing the controller.
import { z } from 'zod';
import { NameSchema } from './common.ts';

/** Longest time per step: a day (a rollout is a deploy, not a calendar). */
export const MAX_STEP_SECONDS = 86_400;

export const AnalysisThresholdsSchema = z
  .object({
    /** Highest share of the canary's responses that may be 5xx, in percent. */
    max_5xx_percent: z.number().min(0).max(100),
    /** Highest p99 latency the canary may show, in milliseconds (absent: not judged). */
    max_p99_ms: z.int().min(1).max(3_600_000).optional(),
    /** Most the canary's p99 may exceed the stable upstream's, in milliseconds (absent: not judged). */
    max_p99_increase_ms: z.int().min(0).max(3_600_000).optional(),
    /** Canary requests a step must see before it is judged at all. */
    min_requests: z.int().min(1).max(10_000_000).default(50),
    /**
     * Consecutive inconclusive judgements (too few requests, stable failing as
     * much as the canary) one step may get before the rollout pauses for an
     * operator. Each one extends the step by another step_seconds.
     */
    max_holds: z.int().min(0).max(100).default(10),
  })
  .strict();

export const RolloutSpecSchema = z
  .object({
    /** The upstream being rolled out; the route's current upstream is the stable one. */
    canary: NameSchema,
    /** Canary percent per step, strictly increasing, ending at 100. */
    steps: z.array(z.int().min(1).max(100)).min(1).max(20),
    /** How long each step runs before it is judged. */
    step_seconds: z.number().min(0.5).max(MAX_STEP_SECONDS),
    analysis: AnalysisThresholdsSchema,
  })
  .strict()
  .superRefine((spec, ctx) => {
    spec.steps.forEach((step, i) => {
      const previous = spec.steps[i - 1];
      if (previous !== undefined && step <= previous) ctx.addIssue({ code: 'custom', path: ['steps', i], message: `steps must increase (${step} after ${previous})` });
    });
    if (spec.steps.at(-1) !== 100) ctx.addIssue({ code: 'custom', path: ['steps', spec.steps.length - 1], message: 'the last step must be 100' });
  });

export type AnalysisThresholds = z.infer<typeof AnalysisThresholdsSchema>;
export type RolloutSpec = z.infer<typeof RolloutSpecSchema>;
export type RolloutSpecInput = z.input<typeof RolloutSpecSchema>;

/** running and paused rollouts hold their route; the others are finished. */
export const ROLLOUT_STATES = ['running', 'paused', 'succeeded', 'failed', 'aborted'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
export const ACTIVE_ROLLOUT_STATES: readonly RolloutState[] = ['running', 'paused'];

export type Verdict = 'promote' | 'hold' | 'rollback';

/** The threshold a judgement turned on (named in the reason, too). */
export type ThresholdName = 'min_requests' | 'max_5xx_percent' | 'max_p99_ms' | 'max_p99_increase_ms';

/** One upstream's traffic in a step's window, as judged. */
export interface JudgedStats {
  requests: number;
  status2xx: number;
  status4xx: number;
  status5xx: number;
  /** status5xx / requests in percent; 0 without requests. */
  percent5xx: number;
  p50Ms?: number;
  p95Ms?: number;
  p99Ms?: number;
}

/** One judgement of one step: what was decided and the numbers it was based on. */
export interface StepDecision {
  step: number;
  weight: number;
  verdict: Verdict;
  reason: string;
  threshold?: ThresholdName;
  /** Window judged: from the step's start to the judgement (ISO 8601). */
  since: string;
  at: string;
  canary: JudgedStats;
  stable: JudgedStats;
}

/** A weight the rollout committed, and the revision that carries it. */
export interface WeightChange {
  weight: number;
  revision: number;
  at: string;
  why: string;
}

/** A rollout as the admin API shows it. */
export interface RolloutView {
  id: string;
  route: string;
  stable: string;
  canary: string;
  spec: RolloutSpec;
  state: RolloutState;
  /** Index into spec.steps of the current (or last) step; -1 before the first. */
  step: number;
  /** Canary percent the route is at (as far as this rollout set it). */
  weight: number;
  /** Canary percent decided on; differs from weight only while that change is being committed. */
  target_weight: number;
  reason?: string;
  created_by: string;
  created_at: string;
  updated_at: string;
  step_started_at?: string;
  finished_at?: string;
  decisions: StepDecision[];
  changes: WeightChange[];
}
