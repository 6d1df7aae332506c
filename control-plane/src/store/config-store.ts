// The gateway config in Postgres. Every write is one transaction (a typical
// one-object write: one statement, see CommitMode) that serialises on an
// advisory lock, applies the change to the config (the head this process
// cached, checked under the lock to still be the newest; an object write
// costs what it changes, see draft.ts), validates the result with model/
// (only what the change can affect; so nothing half-valid is ever stored),
// writes the changed rows, a revision (its change set) and one audit row per
// change. Now and then a revision also gets the whole config as a checkpoint
// (revision-history.ts), written in the background once its commit is
// durable, never inside it (scheduleCheckpoint). The revision insert fires
// NOTIFY on commit (see the migration), which is how every replica learns of it.
import {
  KINDS, ValidationIndex, emptyState, validateChange,
  type DeclarativeConfig, type Issue, type Kind, type State,
} from '../model/index.ts';
import { Draft, diffConfigs, sortKeys, wholeChange, type DiffEntry, type ObjectSpec } from './draft.ts';
import { deepFreeze } from './frozen.ts';
import { rawRows, type PrismaClient } from './prisma.ts';
import { StoreError } from './store-error.ts';
import {
  changeSetOf, checkpointJson, DEFAULT_HISTORY, changeSetsSince, needsCheckpoint, pruneHistory, reconstruct, replay, sinceCheckpointAt, sortedKeys, writeCheckpoint,
  type ChangeSet, type CheckpointWriter, type CredentialKey, type PruneResult, type RevisionHistorySettings, type RevisionSnapshot, type SinceCheckpoint,
} from './revision-history.ts';

export { Draft, diffConfigs, type DiffEntry, type ObjectSpec, type PlannedChange } from './draft.ts';
export { StoreError, type StoreErrorCode } from './store-error.ts';
export type { ChangeSet, CheckpointWriter, CredentialKey, PruneResult, RevisionHistorySettings, RevisionSnapshot } from './revision-history.ts';
export { DEFAULT_HISTORY, writeCheckpoint } from './revision-history.ts';

/** The store's background checkpoint writing. */
export interface CheckpointOptions {
  /** Told when a background checkpoint write fails (the next commit tries again). */
  onCheckpointError?: (err: unknown) => void;
  /** Writes one checkpoint row (default: writeCheckpoint); a test may hold it back to show it is off the writer's path. */
  writeCheckpoint?: CheckpointWriter;
}

/** Advisory lock key serialising config writers (any fixed 64-bit number). */
const WRITE_LOCK = 7_300_115_105_099n;

/**
 * How a commit attempt runs. 'alone': one statement that takes the write lock
 * itself, with no transaction around it (the typical one-object write: one
 * round trip in all), on the cached head; 'trusted': a transaction that takes
 * the lock first, on the cached head; 'fresh': a transaction that reads the
 * head under the lock (after a stale cache).
 */
type CommitMode = 'alone' | 'trusted' | 'fresh';

/** The change needs a transaction around it (see the checks in ConfigStore.attempt). Nothing was written. */
class NeedsTransaction extends Error {
  constructor() {
    super('the change needs a transaction');
    this.name = 'NeedsTransaction';
  }
}

/** A commit found, under the write lock, that another replica wrote since this process last looked; it wrote nothing. */
class StaleHead extends Error {
  constructor() {
    super('the head revision moved on');
    this.name = 'StaleHead';
  }
}

export interface StoredObject {
  kind: Kind;
  name: string;
  spec: ObjectSpec;
  /** Bumped on every change; the admin API's ETag. */
  version: number;
  createdAt: Date;
  updatedAt: Date;
  keyPrefix?: string;
}

export interface CommitResult {
  /** The new revision, or the current one when nothing changed. */
  revision: number;
  /** False when the change was a no-op (no revision was made). */
  changed: boolean;
  diff: DiffEntry[];
  /**
   * Credentials whose API key the change tried to bring back although it was
   * revoked (a rollback or apply of an older snapshot): they were committed
   * without that key. Sorted names; empty when none.
   */
  keysWithheld: string[];
}

export interface RevisionSummary {
  revision: number;
  createdAt: Date;
  author: string;
  message: string;
}

type Row = { name: string; spec: unknown; version: number; createdAt: Date; updatedAt: Date; keyPrefix?: string | null };

export class ConfigStore {
  /**
   * The newest revision this process has parsed. Revisions never change once
   * written, so it stays valid as long as its id is still the newest; this
   * spares every write and reload re-reading and re-parsing the whole config.
   */
  private latest?: Head;
  private readonly history: RevisionHistorySettings;
  private commitsSincePrune = 0;
  private pruning?: Promise<PruneResult | undefined>;
  /** Settles when this process's previous commit has (see commit). */
  private localTurn: Promise<unknown> = Promise.resolve();
  private readonly committedListeners = new Set<(revision: number, snapshot: RevisionSnapshot) => void>();
  private readonly preparedListeners = new Set<(config: DeclarativeConfig) => void>();
  /** The background checkpoint write under way, if any (one at a time). */
  private checkpointing?: Promise<void>;
  /** The newest checkpoint this process wrote in the background, with the counters its revision had: later heads count from it. */
  private confirmedCheckpoint?: { revision: number; since: SinceCheckpoint };

