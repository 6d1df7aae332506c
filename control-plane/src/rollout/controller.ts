// The rollout controller: drives each running rollout's route through its steps.
// Every weight change is a normal config commit (ConfigStore.commit: one
// revision, audit rows) whose author is `rollout:<id>`. After each step's time
// it judges the canary's fleet stats since the step began against the stable
// upstream's (analysis.ts) and promotes, holds or rolls back (machine.ts).
//
// Safety rules:
// - Write-ahead: a decision is saved (weight) before the route is committed and
//   marked committed (applied_weight) after, so a crash in between is finished
//   on the next pass, never guessed at.
// - A commit only moves the route from the weight the rollout last committed.
//   If anyone else changed the route (manual :canary, an edit, a config apply,
//   a revision rollback), the rollout aborts and leaves the route alone: the
//   weight is then the one that person chose.
// - Restart: running and paused rollouts continue. Each running rollout's
//   current step starts over (a full step_seconds of fresh evidence: the fleet
//   stats window lives in memory and is empty after a restart); a half-made
//   change is finished as above; a route changed while the control plane was
//   down aborts the rollout without touching the route.
// - Transitions in this process are serialised; across replicas every row
//   update is a compare-and-set on its version, so one replica wins each step.
import { ACTIVE_ROLLOUT_STATES, type RolloutSpec, type RolloutState, type RolloutView } from '../model/rollout.ts';
import type { Route } from '../model/index.ts';
import { type ConfigStore, StoreError } from '../store/config-store.ts';
import type { PrismaClient } from '../store/prisma.ts';
import type { FleetStatsReader } from '../telemetry/fleet-stats.ts';
import { analyse } from './analysis.ts';
import {
  aborted, afterJudgement, applied, isActive, judgeAtMs, letGo, paused, pendingWeight, resumed, type RolloutRecord,
} from './machine.ts';
import { ActiveRolloutExists, RolloutRepository, view } from './repository.ts';
import { actionFor, weightOf } from './weights.ts';

export interface Clock {
  now(): number;
}

/** Runs `fn` every `ms` until the returned function is called. */
export type Every = (ms: number, fn: () => void) => () => void;

export interface RolloutLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface RolloutControllerDeps {
  prisma: PrismaClient;
  store: ConfigStore;
  stats: FleetStatsReader;
  clock?: Clock;
  every?: Every;
  /** How often rollouts are checked (default 1 s); a step is judged at most this late. */
  pollMs?: number;
  log?: RolloutLog;
}

export type RolloutResult = RolloutView;

/** Why a commit was not made: the route is no longer where the rollout left it. */
class RouteMoved extends Error {}

const systemClock: Clock = { now: () => Date.now() };
const realEvery: Every = (ms, fn) => {
  const timer = setInterval(fn, ms);
  timer.unref();
  return () => clearInterval(timer);
};
const quiet: RolloutLog = { info: () => {}, warn: () => {} };

export class RolloutController {
  private readonly repo: RolloutRepository;
  private readonly clock: Clock;
  private readonly log: RolloutLog;
  private cancel?: () => void;
  /** Serialises every transition in this process (ticks and operator actions). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: RolloutControllerDeps) {
    this.repo = new RolloutRepository(deps.prisma);
    this.clock = deps.clock ?? systemClock;
    this.log = deps.log ?? quiet;
  }

  /** Recovers rollouts left by a previous process, then checks them every pollMs. */
  async start(): Promise<void> {
    await this.serial(() => this.recover());
    this.cancel = (this.deps.every ?? realEvery)(this.deps.pollMs ?? 1_000, () => {
      void this.tick().catch((err: unknown) => this.log.warn('rollout: pass failed', { error: String(err) }));
    });
  }

  /** Stops the timer and waits for the transition in flight. */
  async stop(): Promise<void> {
    this.cancel?.();
    this.cancel = undefined;
    await this.queue.catch(() => {});
  }

  // ---- operator actions -----------------------------------------------------

  async create(routeName: string, spec: RolloutSpec, actor: string): Promise<RolloutResult> {
    const stable = await this.stableOf(routeName, spec);
    // Validate the first step's config before taking the route (bad input: 422, nothing written).
    await this.deps.store.commit(actor, 'rollout dry run', (draft) => {
      const route = draft.get('routes', routeName) as Route;
      draft.replace('routes', routeName, { ...route, action: actionFor(stable, spec.canary, spec.steps[0]!) });
    }, { dryRun: true });
    const now = this.clock.now();
    let record: RolloutRecord;
    try {
      record = await this.repo.insert({
        route: routeName, stable, canary: spec.canary, spec, state: 'running', step: 0, weight: spec.steps[0]!, appliedWeight: 0,
        holds: 0, stepStartedMs: now, decisions: [], changes: [], createdBy: actor,
      });
    } catch (err) {
      if (err instanceof ActiveRolloutExists) throw new StoreError('conflict', err.message, [{ path: ['route'], message: 'has an active rollout' }]);
      throw err;
    }
    this.log.info('rollout: started', { id: record.id, route: routeName, stable, canary: spec.canary, steps: spec.steps, actor });
    const settled = await this.serial(() => this.settle(record, `step 1 of ${spec.steps.length}, started by ${actor}`));
    // The first step's window begins once its weight is committed.
    const started = settled.state === 'running' ? await this.serial(() => this.restartStep(settled.id)) : settled;
    return view(started ?? settled);
  }

