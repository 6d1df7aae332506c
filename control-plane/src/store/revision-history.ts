// Revision history as change sets. Each revision row holds what its commit
// changed (objects written and deleted, credential keys set and dropped); every
// N revisions or M bytes of change sets one row also gets the whole config (a
// checkpoint), written after its commit, off the writer's path (writeCheckpoint):
// a checkpoint that is late or never written only lengthens a replay. Any
// retained revision is the nearest checkpoint at or before it with the change
// sets after it applied in order. Storage grows with what changes, not with the
// size of the config times the number of writes
// (migrations/0004_revision_changesets.sql). Both are stored as json, the text
// as written (0007_revision_history_json.sql): nothing queries inside them,
// and every read parses them through the model's schema.
//
// Retention deletes old rows in the background, a checkpoint interval at a
// time: a row goes only when it is older than the oldest retained revision's
// checkpoint, so reconstruction never meets a hole. The head is always kept.
import {
  KINDS, DeclarativeConfigSchema, issuesFromZod,
  type DeclarativeConfig, type Kind,
} from '../model/index.ts';
import { editNamed, isSortedUnique, type DiffEntry } from './draft.ts';
import { rawRows, type PrismaClient } from './prisma.ts';

/** Key material kept beside a credential: never the key, only its HMAC and a visible prefix. */
export interface CredentialKey {
  prefix: string;
  hash: string;
}

/** What a revision restores: the config and its credentials' key material. */
export interface RevisionSnapshot {
  config: DeclarativeConfig;
  credential_keys: Record<string, CredentialKey>;
}

type ObjectSpec = DeclarativeConfig[Kind][number];

/** What one commit changed; stored as the revision's `changes` column. */
export interface ChangeSet {
  /** Objects created or replaced, by kind (canonical specs). */
  put: Partial<Record<Kind, ObjectSpec[]>>;
  /** Names of deleted objects, by kind. */
  deleted: Partial<Record<Kind, string[]>>;
  /** Credential keys set or changed. */
  keys_put: Record<string, CredentialKey>;
  /** Credentials whose key was dropped. */
  keys_deleted: string[];
}

/** How history is kept. Every field has a documented default (DEFAULT_HISTORY). */
export interface RevisionHistorySettings {
  /** A checkpoint at least every this many revisions (bounds the change sets replayed). */
  checkpointEveryRevisions: number;
  /** A checkpoint once the change sets since the last one reach this many bytes. */
  checkpointEveryBytes: number;
  /** Keep (at least) the newest this many revisions; 0: no count limit. */
  retainRevisions: number;
  /** Keep (at least) revisions younger than this, in ms; 0: no age limit. */
  retainMs: number;
  /** Audit rows older than this are deleted, in ms; 0: kept forever. Longer than revisions: who changed what outlives the config. */
  auditRetainMs: number;
  /** A background prune starts after this many commits (and on the timer, see ConfigStore.startPruning). */
  pruneEveryCommits: number;
}

const DAY_MS = 86_400_000;

/**
 * Defaults: a checkpoint every 100 revisions or 5 MiB of change sets; revisions
 * kept while among the newest 1,000 and younger than 30 days; audit 365 days.
 */
export const DEFAULT_HISTORY: RevisionHistorySettings = {
  checkpointEveryRevisions: 100,
  checkpointEveryBytes: 5 * 1024 * 1024,
  retainRevisions: 1_000,
  retainMs: 30 * DAY_MS,
  auditRetainMs: 365 * DAY_MS,
  pruneEveryCommits: 50,
};

/** Change sets replayed since the last checkpoint: what decides the next one. */
export interface SinceCheckpoint {
  revisions: number;
  bytes: number;
  /** The revision of the checkpoint these count from (0: none seen), so counts can be moved onto a later one. */
  from: number;
}

/** No change sets since the checkpoint at `from`. */
export function sinceCheckpointAt(from: number): SinceCheckpoint {
  return { revisions: 0, bytes: 0, from };
}

/** The change from `before` to `after` (configs and keys), from the commit's object diff. */
export function changeSetOf(
  diff: ReadonlyArray<{ op: 'create' | 'update' | 'delete'; kind: Kind; name: string; after?: ObjectSpec }>,
  keysBefore: Record<string, CredentialKey>,
  keysAfter: Record<string, CredentialKey>,
): ChangeSet {
  const put: ChangeSet['put'] = {};
  const deleted: ChangeSet['deleted'] = {};
  for (const d of diff) {
    if (d.op === 'delete') (deleted[d.kind] ??= []).push(d.name);
    else (put[d.kind] ??= [] as ObjectSpec[]).push(d.after!);
  }
  const keys_put: Record<string, CredentialKey> = {};
  for (const name of Object.keys(keysAfter).sort()) {
    const key = keysAfter[name]!;
    const old = keysBefore[name];
    if (old?.hash !== key.hash || old.prefix !== key.prefix) keys_put[name] = { hash: key.hash, prefix: key.prefix };
  }
  const keys_deleted = Object.keys(keysBefore).filter((name) => !(name in keysAfter)).sort();
  return { put, deleted, keys_put, keys_deleted };
}

