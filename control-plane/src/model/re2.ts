// Whether Envoy's RE2 will take a user regex. Envoy compiles every safe_regex with
// Google's C++ RE2 and NACKs the whole resource when one does not compile or when
// its program is larger than runtime `re2.max_program_size.error_level`. So the
// model decides both questions before a regex can reach the fleet:
//
//  - syntax: re2js (a faithful port of RE2's parser) compiles the pattern. Where
//    re2js and C++ RE2 might disagree we refuse (conservative):
//      * `\p{...}` / `\P{...}` Unicode classes: the two carry different Unicode
//        table versions (a script name one knows may be unknown to the other) and
//        in C++ a single class compiles to hundreds or thousands of instructions
//        (`\pL` is 1,200 in Envoy 1.38). Use explicit ranges instead.
//      * `\C` (any byte): C++ accepts it, re2js refuses it; we keep the refusal.
//      * NUL and lone surrogates: not valid UTF-8 text for C++ RE2 (and for the
//        protobuf string that carries the pattern).
//    Checked against Envoy 1.38.3 to agree (test/e2e/model-gate-envoy.test.ts):
//    flags (?i) (?m) (?s) (?U), \Q..\E, \x{..}, octal \0 \123, [[:alpha:]], named
//    groups (?P<n>..) and (?<n>..), and the escapes RE2 refuses (\y \cA \Z \e \k
//    \G \R \h \N \u0041, escaped non-ASCII letters, [\b], [\1], [a-\d]).
//  - size: C++ RE2 works on UTF-8 bytes, re2js on runes, so re2js's programSize()
//    undercounts (`/` + `日本語`x14: 45 in re2js, 131 in C++). estimateProgramSize()
//    walks re2js's compiled program and charges each instruction an upper bound of
//    what C++ RE2 emits for it (a rune class costs its UTF-8 byte sequences).
//    Envoy's limit is raised in the bootstrap Sluice writes (envoy/bootstrap.ts)
//    to ENVOY_RE2_PROGRAM_SIZE_LIMIT, and the model admits estimates up to
//    MAX_ESTIMATED_PROGRAM_SIZE, a margin below it.
import { RE2JS } from 're2js';

/** Envoy's runtime re2.max_program_size.error_level as Sluice's bootstrap sets it. */
export const ENVOY_RE2_PROGRAM_SIZE_LIMIT = 1000;

/** The largest estimate the model admits: a 20% margin under Envoy's limit. */
export const MAX_ESTIMATED_PROGRAM_SIZE = 800;

/** Escapes RE2 metacharacters so a literal can sit inside a regex. */
export function re2Literal(text: string): string {
  return text.replace(/[\\^$.|?*+()[\]{}-]/g, '\\$&');
}

/** Why Envoy's RE2 would refuse `pattern`, or undefined when it will compile it. */
export function re2Problem(pattern: string): string | undefined {
  const verdict = verdictOf(pattern);
  if (verdict.syntaxProblem !== undefined) return verdict.syntaxProblem;
  if (verdict.size > MAX_ESTIMATED_PROGRAM_SIZE) {
    return `regex is too complex for Envoy's RE2 (estimated program size ${verdict.size} > ${MAX_ESTIMATED_PROGRAM_SIZE}); shorten it or use + and * instead of large {n,m} counts`;
  }
  return undefined;
}

/** Number of capture groups as RE2 counts them (0 for a pattern RE2 refuses). */
export function captureGroupCount(pattern: string): number {
  return verdictOf(pattern).groups;
}

/**
 * An upper bound of C++ RE2's program size for `pattern` (what Envoy compares with
 * its limit); Infinity when RE2 would refuse the pattern.
 */
export function estimateProgramSize(pattern: string): number {
  return verdictOf(pattern).size;
}

interface Verdict {
  syntaxProblem?: string;
  /** Upper bound of the C++ program size (Infinity when the syntax is refused). */
  size: number;
  groups: number;
}

