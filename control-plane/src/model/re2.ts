// RE2 compatibility check for user regexes. Envoy compiles every safe_regex with
// Google RE2 and NACKs the whole resource when one does not compile, so the model
// rejects what RE2 cannot do before it reaches the fleet. We have no RE2 here
// (pure TypeScript, no native modules), so the check is in two steps:
//
//   1. a scan for the constructs RE2 deliberately lacks (they need backtracking):
//      lookahead (?= (?!, lookbehind (?<= (?<!, backreferences \1..\9 and \k<name>,
//      atomic groups (?>, possessive quantifiers *+ ++ ?+ {n,m}+, conditionals (?(,
//      recursion (?R, comments (?#, and counted repetitions above RE2's limit (1000);
//   2. a syntax check with JavaScript's RegExp after rewriting the few RE2-only
//      spellings JS lacks ((?P<name>, inline flags (?i) (?i:...), \A \z \C \Q..\E).
//
// What this misses: regexes valid in JS but with RE2-specific semantics differences
// (none affect whether RE2 compiles them), and RE2's program-size limit (Envoy's
// runtime default re2.max_program_size.error_level = 100), which only RE2 itself can
// compute; `estimateProgramSize` is a rough guard against the usual culprit, large
// counted repetitions.

/** RE2's hard limit on {n,m} counts. */
const MAX_REPEAT = 1000;

/** Rough ceiling for estimateProgramSize; Envoy's default RE2 limit is 100 instructions. */
export const MAX_ESTIMATED_PROGRAM_SIZE = 100;

/** Why RE2 (as used by Envoy) would refuse `pattern`, or undefined when it looks fine. */
export function re2Problem(pattern: string): string | undefined {
  if (pattern.length === 0) return 'regex must not be empty';
  if (pattern.includes('\0')) return 'regex must not contain NUL';
  const unsupported = unsupportedConstruct(pattern);
  if (unsupported) return unsupported;
  const syntax = jsSyntaxProblem(pattern);
  if (syntax) return syntax;
  const size = estimateProgramSize(pattern);
  if (size > MAX_ESTIMATED_PROGRAM_SIZE) {
    return `regex is too complex for Envoy's RE2 limit (estimated program size ${size} > ${MAX_ESTIMATED_PROGRAM_SIZE}); use + or * instead of large {n,m} counts`;
  }
  return undefined;
}

const COUNTED = /^\{(\d+)(,(\d*))?\}/;

function unsupportedConstruct(p: string): string | undefined {
  let inClass = false;
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '\\') {
      const next = p[i + 1];
      if (next === undefined) return 'regex ends with a lone backslash';
      if (!inClass && next >= '1' && next <= '9') return 'backreferences (\\1 ...) are not supported by RE2';
      if (!inClass && next === 'k' && /^[<{']/.test(p[i + 2] ?? '')) return 'named backreferences are not supported by RE2';
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (p[i + 1] === '^') i++;
      if (p[i + 1] === ']') i++;
      continue;
    }
    if (c === '(' && p[i + 1] === '?') {
      const problem = groupProblem(p.slice(i + 2));
      if (problem) return problem;
      continue;
    }
    if (c === '{') {
      const m = COUNTED.exec(p.slice(i));
      if (!m) continue; // a literal brace
      const low = Number(m[1]);
      const high = m[3] === undefined || m[3] === '' ? low : Number(m[3]);
      if (low > MAX_REPEAT || high > MAX_REPEAT) return `counted repetition ${m[0]} exceeds RE2's limit of ${MAX_REPEAT}`;
      i += m[0].length - 1;
      if (p[i + 1] === '+') return 'possessive quantifiers are not supported by RE2';
      continue;
    }
    if ((c === '*' || c === '+' || c === '?') && p[i + 1] === '+' && !isQuantifiedAlready(p, i)) {
      return 'possessive quantifiers are not supported by RE2';
    }
  }
  return undefined;
}

/** True when p[i] is itself the "lazy" marker of a previous quantifier, e.g. the ? in `a*?`. */
function isQuantifiedAlready(p: string, i: number): boolean {
  return p[i] === '?' && i > 0 && /[*+?}]/.test(p[i - 1] ?? '') && p[i - 2] !== '\\';
}

function groupProblem(afterQuestion: string): string | undefined {
  if (afterQuestion.startsWith('=') || afterQuestion.startsWith('!')) return 'lookahead (?= (?! is not supported by RE2';
  if (afterQuestion.startsWith('<=') || afterQuestion.startsWith('<!')) return 'lookbehind (?<= (?<! is not supported by RE2';
  if (afterQuestion.startsWith('>')) return 'atomic groups (?> are not supported by RE2';
  if (afterQuestion.startsWith('(')) return 'conditionals (?( are not supported by RE2';
  if (afterQuestion.startsWith('#')) return 'comments (?# are not supported by RE2';
  if (/^(R|\d|[+-]\d|&)/.test(afterQuestion)) return 'recursion is not supported by RE2';
  if (afterQuestion.startsWith('|')) return 'branch reset groups are not supported by RE2';
  return undefined;
}