/**
 * `base` with `changes` applied; objects sorted by name as the store keeps them.
 * `base` is not modified (its objects are shared, never edited).
 */
export function applyChangeSet(base: RevisionSnapshot, changes: ChangeSet): RevisionSnapshot {
  return applyChangeSetWithDiff(base, changes).snapshot;
}

/**
 * applyChangeSet, with the object-level diff it made (kind, then name order,
 * as diffConfigs gives it). Each touched list is edited in place of a copy by
 * binary search (as Draft does), so a one-object change set costs what it
 * changes, not a sort of its kind. An object equal in content to the one it
 * replaces is kept as the old one and is no change (caches decide by identity).
 */
export function applyChangeSetWithDiff(base: RevisionSnapshot, changes: ChangeSet): { snapshot: RevisionSnapshot; diff: DiffEntry[] } {
  const config = { ...base.config };
  const parsedPut = parseObjects(changes.put);
  const diff: DiffEntry[] = [];
  for (const kind of KINDS) {
    // Deletions first, then writes: an object both deleted and written is written (as a Map in that order gave it).
    const edits = new Map<string, ObjectSpec | undefined>();
    for (const name of changes.deleted[kind] ?? []) edits.set(name, undefined);
    for (const spec of parsedPut[kind] as ObjectSpec[]) edits.set(spec.name, spec);
    if (edits.size === 0) continue;
    (config[kind] as ObjectSpec[]) = editSorted(kind, base.config[kind] as ObjectSpec[], edits, diff);
  }
  const keys = { ...base.credential_keys };
  for (const name of changes.keys_deleted) delete keys[name];
  for (const [name, key] of Object.entries(changes.keys_put)) keys[name] = { hash: key.hash, prefix: key.prefix };
  return { snapshot: { config, credential_keys: sortedKeys(keys) }, diff };
}

/** A copy of the name-sorted `list` with each edited name set to its object or removed; diff entries appended in name order. */
function editSorted(kind: Kind, list: readonly ObjectSpec[], edits: Map<string, ObjectSpec | undefined>, diff: DiffEntry[]): ObjectSpec[] {
  // Spread, not slice(): V8 copies a frozen array element by element in slice().
  const out = [...list];
  if (!isSortedUnique(list)) out.sort(byName_); // stored lists are sorted; a hand-made one is sorted once
  for (const name of [...edits.keys()].sort()) editNamed(kind, out, name, edits.get(name), diff);
  return out;
}

function byName_(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Parses stored objects through the schema, so they come back exactly as the store first canonicalised them. */
function parseObjects(put: ChangeSet['put']): DeclarativeConfig {
  const parsed = DeclarativeConfigSchema.safeParse(put);
  if (!parsed.success) throw new HistoryError(`stored change set does not parse: ${JSON.stringify(issuesFromZod(parsed.error).slice(0, 3))}`);
  return parsed.data;
}

/** A stored snapshot (checkpoint or legacy full row), parsed. */
export function parseSnapshot(value: unknown): RevisionSnapshot {
  const raw = (value ?? {}) as Partial<RevisionSnapshot>;
  const parsed = DeclarativeConfigSchema.safeParse(raw.config ?? {});
  if (!parsed.success) throw new HistoryError(`stored revision does not parse: ${JSON.stringify(issuesFromZod(parsed.error).slice(0, 3))}`);
  return { config: parsed.data, credential_keys: sortedKeys(raw.credential_keys ?? {}) };
}

/** Key material in name order, each as {hash, prefix}: Postgres's jsonb reorders keys, so order is fixed here. */
export function sortedKeys(keys: Record<string, CredentialKey>): Record<string, CredentialKey> {
  const out: Record<string, CredentialKey> = {};
  for (const name of Object.keys(keys).sort()) out[name] = { hash: keys[name]!.hash, prefix: keys[name]!.prefix };
  return out;
}

/** Stored history that cannot be read back (a bug or a hand-edited row): never papered over. */
export class HistoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HistoryError';
  }
}