  async get(id: string): Promise<RolloutResult | undefined> {
    const record = await this.repo.get(id);
    return record && view(record);
  }

  async list(filter: { route?: string; state?: RolloutState; limit: number }): Promise<RolloutResult[]> {
    return (await this.repo.list(filter)).map(view);
  }

  async pause(id: string, actor: string): Promise<RolloutResult> {
    return this.operate(id, ['running'], (r) => paused(r, actor, this.clock.now()), 'pause');
  }

  async resume(id: string, actor: string): Promise<RolloutResult> {
    return this.operate(id, ['paused'], (r) => resumed(r, actor, this.clock.now()), 'resume');
  }

  async abort(id: string, actor: string): Promise<RolloutResult> {
    return this.operate(id, ACTIVE_ROLLOUT_STATES, (r) => aborted(r, `aborted by ${actor}: all traffic back to ${r.stable}`, this.clock.now()), 'abort');
  }

  /**
   * Someone other than a rollout committed a change to these routes: their
   * active rollouts abort and leave the route as that person set it.
   */
  async routesChanged(routes: string[], actor: string, revision: number): Promise<void> {
    const hit = await this.repo.activeForRoutes(routes);
    for (const record of hit) {
      await this.serial(async () => {
        const fresh = await this.repo.get(record.id);
        if (!fresh || !isActive(fresh.state)) return;
        const saved = await this.repo.save(letGo(fresh, `aborted: route changed by ${actor} in revision ${revision}; its weight was left as set`, this.clock.now()));
        if (saved) this.log.info('rollout: aborted by a route change', { id: saved.id, route: saved.route, actor, revision });
      });
    }
  }

  // ---- the loop -----------------------------------------------------------

  /** One pass: finish changes in flight, judge every step that is due. */
  async tick(): Promise<void> {
    await this.serial(async () => {
      for (const record of await this.repo.open()) {
        const settled = pendingWeight(record) === undefined ? record : await this.settle(record, 'retry');
        const due = judgeAtMs(settled);
        if (settled.state === 'running' && pendingWeight(settled) === undefined && due !== undefined && this.clock.now() >= due) await this.judge(settled);
      }
    });
  }

  private async judge(record: RolloutRecord): Promise<void> {
    const since = record.stepStartedMs ?? this.clock.now();
    const analysis = analyse(record.spec.analysis, this.deps.stats.upstream(record.canary, since), this.deps.stats.upstream(record.stable, since));
    const next = afterJudgement(record, analysis, this.clock.now());
    const saved = await this.repo.save(next);
    if (!saved) return; // moved on elsewhere (another replica, an operator): judged again from fresh state
    this.log.info('rollout: judged', { id: record.id, route: record.route, step: record.step, verdict: analysis.verdict, reason: analysis.reason });
    const why = analysis.verdict === 'rollback' ? `rolled back (${analysis.threshold})` : `step ${saved.step + 1} of ${saved.spec.steps.length}`;
    if (pendingWeight(saved) !== undefined) await this.settle(saved, why);
  }

  /** Restarts the current step's window now (first step committed, or after a restart). */
  private async restartStep(id: string): Promise<RolloutRecord | undefined> {
    const record = await this.repo.get(id);
    if (!record || record.state !== 'running') return record;
    return this.repo.save({ ...record, stepStartedMs: this.clock.now(), holds: 0 });
  }

  /** Recovery at start: settle changes in flight, and start every running step over. */
  private async recover(): Promise<void> {
    for (const record of await this.repo.open()) {
      let current = record;
      if (pendingWeight(current) !== undefined) current = await this.settle(current, 'finished after a control-plane restart');
      else if (isActive(current.state)) current = await this.checkRoute(current);
      if (current.state === 'running') await this.restartStep(current.id);
      this.log.info('rollout: recovered', { id: current.id, route: current.route, state: current.state, weight: current.appliedWeight });
    }
  }

