// Rollout rows in Postgres (migrations/0003_rollouts.sql). Every save is a
// compare-and-set on `version`: a transition made from a stale copy (another
// replica, or an operator action that got there first) writes nothing.
import { ROLLOUT_STATES, RolloutSpecSchema, type RolloutState, type RolloutView, type StepDecision, type WeightChange } from '../model/rollout.ts';
import { Prisma, rawRows, type PrismaClient } from '../store/prisma.ts';
import type { RolloutRecord } from './machine.ts';

type Row = Awaited<ReturnType<PrismaClient['rollout']['findUniqueOrThrow']>>;

/** Thrown when a second running or paused rollout is started for a route. */
export class ActiveRolloutExists extends Error {
  constructor(readonly route: string) {
    super(`route '${route}' already has a running or paused rollout`);
    this.name = 'ActiveRolloutExists';
  }
}

export type NewRollout = Omit<RolloutRecord, 'id' | 'version' | 'createdMs' | 'updatedMs'>;

export class RolloutRepository {
  constructor(private readonly prisma: PrismaClient) {}

  async insert(record: NewRollout): Promise<RolloutRecord> {
    try {
      const row = await this.prisma.rollout.create({ data: { ...columns(record), createdBy: record.createdBy } });
      return fromRow(row);
    } catch (err) {
      // The partial unique index: one running or paused rollout per route.
      if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002') throw new ActiveRolloutExists(record.route);
      throw err;
    }
  }

  async get(id: string): Promise<RolloutRecord | undefined> {
    if (!UUID.test(id)) return undefined;
    const row = await this.prisma.rollout.findUnique({ where: { id } });
    return row ? fromRow(row) : undefined;
  }

  async list(filter: { route?: string; state?: RolloutState; limit: number }): Promise<RolloutRecord[]> {
    const rows = await this.prisma.rollout.findMany({
      where: { ...(filter.route ? { route: filter.route } : {}), ...(filter.state ? { state: filter.state } : {}) },
      orderBy: [{ createdAt: 'desc' }, { id: 'asc' }],
      take: filter.limit,
    });
    return rows.map(fromRow);
  }

  /** Rollouts that need the controller: active ones, and finished ones with a weight still to commit. */
  async open(): Promise<RolloutRecord[]> {
    const rows = await this.prisma.rollout.findMany({ where: { OR: [{ state: { in: ['running', 'paused'] } }, { NOT: { weight: { equals: this.prisma.rollout.fields.appliedWeight } } }] }, orderBy: { createdAt: 'asc' } });
    return rows.map(fromRow);
  }

  async activeForRoutes(routes: string[]): Promise<RolloutRecord[]> {
    if (routes.length === 0) return [];
    // Asked on every route write, almost always to find none: a raw existence check first (a model
    // query costs twice the CPU, its query compilation), the full rows only when there are some.
    // Through the pool (rawRows), skipping Prisma's pipeline: it runs while the fleet applies the write.
    const [hit] = await rawRows<{ any: boolean }>(
      this.prisma,
      `SELECT EXISTS (SELECT 1 FROM rollouts WHERE route = ANY($1::text[]) AND state IN ('running', 'paused')) AS any`,
      routes,
    );
    if (!hit?.any) return [];
    const rows = await this.prisma.rollout.findMany({ where: { route: { in: routes }, state: { in: ['running', 'paused'] } } });
    return rows.map(fromRow);
  }

  /** Writes `next` if the row is still at `next.version`; returns the saved record, or undefined when it moved on. */
  async save(next: RolloutRecord): Promise<RolloutRecord | undefined> {
    const { count } = await this.prisma.rollout.updateMany({
      where: { id: next.id, version: next.version },
      data: { ...columns(next), version: { increment: 1 } },
    });
    return count === 1 ? { ...next, version: next.version + 1 } : undefined;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function columns(record: NewRollout | RolloutRecord) {
  return {
    route: record.route,
    stable: record.stable,
    canary: record.canary,
    spec: record.spec as object,
    state: record.state,
    step: record.step,
    weight: record.weight,
    appliedWeight: record.appliedWeight,
    holds: record.holds,
    reason: record.reason ?? null,
    stepStartedAt: record.stepStartedMs === undefined ? null : new Date(record.stepStartedMs),
    decisions: record.decisions as unknown as object,
    changes: record.changes as unknown as object,
    finishedAt: record.finishedMs === undefined ? null : new Date(record.finishedMs),
  };
}

function fromRow(row: Row): RolloutRecord {
  const state = ROLLOUT_STATES.find((s) => s === row.state);
  if (!state) throw new Error(`rollout ${row.id}: unknown state '${row.state}'`);
  return {
    id: row.id,
    route: row.route,
    stable: row.stable,
    canary: row.canary,
    // Stored specs were validated on the way in; parsing again fills defaults added since.
    spec: RolloutSpecSchema.parse(row.spec),
    state,
    step: row.step,
    weight: row.weight,
    appliedWeight: row.appliedWeight,
    holds: row.holds,
    ...(row.reason === null ? {} : { reason: row.reason }),
    ...(row.stepStartedAt === null ? {} : { stepStartedMs: row.stepStartedAt.getTime() }),
    decisions: row.decisions as unknown as StepDecision[],
    changes: row.changes as unknown as WeightChange[],
    createdBy: row.createdBy,
    createdMs: row.createdAt.getTime(),
    updatedMs: row.updatedAt.getTime(),
    ...(row.finishedAt === null ? {} : { finishedMs: row.finishedAt.getTime() }),
    version: row.version,
  };
}

export function view(record: RolloutRecord): RolloutView {
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    id: record.id,
    route: record.route,
    stable: record.stable,
    canary: record.canary,
    spec: record.spec,
    state: record.state,
    step: record.step,
    weight: record.appliedWeight,
    target_weight: record.weight,
    ...(record.reason ? { reason: record.reason } : {}),
    created_by: record.createdBy,
    created_at: iso(record.createdMs),
    updated_at: iso(record.updatedMs),
    ...(record.stepStartedMs === undefined ? {} : { step_started_at: iso(record.stepStartedMs) }),
    ...(record.finishedMs === undefined ? {} : { finished_at: iso(record.finishedMs) }),
    decisions: record.decisions,
    changes: record.changes,
  };
}