interface HistoryRow {
  /** bigint through Prisma, text through the pool. */
  id: bigint | string;
  /** Whether the row holds a checkpoint. */
  checkpoint: boolean;
  /** The checkpoint's text, where it was read (see changeSetsSince). */
  snapshot: string | null;
  changes: string | null;
}

/**
 * The rows after `from` up to `to` (inclusive), in order, for a process whose
 * head is `from` to catch up by change sets. undefined when `from` is no
 * longer stored: a prune may then have deleted rows after it too, and
 * replaying what is left would skip changes. One statement, so a concurrent
 * prune cannot delete between the check and the read. A checkpoint's text is
 * read only for a row without a change set (legacy): catching up never needs
 * a whole config.
 */
export async function changeSetsSince(prisma: PrismaClient, from: number, to: number): Promise<HistoryRow[] | undefined> {
  const rows = await rawRows<HistoryRow>(
    prisma,
    `SELECT id, snapshot IS NOT NULL AS checkpoint, CASE WHEN changes IS NULL THEN snapshot::text END AS snapshot, changes::text AS changes
       FROM revisions WHERE id >= $1 AND id <= $2 ORDER BY id`,
    BigInt(from),
    BigInt(to),
  );
  if (rows.length === 0 || Number(rows[0]!.id) !== from) return undefined;
  return rows.slice(1);
}

/**
 * Revision `revision` rebuilt from its checkpoint and the change sets after
 * it, plus what the next commit needs to know about the checkpoint distance.
 * One statement, so a concurrent prune cannot leave a hole between the
 * checkpoint read and the change sets read. undefined: no such revision
 * (never made, or pruned).
 */
export async function reconstruct(prisma: PrismaClient, revision: number): Promise<{ snapshot: RevisionSnapshot; since: SinceCheckpoint } | undefined> {
  const rows = await prisma.$queryRaw<HistoryRow[]>`
    SELECT id, snapshot IS NOT NULL AS checkpoint, snapshot::text AS snapshot, changes::text AS changes FROM revisions
     WHERE id <= ${BigInt(revision)}
       AND id >= (SELECT max(id) FROM revisions WHERE id <= ${BigInt(revision)} AND snapshot IS NOT NULL)
     ORDER BY id`;
  if (rows.length === 0 || Number(rows.at(-1)!.id) !== revision) return undefined;
  let snapshot: RevisionSnapshot | undefined;
  let since = sinceCheckpointAt(0);
  for (const row of rows) ({ snapshot, since } = replay(snapshot, since, row));
  return { snapshot: snapshot!, since };
}

/**
 * One row applied. With a snapshot in hand, a row's change set is applied
 * (cheaper than parsing a checkpoint's whole config, and the same result: the
 * checkpoint was written from it); otherwise the row must be a checkpoint.
 */
export function replay(current: RevisionSnapshot | undefined, since: SinceCheckpoint, row: HistoryRow): { snapshot: RevisionSnapshot; since: SinceCheckpoint; diff?: DiffEntry[] } {
  if (current && row.changes !== null) {
    const next = applyChangeSetWithDiff(current, JSON.parse(row.changes) as ChangeSet);
    const nextSince = row.checkpoint ? sinceCheckpointAt(Number(row.id)) : { revisions: since.revisions + 1, bytes: since.bytes + Buffer.byteLength(row.changes), from: since.from };
    return { snapshot: next.snapshot, since: nextSince, diff: next.diff };
  }
  if (row.checkpoint && row.snapshot !== null) return { snapshot: parseSnapshot(JSON.parse(row.snapshot)), since: sinceCheckpointAt(Number(row.id)) };
  throw new HistoryError(`revision ${row.id} has neither a checkpoint before it nor a change set`);
}

/**
 * Whether the next revision should be a checkpoint. The first revision always
 * is (and carries it in its own row: nothing before it to rebuild it from).
 */
export function needsCheckpoint(headRevision: number, since: SinceCheckpoint, changeBytes: number, settings: RevisionHistorySettings): boolean {
  if (headRevision === 0) return true;
  return since.revisions + 1 >= settings.checkpointEveryRevisions || since.bytes + changeBytes >= settings.checkpointEveryBytes;
}

/**
 * The snapshot as JSON, equal to JSON.stringify(snapshot), built a slice of
 * objects at a time with the event loop let go between slices: at 10,000
 * routes the whole is ~3 MB, tens of ms of CPU that must not stall requests.
 */