  /** Aborts (leaving the route alone) when the route is not at the weight this rollout last committed. */
  private async checkRoute(record: RolloutRecord): Promise<RolloutRecord> {
    const stored = await this.deps.store.get('routes', record.route);
    const weight = stored && weightOf((stored.spec as Route).action, record.stable, record.canary);
    if (weight === record.appliedWeight) return record;
    const saved = await this.repo.save(letGo(record, `aborted: route ${stored ? 'changed' : 'deleted'} while the control plane was down; left as found`, this.clock.now()));
    return saved ?? record;
  }

  /**
   * Commits the record's decided weight, moving the route only from the weight
   * the rollout last committed. Returns the record as saved afterwards.
   */
  private async settle(record: RolloutRecord, why: string): Promise<RolloutRecord> {
    const { id, route, stable, canary, weight, appliedWeight } = record;
    let result;
    try {
      result = await this.deps.store.commit(`rollout:${id}`, `rollout ${id}: ${route} canary ${canary} at ${weight}% (${why})`, (draft) => {
        const current = draft.get('routes', route) as Route | undefined;
        if (!current) throw new RouteMoved(`route '${route}' was deleted`);
        const now = weightOf(current.action, stable, canary);
        if (now === weight) return; // already there (a commit made before a crash): nothing to change
        if (now !== appliedWeight) throw new RouteMoved(`route '${route}' was changed outside the rollout`);
        draft.replace('routes', route, { ...current, action: actionFor(stable, canary, weight) });
      });
    } catch (err) {
      if (err instanceof RouteMoved) return (await this.repo.save(letGo(record, `aborted: ${err.message}; left as found`, this.clock.now()))) ?? record;
      if (err instanceof StoreError && err.code === 'invalid') {
        // The config no longer admits this weight (say, stable was deleted at 100%): stop, leave the route.
        const reason = `failed: cannot set ${weight}%: ${err.message}: ${err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
        return (await this.repo.save({ ...letGo(record, reason, this.clock.now()), state: isActive(record.state) ? 'failed' : record.state })) ?? record;
      }
      this.log.warn('rollout: commit failed; retried on the next pass', { id, route, weight, error: String(err) });
      return record;
    }
    // Nothing to change means the weight was committed already (before a crash):
    // the revision that carries it is the rollout's last audited change of the route.
    const revision = result.changed ? result.revision : await this.lastRevisionBy(record);
    const saved = await this.repo.save(applied(record, revision ?? result.revision, this.clock.now(), result.changed ? why : `${why}; already in place`));
    this.log.info('rollout: weight committed', { id, route, canary, weight, revision: result.revision });
    return saved ?? record;
  }

  private async lastRevisionBy(record: RolloutRecord): Promise<number | undefined> {
    const row = await this.deps.prisma.auditLog.findFirst({
      where: { kind: 'routes', objectName: record.route, actor: `rollout:${record.id}` },
      orderBy: { id: 'desc' },
      select: { revision: true },
    });
    return row?.revision === null || row?.revision === undefined ? undefined : Number(row.revision);
  }

  private async stableOf(routeName: string, spec: RolloutSpec): Promise<string> {
    const stored = await this.deps.store.get('routes', routeName);
    if (!stored) throw new StoreError('not_found', `route '${routeName}' not found`);
    const stable = (stored.spec as Route).action.upstream;
    if (stable === undefined) {
      throw new StoreError('conflict', `route '${routeName}' must send all its traffic to one upstream (action.upstream) to start a rollout`, [{ path: ['action'], message: 'must be a single upstream' }]);
    }
    if (stable === spec.canary) throw new StoreError('invalid', `canary '${spec.canary}' is already the route's upstream`, [{ path: ['canary'], message: 'must differ from the route\'s current upstream' }]);
    if (!(await this.deps.store.get('upstreams', spec.canary))) throw new StoreError('invalid', `unknown upstream '${spec.canary}'`, [{ path: ['canary'], message: 'unknown upstream' }]);
    return stable;
  }

  private async operate(id: string, from: readonly RolloutState[], change: (r: RolloutRecord) => RolloutRecord, what: string): Promise<RolloutResult> {
    return this.serial(async () => {
      const record = await this.repo.get(id);
      if (!record) throw new StoreError('not_found', `rollout '${id}' not found`);
      if (!from.includes(record.state)) throw new StoreError('conflict', `cannot ${what} a ${record.state} rollout`, [{ path: ['state'], message: `is ${record.state}` }]);
      const saved = await this.repo.save(change(record));
      if (!saved) throw new StoreError('conflict', `rollout '${id}' changed meanwhile; try again`);
      this.log.info(`rollout: ${what}`, { id, route: record.route });
      return view(pendingWeight(saved) === undefined ? saved : await this.settle(saved, what));
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}