/**
 * Verdicts by pattern. Compiling is the expensive part (~0.1 ms with re2js) and the
 * same patterns come back on every validation of a config, so recent verdicts are
 * kept; the cache is bounded and cleared when full.
 */
const verdicts = new Map<string, Verdict>();
const MAX_CACHED_VERDICTS = 10_000;

function verdictOf(pattern: string): Verdict {
  let verdict = verdicts.get(pattern);
  if (!verdict) {
    const judged = judgeSyntax(pattern);
    verdict = judged.ok
      ? { size: programSizeBound(judged.compiled), groups: judged.compiled.groupCount() }
      : { syntaxProblem: judged.problem, size: Infinity, groups: 0 };
    if (verdicts.size >= MAX_CACHED_VERDICTS) verdicts.clear();
    verdicts.set(pattern, verdict);
  }
  return verdict;
}

type Judged = { ok: true; compiled: RE2JS } | { ok: false; problem: string };

const LONE_SURROGATE = /\p{Cs}/u;

/** The syntax verdict: re2js compiles it, and none of the refusals in the header apply. */
function judgeSyntax(pattern: string): Judged {
  if (pattern.length === 0) return { ok: false, problem: 'regex must not be empty' };
  if (pattern.includes('\0')) return { ok: false, problem: 'regex must not contain NUL' };
  if (LONE_SURROGATE.test(pattern)) return { ok: false, problem: 'regex must be valid Unicode (it contains a lone surrogate)' };
  const unsupported = unsupportedEscape(pattern);
  if (unsupported) return { ok: false, problem: unsupported };
  try {
    return { ok: true, compiled: RE2JS.compile(pattern) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, problem: `invalid regex: ${message.replace(/^error parsing regexp: /, '')}` };
  }
}

/** Escapes re2js accepts but Sluice refuses (see the header). \Q..\E text is literal. */
function unsupportedEscape(pattern: string): string | undefined {
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] !== '\\') continue;
    const next = pattern[i + 1];
    if (next === 'Q') {
      const end = pattern.indexOf('\\E', i + 2);
      if (end < 0) return undefined;
      i = end + 1;
      continue;
    }
    if (next === 'p' || next === 'P') return 'Unicode classes (\\p{...}, \\P{...}) are not supported: use explicit ranges such as [a-z]';
    i++;
  }
  return undefined;
}

// ---- program size ----------------------------------------------------------------
//
// C++ RE2 compiles each rune instruction into UTF-8 byte-range chains and then
// "flattens" the program: every instruction that follows a consuming, capture or
// empty-width instruction starts a list holding the instructions reachable from it
// through alternations (the entries of a rune class counted once per list that
// reaches them), and the program size is the total length of those lists. The
// bound below does that same walk over re2js's (rune-level) program, charging a
// rune instruction its number of UTF-8 sequences in each list that reaches it and
// the rest of each sequence's bytes once.

/** The shape of re2js's compiled program that the estimate reads (re2js's RE2#prog). */
interface Re2jsInst {
  op: number;
  /** Next instruction (for alternations: the first branch). */
  out: number;
  /** Alternations: the second branch; rune instructions: flags (1 = fold case). */
  arg: number;
  runes: ArrayLike<number>;
}

interface Re2jsProg {
  inst: Re2jsInst[];
  start: number;
}

/** re2js Inst opcodes (those of Go's regexp/syntax, which re2js ports). */
const OP = { ALT: 1, ALT_MATCH: 2, CAPTURE: 3, EMPTY_WIDTH: 4, NOP: 7, RUNE: 8, RUNE1: 9, RUNE_ANY: 10, RUNE_ANY_NOT_NL: 11 } as const;
const FOLD_CASE = 1;

/** Inline flags, `(?i)` or `(?s:...)` (a rough test: false positives only cost margin). */
const FLAGS = /\(\?[a-zA-Z-]+[:)]/;

