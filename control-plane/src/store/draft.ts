// The config a commit's plan edits, and what the plan changed.
//
// Two ways in. Object operations (create, replace, delete: the admin API's
// one-object writes) record the objects they write on top of the head's
// config, which is sorted by name and frozen, so the change they make (the
// next config and its diff) is worked out from those objects alone: O(change)
// apart from copying the one list the change touches. replaceAll (declarative
// apply, rollback) hands over a whole config, which the commit compares with
// the head in full (normalise, diffConfigs). Both give the same next config
// and diff for the same plan (test/unit/store-draft.test.ts holds them equal).
import {
  KINDS, DeclarativeConfigSchema, issuesFromZod,
  type DeclarativeConfig, type Kind,
} from '../model/index.ts';
import { deepFreeze } from './frozen.ts';
import type { CredentialKey } from './revision-history.ts';
import { StoreError } from './store-error.ts';

export type ObjectSpec = DeclarativeConfig[Kind][number];

export interface DiffEntry {
  op: 'create' | 'update' | 'delete';
  kind: Kind;
  name: string;
  before?: ObjectSpec;
  after?: ObjectSpec;
}

/** A commit's result before it is written: the next config (sorted by name, objects frozen) and the object-level diff. */
export interface PlannedChange {
  next: DeclarativeConfig;
  diff: DiffEntry[];
}

/** What object operations did to one kind's list. */
interface KindEdits {
  /** name -> the object now, or null when deleted. */
  readonly written: Map<string, ObjectSpec | null>;
  /** Names created by the plan, in order (a deleted and recreated object counts as created). */
  readonly appended: string[];
}

/** Lists known to be sorted by name with unique names (frozen, so they stay so). */
const sortedLists = new WeakSet<readonly object[]>();

export function isSortedUnique(list: readonly { name: string }[]): boolean {
  if (sortedLists.has(list)) return true;
  for (let i = 1; i < list.length; i++) if (!(list[i - 1]!.name < list[i]!.name)) return false;
  if (Object.isFrozen(list)) sortedLists.add(list);
  return true;
}