  constructor(
    private readonly prisma: PrismaClient,
    history: Partial<RevisionHistorySettings> = {},
    /** Told when a background prune fails (the next one retries). */
    private readonly onPruneError: (err: unknown) => void = () => {},
    private readonly checkpoints: CheckpointOptions = {},
  ) {
    this.history = { ...DEFAULT_HISTORY, ...history };
  }

  /** Settles when the background checkpoint write under way (if any) has, written or failed. */
  async checkpointsSettled(): Promise<void> {
    await this.checkpointing;
  }

  /**
   * After the commit of `head` (a revision due a checkpoint) is durable: its
   * checkpoint written in the background from the frozen snapshot the commit
   * made, never awaited by the writer. One at a time: a revision due one while
   * another is being written leaves it to the next due commit. Counters are
   * reset only once the row holds the checkpoint (see sinceOf); a failure
   * leaves them due, so the next commit tries again.
   */
  private scheduleCheckpoint(head: Head): void {
    if (this.checkpointing || !this.stillDue(head)) return;
    const write = this.checkpoints.writeCheckpoint ?? writeCheckpoint;
    const { revision, snapshot, since } = head;
    this.checkpointing = (async () => {
      await new Promise<void>((resolve) => setImmediate(resolve)); // the writer's reply goes out first
      const written = await write(this.prisma, revision, await checkpointJson(snapshot));
      if (written && (this.confirmedCheckpoint?.revision ?? 0) < revision) this.confirmedCheckpoint = { revision, since };
    })()
      .catch((err: unknown) => (this.checkpoints.onCheckpointError ?? (() => {}))(err))
      .finally(() => {
        this.checkpointing = undefined;
      });
  }

  /** Whether `head` (counting its own change set) is still due a checkpoint: one written meanwhile may have reset its counters. */
  private stillDue(head: Head): boolean {
    const since = this.sinceOf(head);
    return since.revisions >= this.history.checkpointEveryRevisions || since.bytes >= this.history.checkpointEveryBytes;
  }

  /**
   * `head`'s counters since the last checkpoint, counted from a checkpoint
   * written in the background since the head was made when the head's chain
   * runs through it (same starting checkpoint, at or after its revision).
   */
  private sinceOf(head: Head): SinceCheckpoint {
    const confirmed = this.confirmedCheckpoint;
    if (!confirmed || head.revision < confirmed.revision || head.since.from !== confirmed.since.from) return head.since;
    return {
      revisions: head.since.revisions - confirmed.since.revisions,
      bytes: head.since.bytes - confirmed.since.bytes,
      from: confirmed.revision,
    };
  }

  /**
   * The newest revision's snapshot. A write or reload that finds the cached
   * head current reads no history; one a few revisions behind (another
   * replica wrote) applies just the change sets since; otherwise it rebuilds
   * from the nearest checkpoint.
   */
  private async latestSnapshot(prisma: PrismaClient): Promise<Head> {
    const head = await prisma.revision.findFirst({ orderBy: { id: 'desc' }, select: { id: true } });
    if (!head) return { revision: 0, snapshot: { config: emptyConfig(), credential_keys: {} }, since: sinceCheckpointAt(0) };
    const revision = Number(head.id);
    if (this.latest?.revision === revision) return this.latest;
    const caughtUp = this.latest && this.latest.revision < revision ? await catchUp(prisma, this.latest, revision) : undefined;
    const rebuilt: Omit<Head, 'revision'> | undefined = caughtUp ?? (await reconstruct(prisma, revision));
    if (!rebuilt) throw new StoreError('unavailable', `revision ${revision} cannot be read back`);
    const latest: Head = { revision, since: rebuilt.since, snapshot: freezeSnapshot(rebuilt.snapshot), index: rebuilt.index };
    this.latest = latest;
    return latest;
  }

  /** The newest revision number (0 before the first write). */
  async currentRevision(): Promise<number> {
    const latest = await this.prisma.revision.findFirst({ orderBy: { id: 'desc' }, select: { id: true } });
    return latest ? Number(latest.id) : 0;
  }

  /** The whole config at the newest revision. */
  async loadState(): Promise<{ state: State; keys: Record<string, CredentialKey> }> {
    const { revision, snapshot } = await this.latestSnapshot(this.prisma);
    return stateOf(revision, snapshot);
  }

  /**
   * Calls `listener` after each commit made through this store, with the new
   * revision's (frozen) snapshot: the local publisher takes it from here, with
   * no read back from Postgres. Other replicas learn of it through the feed.
   */
  onCommitted(listener: (revision: number, snapshot: RevisionSnapshot) => void): () => void {
    this.committedListeners.add(listener);
    return () => this.committedListeners.delete(listener);
  }

  /**
   * Calls `listener` with the config a commit is about to make durable, once its
   * statement is on its way to Postgres and before it is known to have
   * committed: work that only depends on the config (translation) can run while
   * Postgres syncs its log. The config may never be committed (the statement
   * can fail or find the head moved), so nothing may act on it yet: a commit
   * is announced by onCommitted, with these same (frozen) arrays.
   */
  onPrepared(listener: (config: DeclarativeConfig) => void): () => void {
    this.preparedListeners.add(listener);
    return () => this.preparedListeners.delete(listener);
  }