/** C++ RE2's fixed overhead: the fail instruction and the unanchored-search prefix loop. */
const BASE_COST = 3;

function programOf(compiled: RE2JS): Re2jsProg {
  const prog: unknown = (compiled.re2() as { prog?: unknown }).prog;
  if (!isProgram(prog)) throw new Error('re2js internals changed: RE2#prog is not an instruction list');
  return prog;
}

function isProgram(value: unknown): value is Re2jsProg {
  if (typeof value !== 'object' || value === null) return false;
  const { inst, start } = value as { inst?: unknown; start?: unknown };
  return (
    typeof start === 'number' &&
    Array.isArray(inst) &&
    inst.every((i) => typeof i?.op === 'number' && typeof i?.out === 'number' && typeof i?.arg === 'number' && i?.runes?.length !== undefined)
  );
}

function programSizeBound(compiled: RE2JS): number {
  const prog = programOf(compiled);
  const foldsNonAscii = /\(\?[a-zA-Z-]*i/.test(compiled.pattern());
  const shapes = prog.inst.map((inst) => runeShape(inst, foldsNonAscii));
  const roots = new Set<number>([prog.start]);
  for (const inst of prog.inst) if (isConsuming(inst.op) || inst.op === OP.CAPTURE || inst.op === OP.EMPTY_WIDTH) roots.add(inst.out);
  let total = BASE_COST;
  for (const root of roots) total += listLength(prog, root, roots, shapes);
  for (const shape of shapes) total += shape?.tailBytes ?? 0;
  // C++ lays out some alternations and loops with one more entry than this walk
  // counts (measured: a loop inside an alternation); one per alternation covers it.
  // And re2js (like Go) squashes a repeat of a repeat, (?s:x*)* -> x*, even when
  // the flags differ, where C++ squashes only under equal flags and compiles both
  // (measured: 2 more instructions); with flags in the pattern, allow 3 more each.
  const perAlternation = FLAGS.test(compiled.pattern()) ? 4 : 1;
  for (const inst of prog.inst) if (inst.op === OP.ALT || inst.op === OP.ALT_MATCH) total += perAlternation;
  return total;
}

function isConsuming(op: number): boolean {
  return op === OP.RUNE || op === OP.RUNE1 || op === OP.RUNE_ANY || op === OP.RUNE_ANY_NOT_NL;
}

/** Length of the flattened list that starts at `root`. */
function listLength(prog: Re2jsProg, root: number, roots: ReadonlySet<number>, shapes: ReadonlyArray<RuneShape | undefined>): number {
  let length = 0;
  const seen = new Set<number>();
  const stack = [root];
  while (stack.length > 0) {
    const pc = stack.pop()!;
    if (seen.has(pc)) continue;
    seen.add(pc);
    const inst = prog.inst[pc];
    if (!inst) continue;
    if (pc !== root && roots.has(pc)) {
      length += 1; // a jump to another list
    } else if (inst.op === OP.ALT || inst.op === OP.ALT_MATCH) {
      stack.push(inst.arg, inst.out);
    } else if (inst.op === OP.NOP) {
      stack.push(inst.out);
    } else {
      length += shapes[pc]?.heads ?? 1;
    }
  }
  return length;
}

/** A rune instruction in UTF-8: how many byte sequences start it, and their other bytes. */
interface RuneShape {
  heads: number;
  tailBytes: number;
}

const MAX_RUNE = 0x10ffff;

/**
 * Case folding tables differ between re2js and C++ RE2 (e.g. C++ folds ß with ẞ,
 * re2js does not), so a folded non-ASCII rune or class is charged extra room for
 * a few orbit members re2js may not know (up to 4 sequences of 4 bytes).
 */
const FOLD_SLACK: RuneShape = { heads: 4, tailBytes: 12 };

function runeShape(inst: Re2jsInst, foldsNonAscii: boolean): RuneShape | undefined {
  switch (inst.op) {
    case OP.RUNE1:
      return sequencesShape([inst.runes[0] ?? 0, inst.runes[0] ?? 0]);
    case OP.RUNE: {
      const folded = inst.runes.length === 1 && (inst.arg & FOLD_CASE) !== 0;
      const ranges = folded ? caseOrbit(inst.runes[0] ?? 0) : Array.from(inst.runes);
      const shape = sequencesShape(ranges);
      const nonAscii = ranges.some((rune) => rune >= 0x80);
      return (folded || foldsNonAscii) && nonAscii ? { heads: shape.heads + FOLD_SLACK.heads, tailBytes: shape.tailBytes + FOLD_SLACK.tailBytes } : shape;
    }
    case OP.RUNE_ANY:
      return sequencesShape([0, MAX_RUNE]);
    case OP.RUNE_ANY_NOT_NL:
      return sequencesShape([0, 9, 11, MAX_RUNE]);
    default:
      return undefined;
  }
}

function sequencesShape(ranges: readonly number[]): RuneShape {
  const shape: RuneShape = { heads: 0, tailBytes: 0 };
  for (let i = 0; i + 1 < ranges.length; i += 2) {
    for (const length of utf8Sequences(ranges[i]!, ranges[i + 1]!)) {
      shape.heads += 1;
      shape.tailBytes += length - 1;
    }
  }
  return shape;
}

function utf8Length(rune: number): number {
  return rune < 0x80 ? 1 : rune < 0x800 ? 2 : rune < 0x10000 ? 3 : 4;
}

const orbitCache = new Map<number, number[]>();

/** The ranges `(?i)` makes of one rune, as re2js's own case folding expands them. */
function caseOrbit(rune: number): number[] {
  let ranges = orbitCache.get(rune);
  if (!ranges) {
    const expanded = programOf(RE2JS.compile(`(?i)[\\x{${rune.toString(16)}}]`)).inst.find((i) => i.op === OP.RUNE && i.runes.length > 1);
    ranges = expanded ? Array.from(expanded.runes) : [rune, rune];
    orbitCache.set(rune, ranges);
  }
  return ranges;
}

/** Upper limits of 1-, 2-, 3- and 4-byte UTF-8 runes. */
const UTF8_MAX = [0x7f, 0x7ff, 0xffff, MAX_RUNE] as const;

/**
 * The lengths of the byte-range sequences that cover the runes lo..hi in UTF-8:
 * split at encoding-length boundaries, then wherever a range does not cover whole
 * continuation-byte blocks (the standard UTF-8 range split).
 */
function utf8Sequences(lo: number, hi: number): number[] {
  const out: number[] = [];
  const pending: Array<[number, number]> = [[lo, hi]];
  while (pending.length > 0) {
    const [start, end] = pending.pop()!;
    const length = utf8Length(start);
    const lengthMax = UTF8_MAX[length - 1]!;
    if (end > lengthMax) {
      pending.push([lengthMax + 1, end], [start, lengthMax]);
      continue;
    }
    const split = blockSplit(start, end, length);
    if (split === undefined) out.push(length);
    else pending.push(...split);
  }
  return out;
}

/**
 * For a same-length range, where it must split so that every piece is a product
 * of byte ranges (each trailing byte spanning 80..BF fully or a single prefix).
 */
function blockSplit(start: number, end: number, length: number): Array<[number, number]> | undefined {
  for (let trailing = 1; trailing < length; trailing++) {
    const block = 1 << (6 * trailing);
    const mask = block - 1;
    if ((start & ~mask) !== (end & ~mask)) {
      if ((start & mask) !== 0) return [[(start | mask) + 1, end], [start, start | mask]];
      if ((end & mask) !== mask) return [[end & ~mask, end], [start, (end & ~mask) - 1]];
    }
  }
  return undefined;
}