/** First position in a list sorted by name whose name is not below `name`. */
export function lowerBound(list: readonly { name: string }[], name: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.name < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
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

  /**
   * Objects the plan vouches were parsed by the model's schema already (a
   * declarative apply parses its body before it commits): the commit does not
   * parse them a second time.
   */
  readonly parsed = new WeakSet<object>();

  /** After replaceAll: the whole config (the caller's order, then edited in place). */
  private whole?: DeclarativeConfig;
  /** Otherwise: what object operations did, by kind, on top of `base`. */
  private readonly edits = new Map<Kind, KindEdits>();
  /** See validatedWhole. */
  private wholeValidated = false;

  constructor(
    /** The head's config: frozen, never edited. */
    private readonly base: DeclarativeConfig,
    readonly keys: Record<string, CredentialKey>,
  ) {}

  /**
   * The config as the plan left it. After replaceAll, that config's own lists
   * (the caller's order); otherwise built on each call: the head's order with
   * replaced objects in place, deleted ones gone and created ones at the end.
   */
  get config(): DeclarativeConfig {
    if (this.whole) return this.whole;
    const out = { ...this.base };
    for (const [kind, edits] of this.edits) (out[kind] as ObjectSpec[]) = this.editedList(kind, edits);
    return out;
  }

  /** Whether the config is one the model's full check passed, unedited since (see replaceAll's `validated`). */
  get validatedWhole(): boolean {
    return this.wholeValidated;
  }

  get(kind: Kind, name: string): ObjectSpec | undefined {
    if (this.whole) return (this.whole[kind] as ObjectSpec[]).find((o) => o.name === name);
    const written = this.edits.get(kind)?.written;
    if (written?.has(name)) return written.get(name) ?? undefined;
    return this.baseObject(kind, name);
  }

  create(kind: Kind, spec: ObjectSpec, key?: CredentialKey): void {
    this.wholeValidated = false;
    if (this.get(kind, spec.name)) throw new StoreError('conflict', `${kind} '${spec.name}' already exists`, [{ path: ['name'], message: 'already exists' }]);
    if (this.whole) (this.whole[kind] as ObjectSpec[]).push(spec);
    else {
      const edits = this.editsOf(kind);
      edits.written.set(spec.name, spec);
      edits.appended.push(spec.name);
    }
    if (key) this.keys[spec.name] = key;
  }

  replace(kind: Kind, name: string, spec: ObjectSpec, ifVersion?: number): void {
    this.wholeValidated = false;
    if (!this.get(kind, name)) throw new StoreError('not_found', `${kind} '${name}' not found`);
    this.checkVersion(kind, name, ifVersion);
    if (spec.name !== name) throw new StoreError('invalid', 'name cannot be changed', [{ path: ['name'], message: `must be '${name}'` }]);
    if (this.whole) {
      const list = this.whole[kind] as ObjectSpec[];
      list[list.findIndex((o) => o.name === name)] = spec;
    } else this.editsOf(kind).written.set(name, spec);
  }

  delete(kind: Kind, name: string, ifVersion?: number): void {
    this.wholeValidated = false;
    if (!this.get(kind, name)) throw new StoreError('not_found', `${kind} '${name}' not found`);
    this.checkVersion(kind, name, ifVersion);
    if (this.whole) {
      const list = this.whole[kind] as ObjectSpec[];
      list.splice(list.findIndex((o) => o.name === name), 1);
    } else {
      const edits = this.editsOf(kind);
      edits.written.set(name, null);
      const created = edits.appended.indexOf(name);
      if (created >= 0) edits.appended.splice(created, 1);
    }
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
   * Replaces the whole config (declarative apply, rollback); keys of kept
   * credentials stay. `parsed`: the config is the output of the model's schema.
   * `validated`: besides, the model's cross-object check of the whole config
   * (validateState, e.g. by parseDeclarativeConfig) found no issue in it.
   */
  replaceAll(config: DeclarativeConfig, keys?: Record<string, CredentialKey>, opts: { parsed?: boolean; validated?: boolean } = {}): void {
    this.wholeValidated = opts.parsed === true && opts.validated === true;
    this.edits.clear();
    const whole = { ...this.base };
    for (const kind of KINDS) (whole[kind] as ObjectSpec[]) = [...(config[kind] as ObjectSpec[])];
    this.whole = whole;
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

  /** Whether the plan changed `kind`'s list (by object identity: objects it did not touch are the head's). */
  changedKind(kind: Kind): boolean {
    const before = this.base[kind] as readonly object[];
    if (this.whole) {
      const after = this.whole[kind] as readonly object[];
      return before.length !== after.length || after.some((object, i) => object !== before[i]);
    }
    const edits = this.edits.get(kind);
    if (!edits) return false;
    for (const [name, object] of edits.written) if (object !== (this.baseObject(kind, name) ?? null)) return true;
    return false;
  }

  /**
   * The next config and the diff, worked out from the objects the plan wrote
   * (new objects parsed by the schema, frozen; lists sorted by name; an object
   * equal in content to the head's is the head's). Undefined after replaceAll,
   * or when the head's lists are not sorted by unique names: the commit then
   * compares whole configs (normalise, diffConfigs), which gives the same.
   */
  plannedChange(): PlannedChange | undefined {
    if (this.whole || !KINDS.every((kind) => isSortedUnique(this.base[kind]))) return undefined;
    const kinds = KINDS.filter((kind) => this.edits.has(kind));
    // The objects to parse, per kind, in the order the whole-config path meets them (so issue paths agree).
    const candidates = new Map<Kind, ObjectSpec[]>();
    const fresh: Record<string, ObjectSpec[]> = {};
    for (const kind of KINDS) fresh[kind] = [];
    for (const kind of kinds) {
      const list = this.writtenInOrder(kind, this.edits.get(kind)!);
      candidates.set(kind, list);
      fresh[kind] = list.filter((o) => !this.isHeads(kind, o) && !this.parsed.has(o));
    }
    const parsed = DeclarativeConfigSchema.safeParse(fresh);
    if (!parsed.success) throw new StoreError('invalid', 'invalid config', issuesFromZod(parsed.error));
    const next = { ...this.base };
    const diff: DiffEntry[] = [];
    for (const kind of kinds) {
      const replacements = (parsed.data[kind] as ObjectSpec[])[Symbol.iterator]();
      const final = new Map<string, ObjectSpec>();
      for (const o of candidates.get(kind)!) {
        const object = this.isHeads(kind, o) ? o : deepFreeze(this.parsed.has(o) ? o : replacements.next().value!);
        // A schema that renamed an object would move it: leave that to the whole-config path.
        if (final.has(object.name)) return undefined;
        final.set(object.name, object);
      }
      const edits = this.edits.get(kind)!;
      for (const name of final.keys()) if (!edits.written.get(name)) return undefined;
      const change = this.applyToList(kind, [...edits.written.keys()].sort(), final);
      (next[kind] as ObjectSpec[]) = change.list;
      diff.push(...change.diff);
    }
    return { next, diff };
  }

  // ---- internals ---------------------------------------------------------------

  private editsOf(kind: Kind): KindEdits {
    let edits = this.edits.get(kind);
    if (!edits) this.edits.set(kind, (edits = { written: new Map(), appended: [] }));
    return edits;
  }

  private baseObject(kind: Kind, name: string): ObjectSpec | undefined {
    const list = this.base[kind] as ObjectSpec[];
    if (!isSortedUnique(list)) return list.find((o) => o.name === name);
    const at = lowerBound(list, name);
    return list[at]?.name === name ? list[at] : undefined;
  }

  /** Whether `object` is the head's own object of that name (carried over, not parsed again). */
  private isHeads(kind: Kind, object: ObjectSpec): boolean {
    return this.baseObject(kind, object.name) === object;
  }

  /** The objects the plan left in `kind` that it wrote: those replaced in place (head order), then those created (in order). */
  private writtenInOrder(kind: Kind, edits: KindEdits): ObjectSpec[] {
    const created = new Set(edits.appended);
    const inPlace = [...edits.written.keys()].filter((name) => !created.has(name) && edits.written.get(name)).sort();
    return [...inPlace, ...edits.appended].map((name) => edits.written.get(name)!);
  }

  /** The head's list with `edits` applied as the old Draft applied them (replace in place, delete, append). */
  private editedList(kind: Kind, edits: KindEdits): ObjectSpec[] {
    const created = new Set(edits.appended);
    const out: ObjectSpec[] = [];
    for (const object of this.base[kind] as ObjectSpec[]) {
      if (!edits.written.has(object.name)) out.push(object);
      else if (!created.has(object.name)) {
        const now = edits.written.get(object.name);
        if (now) out.push(now);
      }
    }
    for (const name of edits.appended) out.push(edits.written.get(name)!);
    return out;
  }

  /**
   * The head's (sorted) list of `kind` with the written `names` (sorted) set to
   * their final objects or removed, and the diff entries, in name order. An
   * object equal in content to the head's is replaced by the head's and is no
   * change. The list is frozen (its objects are).
   */
  private applyToList(kind: Kind, names: string[], final: Map<string, ObjectSpec>): { list: ObjectSpec[]; diff: DiffEntry[] } {
    // Spread, not slice(): V8 copies a frozen array element by element in slice() (~100x slower at 10,000).
    const list = [...(this.base[kind] as ObjectSpec[])];
    const diff: DiffEntry[] = [];
    // Each name once: what sits at its place in the copy is still the head's object.
    for (const name of names) editNamed(kind, list, name, final.get(name), diff);
    sortedLists.add(Object.freeze(list));
    return { list, diff };
  }

  private checkVersion(kind: Kind, name: string, ifVersion: number | undefined): void {
    if (ifVersion !== undefined) this.expectedVersions.push({ kind, name, version: ifVersion });
  }
}

// ---- the whole-config path ------------------------------------------------------

/** The change a plan made, by comparing the whole config it left with the head's `current` (after replaceAll). */
export function wholeChange(draft: Draft, current: DeclarativeConfig): PlannedChange {
  const next = normalise(draft.config, current, draft.parsed);
  return { next, diff: diffConfigs(current, next) };
}

function shallowCopy(config: DeclarativeConfig): DeclarativeConfig {
  const out = { ...config };
  for (const kind of KINDS) (out[kind] as ObjectSpec[]) = [...(config[kind] as ObjectSpec[])];
  return out;
}

/**
 * Parses every object the change brought in through the schema (filling in
 * defaults, so stored specs are canonical) and sorts by name. Objects carried
 * over from the current config are already canonical (and frozen) and are not
 * parsed again.
 */
function normalise(config: DeclarativeConfig, current: DeclarativeConfig, parsedAlready: WeakSet<object>): DeclarativeConfig {
  const carried: Partial<Record<Kind, boolean[]>> = {};
  const fresh: Record<string, ObjectSpec[]> = {};
  for (const kind of KINDS) {
    const isCarried = carriedOver(current[kind] as ObjectSpec[], config[kind] as ObjectSpec[]);
    carried[kind] = isCarried;
    fresh[kind] = (config[kind] as ObjectSpec[]).filter((o, i) => !isCarried[i] && !parsedAlready.has(o));
  }
  const parsed = DeclarativeConfigSchema.safeParse(fresh);
  if (!parsed.success) throw new StoreError('invalid', 'invalid config', issuesFromZod(parsed.error));
  const out = shallowCopy(config);
  for (const kind of KINDS) {
    const replacements = (parsed.data[kind] as ObjectSpec[])[Symbol.iterator]();
    const isCarried = carried[kind]!;
    (out[kind] as ObjectSpec[]) = (config[kind] as ObjectSpec[])
      .map((o, i) => (isCarried[i] ? o : deepFreeze(parsedAlready.has(o) ? o : replacements.next().value!)))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  return out;
}

/**
 * Which objects of a draft's list are the current list's own, without a set of
 * the whole list per write: a plan edits a copy of the list in place (replace),
 * splices (delete) and appends (create), so the draft matches the current list
 * position by position up to the first edit, and carried objects after it are
 * among the current ones from there on (a set of that rest only, built at the
 * first mismatch: none for a create, which only appends).
 */
function carriedOver(current: readonly object[], draft: readonly object[]): boolean[] {
  let rest: Set<object> | undefined;
  return draft.map((o, i) => {
    if (current[i] === o) return true;
    rest ??= new Set(current.slice(i));
    return rest.has(o);
  });
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

/**
 * Sets `name` in `list` (sorted by name, edited in place) to `after`, or removes
 * it when undefined, and appends the diff entry. An object equal in content to
 * the one it replaces is that one (no change). Object writes (Draft) and
 * change-set replay (revision-history.ts) edit lists this way.
 */
export function editNamed(kind: Kind, list: ObjectSpec[], name: string, after: ObjectSpec | undefined, diff: DiffEntry[]): void {
  const at = lowerBound(list, name);
  const before = list[at]?.name === name ? list[at] : undefined;
  if (before && after && before !== after && canonical(before) === canonical(after)) after = before;
  if (after && before) list[at] = after;
  else if (after) list.splice(at, 0, after);
  else if (before) list.splice(at, 1);
  if (!before && after) diff.push({ op: 'create', kind, name, after });
  else if (before && !after) diff.push({ op: 'delete', kind, name, before });
  else if (before && after && before !== after) diff.push({ op: 'update', kind, name, before, after });
}

/** A value's JSON with object keys sorted: equal strings, equal content. */
export function canonical(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

export function sortKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortKeys) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const item = (value as Record<string, unknown>)[key];
    if (item !== undefined) out[key] = sortKeys(item);
  }
  return out as T;
}