  /** Tells the prepared listeners (their failures are theirs: the commit goes on). */
  private announcePrepared(config: DeclarativeConfig): void {
    for (const listener of this.preparedListeners) {
      try {
        listener(config);
      } catch {
        // A listener's failure never affects the commit.
      }
    }
  }

  /**
   * The config and keys of any retained revision, exactly as loadState gave
   * them then; undefined when there is no such revision or it was pruned
   * (tell them apart with oldestRevision).
   */
  async revisionSnapshot(revision: number): Promise<RevisionSnapshot | undefined> {
    if (this.latest?.revision === revision) return structuredClone(this.latest.snapshot);
    return (await reconstruct(this.prisma, revision))?.snapshot;
  }

  /** The oldest revision still stored (0 when there are none): anything older was pruned. */
  async oldestRevision(): Promise<number> {
    const row = await this.prisma.revision.findFirst({ orderBy: { id: 'asc' }, select: { id: true } });
    return row ? Number(row.id) : 0;
  }

  /** What revision `revision` changed; undefined for a revision from before change sets were kept, or none. */
  async changeSet(revision: number): Promise<ChangeSet | undefined> {
    const [row] = await this.prisma.$queryRaw<Array<{ changes: string | null }>>`
      SELECT changes::text AS changes FROM revisions WHERE id = ${BigInt(revision)}`;
    return row?.changes ? (JSON.parse(row.changes) as ChangeSet) : undefined;
  }

  /**
   * Deletes revisions and audit rows past retention (see RevisionHistorySettings).
   * Concurrent calls share one run. Writers are never blocked: see pruneHistory.
   */
  prune(now = new Date()): Promise<PruneResult | undefined> {
    this.pruning ??= pruneHistory(this.prisma, this.history, now).finally(() => {
      this.pruning = undefined;
    });
    return this.pruning;
  }

