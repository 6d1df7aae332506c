// A rollout's canary percent <-> the route action that carries it, the same way
// the `:canary` admin action writes one: one upstream at 100 is a plain
// `upstream` action, anything in between a two-entry split. Pure.
import type { Route } from '../model/index.ts';

export type Action = Route['action'];

export function actionFor(stable: string, canary: string, weight: number): Action {
  if (weight <= 0) return { upstream: stable };
  if (weight >= 100) return { upstream: canary };
  return { split: [{ upstream: stable, weight: 100 - weight }, { upstream: canary, weight }] };
}

/** The canary percent `action` sends, or undefined when it is not a stable/canary split at all. */
export function weightOf(action: Action, stable: string, canary: string): number | undefined {
  if (action.upstream === stable) return 0;
  if (action.upstream === canary) return 100;
  const split = action.split;
  if (!split || split.length !== 2) return undefined;
  const s = split.find((e) => e.upstream === stable);
  const c = split.find((e) => e.upstream === canary);
  if (!s || !c) return undefined;
  return c.weight;
}
