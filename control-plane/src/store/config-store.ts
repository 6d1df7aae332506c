// The gateway config in Postgres. Every write is one transaction that
// serialises on an advisory lock, applies the change to the whole config,
// validates the result with model/ (so nothing half-valid is ever stored),
// writes the changed rows, a revision (its change set, now and then the whole
// config as a checkpoint: see revision-history.ts) and one audit row per
// change. The revision insert fires NOTIFY on commit (see the migration), which
// is how every replica learns of it.
import {
  KINDS, DeclarativeConfigSchema, ValidationIndex, emptyState, issuesFromZod, validateChange,
  type DeclarativeConfig, type Issue, type Kind, type State,
} from '../model/index.ts';
import { deepFreeze } from './frozen.ts';
import type { PrismaClient } from './prisma.ts';
import {
  changeSetOf, DEFAULT_HISTORY, needsCheckpoint, pruneHistory, reconstruct, replay, rowsAfter, sortedKeys,
  type ChangeSet, type CredentialKey, type PruneResult, type RevisionHistorySettings, type RevisionSnapshot, type SinceCheckpoint,
} from './revision-history.ts';

export type { ChangeSet, CredentialKey, PruneResult, RevisionHistorySettings, RevisionSnapshot } from './revision-history.ts';
export { DEFAULT_HISTORY } from './revision-history.ts';

/** Advisory lock key serialising config writers (any fixed 64-bit number). */
const WRITE_LOCK = 7_300_115_105_099n;

export type StoreErrorCode = 'invalid' | 'not_found' | 'conflict' | 'precondition_failed' | 'unavailable';

/** A failure the admin API maps to a 4xx/503; `issues` name the offending fields. */
export class StoreError extends Error {
  constructor(readonly code: StoreErrorCode, message: string, readonly issues: Issue[] = []) {
    super(message);
    this.name = 'StoreError';
  }
}

export type ObjectSpec = DeclarativeConfig[Kind][number];

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

export interface DiffEntry {
  op: 'create' | 'update' | 'delete';
  kind: Kind;
  name: string;
  before?: ObjectSpec;
  after?: ObjectSpec;
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

/**
 * The config being changed inside a commit. Object operations check existence
 * and, when asked, the caller's ETag version.
 */
export class Draft {
  /**
   * If-Match versions the plan asked for, checked against the rows after the
   * plan ran (in the same transaction, under the write lock): reading only the
   * objects a change names keeps a write O(change).
   */
  readonly expectedVersions: Array<{ kind: Kind; name: string; version: number }> = [];

  constructor(
    readonly config: DeclarativeConfig,
    readonly keys: Record<string, CredentialKey>,
  ) {}

  get(kind: Kind, name: string): ObjectSpec | undefined {
    return (this.config[kind] as ObjectSpec[]).find((o) => o.name === name);
  }

  create(kind: Kind, spec: ObjectSpec, key?: CredentialKey): void {
    if (this.get(kind, spec.name)) throw new StoreError('conflict', `${kind} '${spec.name}' already exists`, [{ path: ['name'], message: 'already exists' }]);
    (this.config[kind] as ObjectSpec[]).push(spec);
    if (key) this.keys[spec.name] = key;
  }

  replace(kind: Kind, name: string, spec: ObjectSpec, ifVersion?: number): void {
    const list = this.config[kind] as ObjectSpec[];
    const index = list.findIndex((o) => o.name === name);
    if (index < 0) throw new StoreError('not_found', `${kind} '${name}' not found`);
    this.checkVersion(kind, name, ifVersion);
    if (spec.name !== name) throw new StoreError('invalid', 'name cannot be changed', [{ path: ['name'], message: `must be '${name}'` }]);
    list[index] = spec;
  }

  delete(kind: Kind, name: string, ifVersion?: number): void {
    const list = this.config[kind] as ObjectSpec[];
    const index = list.findIndex((o) => o.name === name);
    if (index < 0) throw new StoreError('not_found', `${kind} '${name}' not found`);
    this.checkVersion(kind, name, ifVersion);
    list.splice(index, 1);
    if (kind === 'credentials') delete this.keys[name];
    // A consumer's credentials go with it (as the foreign key cascades).
    if (kind === 'consumers') {
      for (const credential of this.config.credentials.filter((c) => c.consumer === name)) this.delete('credentials', credential.name);
    }
  }