  /** Prunes every `everyMs` (age-based retention needs a clock, not only writes); returns a stop function. */
  startPruning(everyMs = 3_600_000): () => void {
    const timer = setInterval(() => void this.prune().catch(this.onPruneError), everyMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** After a commit: a prune in the background every pruneEveryCommits commits, never awaited by the writer. */
  private afterCommit(): void {
    this.commitsSincePrune += 1;
    if (this.commitsSincePrune < this.history.pruneEveryCommits || this.pruning) return;
    this.commitsSincePrune = 0;
    void this.prune().catch(this.onPruneError);
  }

  async listRevisions(limit: number, before?: number): Promise<RevisionSummary[]> {
    const rows = await this.prisma.revision.findMany({
      where: before === undefined ? {} : { id: { lt: BigInt(before) } },
      orderBy: { id: 'desc' },
      take: limit,
      select: { id: true, createdAt: true, author: true, message: true },
    });
    return rows.map((r) => ({ revision: Number(r.id), createdAt: r.createdAt, author: r.author, message: r.message }));
  }

  async revisionDiff(revision: number): Promise<DiffEntry[]> {
    const rows = await this.prisma.auditLog.findMany({ where: { revision: BigInt(revision) }, orderBy: { id: 'asc' } });
    return rows.map((r) => ({
      op: r.action as DiffEntry['op'],
      kind: r.kind as Kind,
      name: r.objectName ?? '',
      ...(r.before === null ? {} : { before: r.before as ObjectSpec }),
      ...(r.after === null ? {} : { after: r.after as ObjectSpec }),
    }));
  }

  async get(kind: Kind, name: string): Promise<StoredObject | undefined> {
    // Raw: every object write reads its object back, and a model query costs twice the CPU (its query compilation).
    const keyPrefix = kind === 'credentials' ? ', key_prefix AS "keyPrefix"' : '';
    const [row] = await rawRows<Row>(
      this.prisma,
      `SELECT name, spec, version, created_at AS "createdAt", updated_at AS "updatedAt"${keyPrefix} FROM ${TABLES[kind]} WHERE name = $1`,
      name,
    );
    return row ? toStored(kind, row) : undefined;
  }

  /** A page of objects ordered by name, after `after` (exclusive), optionally by name prefix. */
  async list(kind: Kind, opts: { limit: number; after?: string; prefix?: string }): Promise<StoredObject[]> {
    const where: Record<string, unknown> = {};
    const name: Record<string, string> = {};
    if (opts.after !== undefined) name.gt = opts.after;
    if (opts.prefix !== undefined) name.startsWith = opts.prefix;
    if (Object.keys(name).length > 0) where.name = name;
    const rows = (await delegate(this.prisma, kind).findMany({ where, orderBy: { name: 'asc' }, take: opts.limit })) as Row[];
    return rows.map((row) => toStored(kind, row));
  }

  /**
   * Runs `plan` on a draft of the current config and commits the result as one
   * revision. Nothing is written when the plan throws, the result is invalid,
   * nothing changed, or `dryRun` is set (then the diff is still returned).
   */
  commit(actor: string, message: string, plan: (draft: Draft) => void, opts: { dryRun?: boolean } = {}): Promise<CommitResult> {
    // This process's writers take turns, so each plans on the head the previous one left (not on a head
    // a concurrent local commit is about to replace, which would cost it a retry).
    const turn = this.localTurn.then(() => this.commitWithRetry(actor, message, plan, opts));
    this.localTurn = turn.catch(() => undefined);
    return turn;
  }

  private async commitWithRetry(actor: string, message: string, plan: (draft: Draft) => void, opts: { dryRun?: boolean }): Promise<CommitResult> {
    let mode: CommitMode = opts.dryRun ? 'trusted' : 'alone';
    for (;;) {
      try {
        return await this.commitOn(actor, message, plan, opts, mode);
      } catch (err) {
        // Another replica wrote since this process last looked: once more, from the head read under the lock.
        if (err instanceof StaleHead && mode !== 'fresh') mode = 'fresh';
        // The change needs reads under the lock (If-Match, keys) or writes the one statement does not make.
        else if (err instanceof NeedsTransaction && mode === 'alone') mode = 'trusted';
        else throw err;
      }
    }
  }

  /**
   * One commit attempt (see CommitMode). Trusting the cache, the head this
   * process last saw is not read again before the plan runs; its freshness is
   * checked instead, under the write lock, by the statement that writes the
   * revision (or by one query when the attempt ends without writing), and a
   * stale head throws StaleHead with nothing written.
   */
  private async commitOn(actor: string, message: string, plan: (draft: Draft) => void, opts: { dryRun?: boolean }, mode: CommitMode): Promise<CommitResult> {
    let head: Head | undefined;
    let moved: { index: ValidationIndex; diff: DiffEntry[] } | undefined;
    const body = async (db: PrismaClient): Promise<CommitResult & { committed?: Head }> => {
      if (mode !== 'alone') await db.$executeRaw`SELECT pg_advisory_xact_lock(${WRITE_LOCK})`;
      const trusted = mode === 'fresh' ? undefined : this.latest;
      if (mode === 'alone' && !trusted) throw new NeedsTransaction();
      head = trusted ?? (await this.latestSnapshot(db));
      const attempt = this.attempt(db, head, actor, message, plan, opts, mode === 'alone', (m) => (moved = m));
      if (!trusted) return attempt;
      // Under the lock, a head that is current now stays current until the transaction ends. Alone (no
      // lock), a verdict or a no-op on the head that is current now is the answer as of now.
      const assertCurrent = async () => {
        if ((await headRevision(db)) !== trusted.revision) throw new StaleHead();
      };
      try {
        const result = await attempt;
        if (!result.committed) await assertCurrent(); // a dry run or no-op: nothing checked it yet
        return result;
      } catch (err) {
        // A verdict of the plan or the validation on a stale config is no verdict. (A Postgres error aborted the transaction: no query then.)
        if (err instanceof StoreError) await assertCurrent();
        throw err;
      }
    };
    const run = mode === 'alone' ? body(this.prisma) : this.prisma.$transaction((tx) => body(tx as unknown as PrismaClient), { timeout: 30_000, maxWait: 10_000 });
    return run.then(
      ({ committed, ...result }: CommitResult & { committed?: Head }) => {
        // Only after the commit: a rolled-back transaction must not leave its config here.
        if (committed) {
          committed.index = moved?.index;
          // `<=`: a reload that ran while this commit settled (the NOTIFY can come first) cached the same
          // revision read back, without the validation index this commit moved along: keep this one.
          if (!this.latest || this.latest.revision <= committed.revision) this.latest = committed;
          if (committed.checkpointDue) this.scheduleCheckpoint(committed);
          this.afterCommit();
          for (const listener of this.committedListeners) {
            try {
              listener(committed.revision, committed.snapshot);
            } catch {
              // The revision is committed whatever a listener does; listeners report their own failures.
            }
          }
        } else if (moved && head) {
          moved.index.revert(moved.diff); // dry run or no-op: the index stays with the head it describes
          head.index ??= moved.index;
        }
        return result;
      },
      (err: unknown) => {
        if (moved && head) {
          moved.index.revert(moved.diff);
          head.index ??= moved.index;
        }
        throw err;
      },
    );
  }

  /** Plans, validates and writes one revision on `head`: inside the commit's transaction, or `alone` (see CommitMode). */
  private async attempt(
    tx: PrismaClient,
    head: Head,
    actor: string,
    message: string,
    plan: (draft: Draft) => void,
    opts: { dryRun?: boolean },
    alone: boolean,
    onMoved: (moved: { index: ValidationIndex; diff: DiffEntry[] }) => void,
  ): Promise<CommitResult & { committed?: Head }> {
    const { revision: currentRevision, snapshot: current } = head;
    const since = this.sinceOf(head);
    // The head's config is shared, never copied or edited (it is frozen): the draft records what the plan writes.
    const draft = new Draft(current.config, { ...current.credential_keys });
    plan(draft);
    // If-Match versions and revoked keys are read under the lock: only a transaction holds it across statements.
    // So are consumers and credentials (foreign key, cascade, key columns): known before any validation work is spent.
    if (alone && (draft.expectedVersions.length > 0 || bringsKeys(current.credential_keys, draft.keys) || draft.changedKind('consumers') || draft.changedKind('credentials'))) throw new NeedsTransaction();
    await checkVersions(tx, draft.expectedVersions);
    // Config comes back on a rollback; revoked key material never does.
    const keysWithheld = await withholdRevokedKeys(tx, current.credential_keys, draft.keys);

    // Object operations: worked out from the objects written (O(change)). A whole config: compared in full.
    const planned = draft.plannedChange();
    const { next, diff } = planned ?? wholeChange(draft, current.config);
    // Cross-object rules for what the change touches and what references it
    // (model/cross-object.ts); the index moves with the change and moves back
    // if the change is refused or its transaction fails.
    const index = takeIndex(head);
    index.apply(diff);
    onMoved({ index, diff });
    // A whole config the model checked in full needs no second verdict: validateState's is order-independent,
    // and `next` is that config sorted (objects equal in content may be the head's own, which changes nothing).
    const issues = draft.validatedWhole ? [] : validateChange(index, { revision: currentRevision + 1, ...next }, diff, { sortedUnique: planned !== undefined });
    if (issues.length > 0) throw new StoreError('invalid', 'the change would make the config invalid', issues);

    const keysChanged = JSON.stringify(sortKeys(current.credential_keys)) !== JSON.stringify(sortKeys(draft.keys));
    if (opts.dryRun || (diff.length === 0 && !keysChanged)) return { revision: currentRevision, changed: false, diff, keysWithheld };
    if (alone && (keysChanged || diff.some((d) => !PLAIN_KINDS.includes(d.kind)))) throw new NeedsTransaction();

    // Raw insert with the JSON as one text parameter: Prisma's Json input path
    // walks the whole (large) object and costs ~25 ms per 1,000 routes.
    const nextSnapshot: RevisionSnapshot = { config: next, credential_keys: sortedKeys(draft.keys) };
    const changesJson = JSON.stringify(changeSetOf(diff, current.credential_keys, nextSnapshot.credential_keys));
    const changeBytes = Buffer.byteLength(changesJson);
    const checkpoint = needsCheckpoint(currentRevision, since, changeBytes, this.history);
    // Every row has its change set. The whole config goes into the commit's own row only for the first
    // revision (nothing to rebuild it from); any other checkpoint is written after the commit (scheduleCheckpoint).
    const inline = checkpoint && currentRevision === 0;
    const snapshotJson = inline ? JSON.stringify(nextSnapshot) : null;
    // One statement writes the revision, its audit rows and the rows of the
    // plain kinds (see writeRevision): one round trip for a typical write.
    const writing = writeRevision(tx, { actor, message: withheldNote(message, keysWithheld), snapshotJson, changesJson, parent: currentRevision }, diff, alone);
    this.announcePrepared(next); // the statement is sent: its round trip and fsync overlap the listeners' work
    const revisionId = await writing;
    if (revisionId === undefined) throw new StaleHead();
    // Counted on until a checkpoint exists: the background one resets them when written (sinceOf).
    const nextSince: SinceCheckpoint = inline ? sinceCheckpointAt(Number(revisionId)) : { revisions: since.revisions + 1, bytes: since.bytes + changeBytes, from: since.from };
    await recordRevocations(tx, droppedKeys(current.credential_keys, draft.keys), revisionId);
    await writeKeyedRows(tx, diff, draft.keys, rekeyed(current.credential_keys, draft.keys, next));
    const committed: Head = { revision: Number(revisionId), snapshot: freezeSnapshot(nextSnapshot), since: nextSince, checkpointDue: checkpoint && !inline };
    return { revision: Number(revisionId), changed: true, diff, keysWithheld, committed };
  }
}

/** The cached newest revision: its snapshot and how far it is from its checkpoint. */
interface Head {
  revision: number;
  /** Frozen: shared with the publisher and loadState callers, never copied. */
  snapshot: RevisionSnapshot;
  since: SinceCheckpoint;
  /** Cross-object links of `snapshot` (built on the first write, then moved along with each commit). */
  index?: ValidationIndex;
  /** Made by a commit that found the revision due a checkpoint (written after the commit: scheduleCheckpoint). */
  checkpointDue?: boolean;
}

/** The head's validation index, taken from it (a commit moves it to the next head). */
function takeIndex(head: Head): ValidationIndex {
  const index = head.index ?? ValidationIndex.of(head.snapshot.config);
  head.index = undefined;
  return index;
}

/** Deep-frozen; objects carried over from the previous head are frozen already and cost a check each. */
function freezeSnapshot(snapshot: RevisionSnapshot): RevisionSnapshot {
  return deepFreeze(snapshot);
}

/** Replicas catch up by change sets when a little behind; further behind, a rebuild from the checkpoint is cheaper. */
const CATCH_UP_LIMIT = 50;

/**
 * `from` advanced to `to` by the rows in between; undefined when too far behind
 * or when `from`'s own row was pruned (rows after it may be gone too: the
 * caller then rebuilds from a checkpoint). Each row costs what it changed
 * (applyChangeSetWithDiff), and `from`'s validation index, if it has one,
 * moves along with that diff (O(change), where building one anew is
 * O(config)), so a replica writing after another replica's writes stays cheap.
 */
async function catchUp(prisma: PrismaClient, from: Head, to: number): Promise<Omit<Head, 'revision'> | undefined> {
  if (to - from.revision > CATCH_UP_LIMIT) return undefined;
  const rows = await changeSetsSince(prisma, from.revision, to);
  if (!rows || rows.length === 0 || Number(rows.at(-1)!.id) !== to) return undefined;
  // Taken, not shared: a replay that fails half way must not leave `from` a half-moved index.
  const index = from.index;
  from.index = undefined;
  let snapshot = from.snapshot;
  let since = from.since;
  for (const row of rows) {
    const next = replay(snapshot, since, row);
    // The diff the change set made (O(change)); a row replayed without one (a legacy full row) is compared whole.
    index?.apply(next.diff ?? diffConfigs(snapshot.config, next.snapshot.config));
    ({ snapshot, since } = next);
  }
  return { snapshot, since, index };
}

// ---- API-key revocation -----------------------------------------------------
// A key is revoked for good once a commit drops it (credential deleted, its
// consumer deleted, key replaced, config applied or rolled back without it).
// Revision snapshots still hold old hashes, so every commit checks the hashes
// it would bring in against revoked_api_keys; the authz service only ever sees
// the keys of the newest revision, which therefore never include a revoked one.

/** Hashes in `current` that `next` no longer holds, with the credential that held each. */
function droppedKeys(current: Record<string, CredentialKey>, next: Record<string, CredentialKey>): Array<{ name: string; hash: string }> {
  const kept = new Set(Object.values(next).map((key) => key.hash));
  return Object.entries(current)
    .filter(([, key]) => !kept.has(key.hash))
    .map(([name, key]) => ({ name, hash: key.hash }));
}

/** Written in the commit's transaction: the revocation exists exactly when the revision that dropped the key does. */
async function recordRevocations(prisma: PrismaClient, dropped: Array<{ name: string; hash: string }>, revision: bigint): Promise<void> {
  if (dropped.length === 0) return;
  await prisma.$executeRaw`
    INSERT INTO revoked_api_keys (key_hash, credential, revision)
    SELECT hash, name, ${revision} FROM unnest(${dropped.map((d) => d.hash)}::text[], ${dropped.map((d) => d.name)}::text[]) AS t(hash, name)
    ON CONFLICT (key_hash) DO NOTHING`;
}

/**
 * Removes from `keys` (in place) every hash the commit would bring in that is
 * revoked. The credential itself stays; it keeps the key it has now, if any,
 * else it has none until a new one is issued (Draft.issueKey). Returns the
 * affected credential names, sorted.
 */
async function withholdRevokedKeys(prisma: PrismaClient, current: Record<string, CredentialKey>, keys: Record<string, CredentialKey>): Promise<string[]> {
  const live = new Set(Object.values(current).map((key) => key.hash));
  const incoming = Object.entries(keys).filter(([, key]) => !live.has(key.hash));
  if (incoming.length === 0) return [];
  const rows = await prisma.$queryRaw<Array<{ key_hash: string }>>`
    SELECT key_hash FROM revoked_api_keys WHERE key_hash = ANY(${incoming.map(([, key]) => key.hash)}::text[])`;
  const revoked = new Set(rows.map((row) => row.key_hash));
  const withheld: string[] = [];
  for (const [name, key] of incoming) {
    if (!revoked.has(key.hash)) continue;
    withheld.push(name);
    const kept = current[name];
    if (kept) keys[name] = kept;
    else delete keys[name];
  }
  return withheld.sort();
}

/** Whether `keys` holds a hash `current` does not (withholdRevokedKeys must then look at the revocations). */
function bringsKeys(current: Record<string, CredentialKey>, keys: Record<string, CredentialKey>): boolean {
  const live = new Set(Object.values(current).map((key) => key.hash));
  return Object.values(keys).some((key) => !live.has(key.hash));
}

/** The revision message, saying which credentials came back without their (revoked) key. */
function withheldNote(message: string, withheld: string[]): string {
  if (withheld.length === 0) return message;
  return `${message} (API keys not restored, revoked for good: ${withheld.join(', ')}; issue new keys)`;
}

/** Credentials kept in `next` whose key changed without a spec change (their row needs the new key columns). */
function rekeyed(current: Record<string, CredentialKey>, keys: Record<string, CredentialKey>, next: DeclarativeConfig): string[] {
  return next.credentials.map((c) => c.name).filter((name) => current[name]?.hash !== keys[name]?.hash);
}

/** A revision's State and keys as loadState gives them: the frozen snapshot's arrays, not copies. */
function stateOf(revision: number, snapshot: RevisionSnapshot): { state: State; keys: Record<string, CredentialKey> } {
  return { state: { revision, ...snapshot.config }, keys: { ...snapshot.credential_keys } };
}

function emptyConfig(): DeclarativeConfig {
  const { revision: _revision, ...config } = emptyState(0);
  return config;
}

interface ObjectDelegate {
  findUnique(args: { where: { name: string } }): Promise<unknown>;
  findMany(args: object): Promise<unknown[]>;
  create(args: { data: Record<string, unknown> }): Promise<unknown>;
  update(args: { where: { name: string }; data: Record<string, unknown> }): Promise<unknown>;
  delete(args: { where: { name: string } }): Promise<unknown>;
}

/** The Prisma model delegate for a kind (the six object tables share one shape). */
function delegate(prisma: PrismaClient, kind: Kind): ObjectDelegate {
  const delegates: Record<Kind, unknown> = {
    upstreams: prisma.upstream,
    routes: prisma.route,
    consumers: prisma.consumer,
    credentials: prisma.credential,
    jwt_providers: prisma.jwtProvider,
    rate_limit_policies: prisma.rateLimitPolicy,
  };
  return delegates[kind] as ObjectDelegate;
}

/** The If-Match checks a plan asked for, against the rows (one query per kind named). */
async function checkVersions(prisma: PrismaClient, expected: Draft['expectedVersions']): Promise<void> {
  for (const kind of KINDS) {
    const wanted = expected.filter((e) => e.kind === kind);
    if (wanted.length === 0) continue;
    const rows = (await delegate(prisma, kind).findMany({ where: { name: { in: wanted.map((e) => e.name) } }, select: { name: true, version: true } })) as Array<{ name: string; version: number }>;
    const versions = new Map(rows.map((row) => [row.name, row.version]));
    for (const { name, version } of wanted) {
      const current = versions.get(name);
      if (current !== version) throw new StoreError('precondition_failed', `${kind} '${name}' is at version ${current}, not ${version}`);
    }
  }
}

/**
 * Inserts the revision row (with `takeLock`, taking the write lock first: one
 * statement is then a whole commit), unless the newest revision is no longer `parent`
 * (another replica wrote: then nothing at all is written and the result is
 * undefined), and, in the same statement, one audit row per change
 * (in diff order: ids ascend with it) and the object rows of the plain kinds
 * (PLAIN_KINDS: no foreign keys between them). Data-modifying CTEs all run;
 * the audit rows' foreign key to the revision is checked at the end of the
 * statement, when the revision row exists. Consumers and credentials (a
 * foreign key and cascades between them) are written by writeKeyedRows after.
 * Returns the new revision's id.
 */
async function writeRevision(
  prisma: PrismaClient,
  row: { actor: string; message: string; snapshotJson: string | null; changesJson: string; parent: number },
  diff: DiffEntry[],
  takeLock: boolean,
): Promise<bigint | undefined> {
  const changes = diff.map((d, i) => ({ i, op: d.op, kind: d.kind, name: d.name, before: d.before ?? null, after: d.after ?? null }));
  const writes: string[] = [];
  for (const kind of PLAIN_KINDS) {
    const table = TABLES[kind];
    const has = (op: DiffEntry['op']) => diff.some((d) => d.kind === kind && d.op === op);
    const input = (op: DiffEntry['op']) => `SELECT c.name, c.after FROM changes c WHERE c.kind = '${kind}' AND c.op = '${op}'`;
    if (has('delete')) writes.push(`DELETE FROM ${table} WHERE name IN (SELECT x.name FROM (${input('delete')}) AS x)`);
    if (has('create')) writes.push(`INSERT INTO ${table} (name, spec) SELECT x.name, x.after FROM (${input('create')}) AS x`);
    if (has('update')) writes.push(`UPDATE ${table} AS t SET spec = x.after, version = t.version + 1, updated_at = now() FROM (${input('update')}) AS x WHERE t.name = x.name`);
  }
  // Alone (not in a transaction), the statement goes through the pool (rawRows): the typical write's one round trip.
  const [revision] = await rawRows<{ id: bigint | string }>(
    prisma,
    `WITH ${takeLock ? LOCKED_HEAD : TRANSACTION_HEAD},
     revision AS (
       INSERT INTO revisions (author, message, snapshot, changes)
       SELECT $1, $2, $3::json, $4::json FROM head WHERE head.id = $6
       RETURNING id
     ),
     changes AS (
       SELECT r.* FROM revision, jsonb_to_recordset($5::jsonb) AS r(i int, op text, kind text, name text, before jsonb, after jsonb)
     ),
     audit AS (
       INSERT INTO audit_log (revision, actor, action, kind, object_name, before, after)
       SELECT revision.id, $1, c.op, c.kind, c.name, c.before, c.after FROM revision, changes c ORDER BY c.i
     )${writes.map((sql, i) => `,\n     w${i} AS (${sql})`).join('')}
     SELECT id FROM revision`,
    row.actor,
    row.message,
    row.snapshotJson,
    row.changesJson,
    JSON.stringify(changes),
    BigInt(row.parent),
  );
  return revision === undefined ? undefined : BigInt(revision.id); // node-postgres gives int8 as text
}

/** The head inside a transaction that holds the write lock: the newest revision its statement sees. */
const TRANSACTION_HEAD = `head AS (SELECT coalesce(max(id), 0) AS id FROM revisions)`;

/**
 * The head for a statement that takes the write lock itself. Its snapshot was
 * taken before the lock was granted, so it may not see a revision committed
 * while it waited; the identity sequence, not transactional, does: every
 * writer draws the next id while holding the lock, so under the lock the last
 * value drawn is the newest revision's id, or more after a writer rolled back
 * (then the head merely looks stale and the commit is retried from a fresh
 * read). The sequence is read in a step that consumes the lock's row, so after
 * the lock is granted.
 */
const LOCKED_HEAD = `lock AS MATERIALIZED (SELECT pg_advisory_xact_lock(${WRITE_LOCK}) AS granted),
     head AS MATERIALIZED (
       SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('revisions', 'id')::regclass), 0) AS id FROM lock
     )`;

/** The newest revision's id (0 before the first write). */
async function headRevision(prisma: PrismaClient): Promise<number> {
  const head = await prisma.revision.findFirst({ orderBy: { id: 'desc' }, select: { id: true } });
  return head ? Number(head.id) : 0;
}

/** Each kind's table (fixed names: the only text spliced into SQL here). */
const TABLES: Record<Kind, string> = {
  upstreams: 'upstreams',
  routes: 'routes',
  consumers: 'consumers',
  credentials: 'credentials',
  jwt_providers: 'jwt_providers',
  rate_limit_policies: 'rate_limit_policies',
};

/** Kinds whose rows hold only a name and a spec, with no foreign key between them: writeRevision writes these. */
const PLAIN_KINDS: readonly Kind[] = ['upstreams', 'routes', 'jwt_providers', 'rate_limit_policies'];

/**
 * Applies the consumer and credential part of a diff (the plain kinds went with
 * writeRevision) with a few set-based statements (one per kind and operation,
 * the rows passed as one JSON parameter), so a 10,000-object apply is as many
 * statements as a one-object write. Deletes first (credentials before
 * consumers; a consumer's cascade may have taken its credentials already),
 * then creates and updates, consumers before credentials; then the key
 * columns of `rekeyedCredentials` the diff did not already write.
 */
async function writeKeyedRows(prisma: PrismaClient, diff: DiffEntry[], keys: Record<string, CredentialKey>, rekeyedCredentials: string[]): Promise<void> {
  for (const kind of ['credentials', 'consumers'] as const) {
    const names = diff.filter((d) => d.op === 'delete' && d.kind === kind).map((d) => d.name);
    if (names.length > 0) await prisma.$executeRawUnsafe(`DELETE FROM ${TABLES[kind]} WHERE name = ANY($1::text[])`, names);
  }
  for (const kind of ['consumers', 'credentials'] as const) {
    for (const op of ['create', 'update'] as const) {
      const entries = diff.filter((d) => d.op === op && d.kind === kind);
      if (entries.length === 0) continue;
      if (kind === 'credentials') await writeCredentials(prisma, op, entries.map((d) => d.after as Credential), keys);
      else await writeObjects(prisma, TABLES[kind], op, entries.map((d) => ({ name: d.name, spec: d.after })));
    }
  }
  const written = new Set(diff.filter((d) => d.kind === 'credentials').map((d) => d.name));
  const rekeys = rekeyedCredentials.filter((name) => !written.has(name)).map((name) => ({ name, key_prefix: keys[name]?.prefix ?? null, key_hash: keys[name]?.hash ?? null }));
  if (rekeys.length === 0) return;
  await prisma.$executeRawUnsafe(
    `UPDATE credentials AS t SET key_prefix = r.key_prefix, key_hash = r.key_hash, version = t.version + 1, updated_at = now()
     FROM jsonb_to_recordset($1::jsonb) AS r(name text, key_prefix text, key_hash text) WHERE t.name = r.name`,
    JSON.stringify(rekeys),
  );
}

type Credential = DeclarativeConfig['credentials'][number];

async function writeObjects(prisma: PrismaClient, table: string, op: 'create' | 'update', rows: Array<{ name: string; spec: unknown }>): Promise<void> {
  const json = JSON.stringify(rows);
  if (op === 'create') {
    await prisma.$executeRawUnsafe(`INSERT INTO ${table} (name, spec) SELECT r.name, r.spec FROM jsonb_to_recordset($1::jsonb) AS r(name text, spec jsonb)`, json);
    return;
  }
  await prisma.$executeRawUnsafe(
    `UPDATE ${table} AS t SET spec = r.spec, version = t.version + 1, updated_at = now() FROM jsonb_to_recordset($1::jsonb) AS r(name text, spec jsonb) WHERE t.name = r.name`,
    json,
  );
}

/** Credentials carry their consumer's row id and the key columns besides the spec. */
async function writeCredentials(prisma: PrismaClient, op: 'create' | 'update', credentials: Credential[], keys: Record<string, CredentialKey>): Promise<void> {
  const rows = credentials.map((c) => ({
    name: c.name,
    consumer: c.consumer,
    key_prefix: keys[c.name]?.prefix ?? null,
    key_hash: keys[c.name]?.hash ?? null,
    expires_at: c.expires_at ?? null,
    spec: c,
  }));
  const recordset = `jsonb_to_recordset($1::jsonb) AS r(name text, consumer text, key_prefix text, key_hash text, expires_at timestamptz, spec jsonb) JOIN consumers c ON c.name = r.consumer`;
  const written =
    op === 'create'
      ? await prisma.$executeRawUnsafe(`INSERT INTO credentials (name, consumer_id, key_prefix, key_hash, expires_at, spec) SELECT r.name, c.id, r.key_prefix, r.key_hash, r.expires_at, r.spec FROM ${recordset}`, JSON.stringify(rows))
      : await prisma.$executeRawUnsafe(
          `UPDATE credentials AS t SET consumer_id = x.consumer_id, key_prefix = x.key_prefix, key_hash = x.key_hash, expires_at = x.expires_at, spec = x.spec, version = t.version + 1, updated_at = now()
           FROM (SELECT r.name, c.id AS consumer_id, r.key_prefix, r.key_hash, r.expires_at, r.spec FROM ${recordset}) AS x WHERE t.name = x.name`,
          JSON.stringify(rows),
        );
  // validateChange already refused unknown consumers; a mismatch here means the rows and the config disagree.
  if (written !== rows.length) throw new StoreError('invalid', 'unknown consumer', [{ path: ['consumer'], message: 'unknown consumer' }]);
}

function toStored(kind: Kind, row: Row): StoredObject {
  return {
    kind,
    name: row.name,
    spec: row.spec as ObjectSpec,
    version: row.version,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    ...(row.keyPrefix ? { keyPrefix: row.keyPrefix } : {}),
  };
}