export async function checkpointJson(snapshot: RevisionSnapshot, objectsPerSlice = 500): Promise<string> {
  const kinds: string[] = [];
  for (const [kind, objects] of Object.entries(snapshot.config) as Array<[string, ObjectSpec[]]>) {
    const parts: string[] = [];
    for (let i = 0; i < objects.length; i += objectsPerSlice) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      parts.push(JSON.stringify(objects.slice(i, i + objectsPerSlice)).slice(1, -1));
    }
    kinds.push(`${JSON.stringify(kind)}:[${parts.filter((p) => p !== '').join(',')}]`);
  }
  return `{"config":{${kinds.join(',')}},"credential_keys":${JSON.stringify(snapshot.credential_keys)}}`;
}

/**
 * Writes `json` as the checkpoint of revision `revision`, after its commit.
 * True when that row now holds a checkpoint (written now or before); false
 * when the row is gone (pruned). Only a true answer may reset the
 * since-checkpoint counters.
 */
export type CheckpointWriter = (prisma: PrismaClient, revision: number, json: string) => Promise<boolean>;

export const writeCheckpoint: CheckpointWriter = async (prisma, revision, json) => {
  const [row] = await rawRows<{ exists: boolean }>(
    prisma,
    `WITH written AS (UPDATE revisions SET snapshot = $1::json WHERE id = $2 AND snapshot IS NULL RETURNING id)
     SELECT EXISTS (SELECT 1 FROM written) OR EXISTS (SELECT 1 FROM revisions WHERE id = $2 AND snapshot IS NOT NULL) AS exists`,
    json,
    BigInt(revision),
  );
  return row?.exists === true;
};

export interface PruneResult {
  /** Revision rows deleted. */
  revisions: number;
  /** Audit rows deleted. */
  audit: number;
  /** The oldest revision still stored (rollback to anything older is gone). */
  oldestKept: number;
}

/** Rows deleted per statement: keeps each delete short, so no long lock or transaction. */
const PRUNE_BATCH = 500;

/**
 * Deletes revisions past retention and audit rows past theirs. Takes no write
 * lock: deleting old rows never touches a row a writer reads or inserts. The
 * boundary is the checkpoint the oldest retained revision needs, so every
 * retained revision stays reconstructable, and the head is never deleted. The
 * boundary is a checkpoint that exists (snapshot IS NOT NULL), never one still
 * to be written: until it is, the one before it is the boundary.
 */
export async function pruneHistory(prisma: PrismaClient, settings: RevisionHistorySettings, now: Date): Promise<PruneResult> {
  const oldestRetained = await oldestRetainedRevision(prisma, settings, now);
  let revisions = 0;
  if (oldestRetained !== undefined) {
    const [boundary] = await prisma.$queryRaw<Array<{ id: bigint | null }>>`
      SELECT max(id) AS id FROM revisions WHERE id <= ${BigInt(oldestRetained)} AND snapshot IS NOT NULL`;
    if (boundary?.id != null) revisions = await deleteRevisionsBelow(prisma, boundary.id);
  }
  let audit = 0;
  if (settings.auditRetainMs > 0) {
    const cutoff = new Date(now.getTime() - settings.auditRetainMs);
    for (;;) {
      const n = await prisma.$executeRaw`
        DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ${cutoff} ORDER BY id LIMIT ${PRUNE_BATCH})`;
      audit += n;
      if (n < PRUNE_BATCH) break;
    }
  }
  const [oldest] = await prisma.$queryRaw<Array<{ id: bigint | null }>>`SELECT min(id) AS id FROM revisions`;
  return { revisions, audit, oldestKept: Number(oldest?.id ?? 0) };
}

/** The oldest revision the settings retain (the head at least); undefined on an empty history. */
async function oldestRetainedRevision(prisma: PrismaClient, settings: RevisionHistorySettings, now: Date): Promise<number | undefined> {
  const cutoff = settings.retainMs > 0 ? new Date(now.getTime() - settings.retainMs) : new Date(0);
  const limit = settings.retainRevisions > 0 ? settings.retainRevisions : Number.MAX_SAFE_INTEGER;
  const [row] = await prisma.$queryRaw<Array<{ oldest: bigint | null; head: bigint | null }>>`
    SELECT (SELECT min(id) FROM (SELECT id, created_at FROM revisions ORDER BY id DESC LIMIT ${BigInt(limit)}) newest
             WHERE created_at >= ${cutoff}) AS oldest,
           (SELECT max(id) FROM revisions) AS head`;
  if (row?.head == null) return undefined;
  return Number(row.oldest ?? row.head);
}

async function deleteRevisionsBelow(prisma: PrismaClient, below: bigint): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await prisma.$executeRaw`
      DELETE FROM revisions WHERE id IN (SELECT id FROM revisions WHERE id < ${below} ORDER BY id LIMIT ${PRUNE_BATCH})`;
    total += n;
    if (n < PRUNE_BATCH) return total;
  }
}