/** Rewrites RE2-only spellings into JS equivalents, then lets RegExp judge the syntax. */
function jsSyntaxProblem(p: string): string | undefined {
  const js = p
    .replace(/\\Q([\s\S]*?)(\\E|$)/g, (_m, text: string) => text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&'))
    .replace(/\(\?P</g, '(?<')
    .replace(/\(\?[imsU-]+\)/g, '')
    .replace(/\(\?[imsU-]+:/g, '(?:')
    .replace(/\\[Az]/g, (m) => (m === '\\A' ? '^' : '$'))
    .replace(/\\C/g, '.');
  try {
    new RegExp(js);
    return undefined;
  } catch (error) {
    return `invalid regex: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/** Number of capture groups in a (syntax-checked) regex; used to check rewrite substitutions. */
export function captureGroupCount(pattern: string): number {
  const js = pattern.replace(/\(\?P</g, '(?<').replace(/\(\?[imsU-]+\)/g, '').replace(/\(\?[imsU-]+:/g, '(?:');
  try {
    const match = new RegExp(`${js}|`).exec('');
    return match ? match.length - 1 : 0;
  } catch {
    return 0;
  }
}

/**
 * An estimate of RE2's program size (instruction count), calibrated against Envoy
 * 1.38's error messages: ~4 fixed, 1 per literal or ASCII range, ~7 for `.`, ~8 for a
 * negated class, 1 per quantifier or alternative, 2 per capture group, and counted
 * repetitions multiplying what they repeat. Good to within ~20% on typical route
 * regexes; it exists to catch `[a-z0-9]{1,64}`-style patterns Envoy would reject.
 */
export function estimateProgramSize(p: string): number {
  // One frame per open group: running total, and the cost of the last atom (for quantifiers).
  const stack: Array<{ total: number; last: number; capture: boolean }> = [{ total: 4, last: 0, capture: false }];
  const top = () => stack[stack.length - 1]!;
  const addAtom = (size: number) => {
    top().total += size;
    top().last = size;
  };
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '\\') {
      addAtom(escapeCost(p[i + 1] ?? ''));
      i++;
    } else if (c === '[') {
      const end = classEnd(p, i);
      addAtom(classCost(p.slice(i + 1, end)));
      i = end;
    } else if (c === '(') {
      const end = p[i + 1] === '?' ? skipGroupPrefix(p, i) : i;
      if (p[end] === ')' && end > i) {
        i = end; // an inline flag group like (?i) holds nothing
        continue;
      }
      stack.push({ total: 0, last: 0, capture: p[i + 1] !== '?' || p[i + 2] === 'P' || p[i + 2] === '<' });
      i = end;
    } else if (c === ')') {
      const group = stack.length > 1 ? stack.pop()! : { total: 0, last: 0, capture: false };
      addAtom(group.total + (group.capture ? 2 : 0));
    } else if (c === '|') {
      top().total += 1;
      top().last = 0;
    } else if (c === '*' || c === '+' || c === '?') {
      top().total += 1;
    } else if (c === '{' && COUNTED.test(p.slice(i))) {
      const m = COUNTED.exec(p.slice(i))!;
      top().total += repetitionCost(top().last, Number(m[1]), m[2] === undefined ? Number(m[1]) : m[3] === '' ? undefined : Number(m[3]));
      i += m[0].length - 1;
    } else if (c === '^' || c === '$') {
      if (i === 0) top().total -= 2; // an anchored program drops the unanchored-search loop
    } else if (c === '.') {
      addAtom(7);
    } else {
      addAtom(1);
    }
  }
  return stack.reduce((sum, frame) => sum + frame.total, 0);
}

/** Extra cost of `atom{low,high}` beyond the one copy already counted (high undefined: unbounded). */
function repetitionCost(atom: number, low: number, high: number | undefined): number {
  const optional = high === undefined ? 1 : Math.max(0, high - low);
  return atom * low + (atom + 1) * optional - atom;
}

function escapeCost(next: string): number {
  if (next === 'p' || next === 'P') return 200; // Unicode classes expand to hundreds of ranges
  if (next === 'd') return 1;
  if (next === 'w' || next === 's') return 3;
  if (next === 'D' || next === 'W' || next === 'S') return 8;
  return 1;
}

function classCost(body: string): number {
  if (body.startsWith('^')) return 8;
  const ranges = body.replace(/\\./g, 'x').replace(/.-./g, 'r').length;
  return Math.max(1, ranges);
}

function classEnd(p: string, start: number): number {
  let i = start + 1;
  if (p[i] === '^') i++;
  if (p[i] === ']') i++;
  for (; i < p.length; i++) {
    if (p[i] === '\\') i++;
    else if (p[i] === ']') return i;
  }
  return p.length - 1;
}

/** Index of the last character of a group prefix such as `(?:`, `(?i:`, `(?P<name>`. */
function skipGroupPrefix(p: string, open: number): number {
  const m = /^\(\?(P?<[A-Za-z_][A-Za-z0-9_]*>|[imsU-]*:|[imsU-]*\))/.exec(p.slice(open));
  return m ? open + m[0].length - 1 : open;
}