  /**
   * Gives an api_key credential a new key (the old one, if any, is revoked by
   * the commit). This is how a credential restored by a rollback, which comes
   * back without a key, becomes usable again.
   */
  issueKey(name: string, key: CredentialKey): void {
    const credential = this.get('credentials', name) as DeclarativeConfig['credentials'][number] | undefined;
    if (!credential) throw new StoreError('not_found', `credentials '${name}' not found`);
    if (credential.kind !== 'api_key') throw new StoreError('invalid', `credentials '${name}' is not an api_key credential`, [{ path: ['kind'], message: 'must be api_key' }]);
    this.keys[name] = key;
  }

  /**
   * Objects the plan vouches were parsed by the model's schema already (a
   * declarative apply parses its body before it commits): the commit does not
   * parse them a second time.
   */
  readonly parsed = new WeakSet<object>();

  /**
   * Replaces the whole config (declarative apply, rollback); keys of kept
   * credentials stay. `parsed`: the config is the output of the model's schema.
   */
  replaceAll(config: DeclarativeConfig, keys?: Record<string, CredentialKey>, opts: { parsed?: boolean } = {}): void {
    for (const kind of KINDS) (this.config[kind] as ObjectSpec[]) = [...(config[kind] as ObjectSpec[])];
    if (opts.parsed) for (const kind of KINDS) for (const object of config[kind] as ObjectSpec[]) this.parsed.add(object);
    const kept = keys ?? this.keys;
    const next: Record<string, CredentialKey> = {};
    for (const credential of config.credentials) {
      const key = kept[credential.name] ?? this.keys[credential.name];
      if (key) next[credential.name] = key;
    }
    for (const name of Object.keys(this.keys)) delete this.keys[name];
    Object.assign(this.keys, next);
  }

  private checkVersion(kind: Kind, name: string, ifVersion: number | undefined): void {
    if (ifVersion !== undefined) this.expectedVersions.push({ kind, name, version: ifVersion });
  }
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
  private readonly committedListeners = new Set<(revision: number, snapshot: RevisionSnapshot) => void>();

  constructor(
    private readonly prisma: PrismaClient,
    history: Partial<RevisionHistorySettings> = {},
    /** Told when a background prune fails (the next one retries). */
    private readonly onPruneError: (err: unknown) => void = () => {},
  ) {
    this.history = { ...DEFAULT_HISTORY, ...history };
  }

  /**
   * The newest revision's snapshot. A write or reload that finds the cached
   * head current reads no history; one a few revisions behind (another
   * replica wrote) applies just the change sets since; otherwise it rebuilds
   * from the nearest checkpoint.
   */
  private async latestSnapshot(prisma: PrismaClient): Promise<Head> {
    const head = await prisma.revision.findFirst({ orderBy: { id: 'desc' }, select: { id: true } });
    if (!head) return { revision: 0, snapshot: { config: emptyConfig(), credential_keys: {} }, since: { revisions: 0, bytes: 0 } };
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
    const row = (await delegate(this.prisma, kind).findUnique({ where: { name } })) as Row | null;
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
  async commit(actor: string, message: string, plan: (draft: Draft) => void, opts: { dryRun?: boolean } = {}): Promise<CommitResult> {
    let head: Head | undefined;
    let moved: { index: ValidationIndex; diff: DiffEntry[] } | undefined;
    return this.prisma.$transaction(
      async (tx) => {
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(${WRITE_LOCK})`;
        head = await this.latestSnapshot(tx as unknown as PrismaClient);
        const { revision: currentRevision, snapshot: current, since } = head;
        // Arrays are copied, objects shared: Draft replaces objects, never edits them (they are frozen).
        const draft = new Draft(shallowCopy(current.config), { ...current.credential_keys });
        plan(draft);
        await checkVersions(tx as unknown as PrismaClient, draft.expectedVersions);
        // Config comes back on a rollback; revoked key material never does.
        const keysWithheld = await withholdRevokedKeys(tx as unknown as PrismaClient, current.credential_keys, draft.keys);

        const next = normalise(draft.config, current.config, draft.parsed);
        const diff = diffConfigs(current.config, next);
        // Cross-object rules for what the change touches and what references it
        // (model/cross-object.ts); the index moves with the change and moves back
        // if the change is refused or its transaction fails.
        const index = takeIndex(head);
        index.apply(diff);
        moved = { index, diff };
        const issues = validateChange(index, { revision: currentRevision + 1, ...next }, diff);
        if (issues.length > 0) throw new StoreError('invalid', 'the change would make the config invalid', issues);

        const keysChanged = JSON.stringify(sortKeys(current.credential_keys)) !== JSON.stringify(sortKeys(draft.keys));
        if (opts.dryRun || (diff.length === 0 && !keysChanged)) return { revision: currentRevision, changed: false, diff, keysWithheld };

        // Raw insert with the JSON as one text parameter: Prisma's Json input path
        // walks the whole (large) object and costs ~25 ms per 1,000 routes.
        const nextSnapshot: RevisionSnapshot = { config: next, credential_keys: sortedKeys(draft.keys) };
        const changesJson = JSON.stringify(changeSetOf(diff, current.credential_keys, nextSnapshot.credential_keys));
        const changeBytes = Buffer.byteLength(changesJson);
        const checkpoint = needsCheckpoint(currentRevision, since, changeBytes, this.history);
        // The whole config only on a checkpoint; every row has its change set.
        const snapshotJson = checkpoint ? JSON.stringify(nextSnapshot) : null;
        const [revision] = await tx.$queryRaw<Array<{ id: bigint }>>`
          INSERT INTO revisions (author, message, snapshot, changes)
          VALUES (${actor}, ${withheldNote(message, keysWithheld)}, ${snapshotJson}::jsonb, ${changesJson}::jsonb) RETURNING id`;
        if (!revision) throw new Error('revision insert returned no id');
        const nextSince: SinceCheckpoint = checkpoint ? { revisions: 0, bytes: 0 } : { revisions: since.revisions + 1, bytes: since.bytes + changeBytes };
        await recordRevocations(tx as unknown as PrismaClient, droppedKeys(current.credential_keys, draft.keys), revision.id);
        await writeRows(tx as unknown as PrismaClient, diff, draft.keys, rekeyed(current.credential_keys, draft.keys, next));
        const committed: Head = { revision: Number(revision.id), snapshot: freezeSnapshot(nextSnapshot), since: nextSince };
        await writeAudit(tx as unknown as PrismaClient, revision.id, actor, diff);
        return { revision: Number(revision.id), changed: true, diff, keysWithheld, committed };
      },
      { timeout: 30_000, maxWait: 10_000 },
    ).then(
      ({ committed, ...result }: CommitResult & { committed?: Head }) => {
        // Only after the commit: a rolled-back transaction must not leave its config here.
        if (committed) {
          committed.index = moved?.index;
          if (!this.latest || this.latest.revision < committed.revision) this.latest = committed;
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
}

/** The cached newest revision: its snapshot and how far it is from its checkpoint. */
interface Head {
  revision: number;
  /** Frozen: shared with the publisher and loadState callers, never copied. */
  snapshot: RevisionSnapshot;
  since: SinceCheckpoint;
  /** Cross-object links of `snapshot` (built on the first write, then moved along with each commit). */
  index?: ValidationIndex;
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
 * (or a gap makes it unsafe). `from`'s validation index, if it has one, moves
 * along with each row's changes (O(change), where building one anew is
 * O(config)), so a replica writing after another replica's writes stays cheap.
 */
async function catchUp(prisma: PrismaClient, from: Head, to: number): Promise<Omit<Head, 'revision'> | undefined> {
  if (to - from.revision > CATCH_UP_LIMIT) return undefined;
  const rows = await rowsAfter(prisma, from.revision, to);
  if (rows.length === 0 || Number(rows.at(-1)!.id) !== to) return undefined;
  // Taken, not shared: a replay that fails half way must not leave `from` a half-moved index.
  const index = from.index;
  from.index = undefined;
  let snapshot = from.snapshot;
  let since = from.since;
  for (const row of rows) {
    const next = replay(snapshot, since, row);
    index?.apply(diffConfigs(snapshot.config, next.snapshot.config));
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

function shallowCopy(config: DeclarativeConfig): DeclarativeConfig {
  const out = { ...config };
  for (const kind of KINDS) (out[kind] as ObjectSpec[]) = [...(config[kind] as ObjectSpec[])];
  return out;
}

/**
 * Parses every object the change brought in through the schema (filling in
 * defaults, so stored specs are canonical) and sorts by name. Objects carried
 * over from the current config are already canonical and are not parsed again.
 */
function normalise(config: DeclarativeConfig, current: DeclarativeConfig, parsedAlready: WeakSet<object>): DeclarativeConfig {
  const carried = new Set<object>(KINDS.flatMap((kind) => current[kind] as ObjectSpec[]));
  const known = { has: (o: object) => carried.has(o) || parsedAlready.has(o) };
  const fresh: Record<string, ObjectSpec[]> = {};
  for (const kind of KINDS) fresh[kind] = (config[kind] as ObjectSpec[]).filter((o) => !known.has(o));
  const parsed = DeclarativeConfigSchema.safeParse(fresh);
  if (!parsed.success) throw new StoreError('invalid', 'invalid config', issuesFromZod(parsed.error));
  const out = shallowCopy(config);
  for (const kind of KINDS) {
    const replacements = (parsed.data[kind] as ObjectSpec[])[Symbol.iterator]();
    (out[kind] as ObjectSpec[]) = (config[kind] as ObjectSpec[])
      .map((o) => deepFreeze(known.has(o) ? o : replacements.next().value!))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  return out;
}

/**
 * Object-level differences between two configs, in kind then name order. Both
 * are sorted by name (as the store keeps them), so one merge walk per kind;
 * objects carried over are the same object and are not compared. An object of
 * `after` equal in content to its `before` is replaced by it (`after`'s arrays
 * are the commit's own, not yet frozen).
 */
export function diffConfigs(before: DeclarativeConfig, after: DeclarativeConfig): DiffEntry[] {
  const diff: DiffEntry[] = [];
  for (const kind of KINDS) {
    const old = before[kind] as ObjectSpec[];
    const next = after[kind] as ObjectSpec[];
    let i = 0;
    let j = 0;
    while (i < old.length || j < next.length) {
      const a = old[i];
      const b = next[j];
      if (b === undefined || (a !== undefined && a.name < b.name)) {
        diff.push({ op: 'delete', kind, name: a!.name, before: a });
        i += 1;
      } else if (a === undefined || b.name < a.name) {
        diff.push({ op: 'create', kind, name: b.name, after: b });
        j += 1;
      } else {
        if (a !== b) {
          if (canonical(a) !== canonical(b)) diff.push({ op: 'update', kind, name: a.name, before: a, after: b });
          else next[j] = a; // equal content: keep the object the head has (caches downstream decide by identity)
        }
        i += 1;
        j += 1;
      }
    }
  }
  return diff;
}

function canonical(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortKeys) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const item = (value as Record<string, unknown>)[key];
    if (item !== undefined) out[key] = sortKeys(item);
  }
  return out as T;
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

/** One audit row per change, in diff order (ids ascend with it), in one statement. */
async function writeAudit(prisma: PrismaClient, revision: bigint, actor: string, diff: DiffEntry[]): Promise<void> {
  if (diff.length === 0) return;
  const rows = diff.map((d, i) => ({ i, action: d.op, kind: d.kind, object_name: d.name, before: d.before ?? null, after: d.after ?? null }));
  await prisma.$executeRaw`
    INSERT INTO audit_log (revision, actor, action, kind, object_name, before, after)
    SELECT ${revision}, ${actor}, r.action, r.kind, r.object_name, r.before, r.after
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS r(i int, action text, kind text, object_name text, before jsonb, after jsonb)
    ORDER BY r.i`;
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

/** Kinds in the order their rows may be written: consumers before the credentials that point at them. */
const WRITE_ORDER: readonly Kind[] = ['upstreams', 'routes', 'consumers', 'jwt_providers', 'rate_limit_policies', 'credentials'];

/**
 * Applies a diff to the object tables with a few set-based statements (one
 * per kind and operation, the rows passed as one JSON parameter), so a
 * 10,000-object apply is as many statements as a one-object write. Deletes
 * first (credentials before consumers; a consumer's cascade may have taken
 * its credentials already), then creates and updates, consumers before
 * credentials; then the key columns of `rekeyedCredentials` the diff did not
 * already write.
 */
async function writeRows(prisma: PrismaClient, diff: DiffEntry[], keys: Record<string, CredentialKey>, rekeyedCredentials: string[]): Promise<void> {
  for (const kind of ['credentials', ...WRITE_ORDER.filter((k) => k !== 'credentials')] as Kind[]) {
    const names = diff.filter((d) => d.op === 'delete' && d.kind === kind).map((d) => d.name);
    if (names.length > 0) await prisma.$executeRawUnsafe(`DELETE FROM ${TABLES[kind]} WHERE name = ANY($1::text[])`, names);
  }
  for (const kind of WRITE_ORDER) {
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
