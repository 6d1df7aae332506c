// Compares the model's RE2 judgement (model/re2.ts) with the pinned Envoy's.
// For every pattern: does Envoy's C++ RE2 compile it, and with what program size,
// against the model's verdict and its program-size upper bound. Envoy is asked in
// `--mode validate` runs over a bootstrap with one static route per pattern,
// with runtime re2.max_program_size.warn_level 1 so it logs every regex's size.
//
//   node --import tsx bench/re2-calibrate.ts [count] [seed]
//
// Prints disagreements (syntax) and every pattern whose real size exceeds the
// estimate; exits 1 when there is any.
//
// Last run (Envoy 1.38.3, re2js 2.10.0): seeds 101 202 303 404 505 606 with 4,000
// generated patterns each plus the 316-pattern syntax corpus (25,896 in all), no
// pattern the model admits refused by Envoy, no real size above the estimate;
// real/estimate p10 0.27, p50 0.40, p90 0.61. The model refuses, where Envoy
// accepts, only \C, \p classes, non-ASCII and duplicate group names (on purpose).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { estimateProgramSize, re2Problem } from '../control-plane/src/model/re2.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENVOY = process.env.SLUICE_ENVOY_BIN ?? path.join(repoRoot, 'envoy/.install/envoy/_bin/envoy');

export type EnvoyVerdict = { ok: true; size: number } | { ok: false; error: string };

function bootstrap(patterns: readonly string[]): object {
  return {
    layered_runtime: {
      layers: [{ name: 'static', static_layer: { 're2.max_program_size.error_level': 1_000_000_000, 're2.max_program_size.warn_level': 1 } }],
    },
    static_resources: {
      listeners: [
        {
          name: 'l',
          address: { socket_address: { address: '127.0.0.1', port_value: 1 } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'x',
                    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
                    route_config: {
                      virtual_hosts: [
                        {
                          name: 'v',
                          domains: ['*'],
                          routes: patterns.map((regex) => ({ match: { safe_regex: { regex } }, direct_response: { status: 200 } })),
                        },
                      ],
                    },
                  },
                },
              ],
            },
          ],
        },
      ],
    },
  };
}

const SIZE_LINE = / RE2 program size of (\d+) > max program size of 1 set for the warn level/;

/** One validate run: the sizes of the leading patterns that compiled, and the error that stopped it. */
function validateOnce(patterns: readonly string[], dir: string): { sizes: number[]; error?: string } {
  const file = path.join(dir, 'bootstrap.json');
  writeFileSync(file, JSON.stringify(bootstrap(patterns)));
  const run = spawnSync(ENVOY, ['--mode', 'validate', '-c', file, '-l', 'warning', '--log-format', '%v', '--disable-hot-restart'], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const output = `${run.stdout}${run.stderr}`;
  const sizes: number[] = [];
  for (const line of output.split('\n')) {
    const m = SIZE_LINE.exec(line);
    if (m) sizes.push(Number(m[1]));
  }
  if (run.status === 0) return { sizes };
  const error =
    /error initializing configuration '[^']*': ([\s\S]*)$/.exec(output)?.[1]?.trim() ??
    `envoy exited with ${run.status ?? run.signal}${run.error ? ` (${run.error.message})` : ''}: ${output.trim().slice(-300)}`;
  return { sizes, error };
}

/** Envoy's verdict for each pattern (one validate run, plus one per refused pattern). */
export function envoyVerdicts(patterns: readonly string[]): EnvoyVerdict[] {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-re2-'));
  try {
    const out: EnvoyVerdict[] = [];
    while (out.length < patterns.length) {
      const rest = patterns.slice(out.length);
      const { sizes, error } = validateOnce(rest, dir);
      for (const size of sizes) out.push({ ok: true, size });
      if (error !== undefined) {
        if (out.length >= patterns.length) throw new Error(`validate failed after every pattern compiled: ${error}`);
        out.push({ ok: false, error });
      } else if (sizes.length !== rest.length) {
        throw new Error(`expected ${rest.length} sizes, got ${sizes.length}`);
      }
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const ATOMS = ['a', 'Z', '0', '/', '-', '.', '\\.', '\\d', '\\w', '\\s', '\\D', '\\W', '\\S', '[a-z]', '[^/]', '[a-z0-9_-]', '[^a-z]', '日', 'é', 'ß', 'Σ', 'ǅ', 'ſ', 'K', '😀', '[α-ω]', '[一-龥]', '[à-ÿ]', '\\x{7f}', '\\x{80}', '\\x{7ff}', '\\x{800}', '\\x{10000}', '[\\x{80}-\\x{10ffff}]', '[[:alpha:]]', '[[:^digit:]]', '\\b', '\\B', '^', '$', '(?m:^)', '(?m:$)', '\\A', '\\z', 'k', 's', '\\Qa.b\\E', '\\x{41}', '\\101', '(?:)'];
const QUANT = ['', '', '', '*', '+', '?', '*?', '+?', '??', '{2}', '{1,3}', '{0,5}', '{3,}', '{5,10}', '{0,20}'];
const OPENERS = ['(', '(?:', '(?i:', '(?P<g>', '(?<h>', '(?s:', '(?U:', '(|', '(?:a|'];
const ZERO_WIDTH = new Set(['^', '$', '\\b', '\\B', '\\A', '\\z', '(?m:^)', '(?m:$)']);

function arbPattern(): fc.Arbitrary<string> {
  const atom = fc.constantFrom(...ATOMS);
  const piece = fc.tuple(atom, fc.constantFrom(...QUANT)).map(([a, q]) => (ZERO_WIDTH.has(a) ? a : a + q));
  const seq = fc.array(piece, { minLength: 1, maxLength: 10 }).map((parts) => parts.join(''));
  const group = (inner: fc.Arbitrary<string>) =>
    fc.tuple(fc.constantFrom(...OPENERS), inner, fc.constantFrom(')', '|x)', '|[0-9]+)', '|)'), fc.constantFrom('', '*', '+', '?', '{2,4}', '{3}', '*?')).map(
      ([open, body, close, q]) => open + body + close + q,
    );
  const level1 = fc.array(fc.oneof(seq, group(seq)), { minLength: 1, maxLength: 3 }).map((parts) => parts.join(''));
  const level2 = fc.array(fc.oneof(seq, group(level1)), { minLength: 1, maxLength: 3 }).map((parts) => parts.join(''));
  return fc.tuple(fc.constantFrom('', '(?i)', '^', '(?U)', '(?s)', '(?m)'), level2).map(([flag, body]) => {
    // Only one group of each name per pattern: RE2 refuses duplicate names.
    const used = new Set<string>();
    return flag + body.replace(/\(\?P?<([gh])>/g, (whole, name: string) => (used.has(name) ? '(' : (used.add(name), whole)));
  });
}

/** Every ASCII escape in and out of classes, plus the spellings where RE2 ports tend to differ. */
function syntaxCorpus(): string[] {
  const out: string[] = [];
  for (let code = 0x20; code < 0x7f; code++) {
    const c = String.fromCharCode(code);
    out.push(`x\\${c}`, `[\\${c}]`, `[a-\\${c}]`);
  }
  out.push('\\é', '\\日', '\\x{D800}', '\\x{110000}', '\\0', '\\08', '\\123', '\\400', '(?P<名>a)', '(?P<n>a)(?P<n>b)', "(?'n'a)", '(?-)a', '(?)a', 'a{2}{3}', 'a{2}*', '(?:a*)*', '[]a]', '[^]a]', '[a-]', 'x{,3}', '[[:foo:]]', '[z-a]', 'a{1000}', '()+', '(|)*', '^*', '\\b*', '\\pL', '\\C', '[[.a.]]', '[[=a=]]');
  return out;
}

function main(): void {
  const count = Number(process.argv[2] ?? 300);
  const seed = Number(process.argv[3] ?? 42);
  const patterns = [...syntaxCorpus(), ...fc.sample(arbPattern(), { numRuns: count, seed })];
  const verdicts = envoyVerdicts(patterns);
  let bad = 0;
  let maxRatio = 0;
  let accepted = 0;
  patterns.forEach((pattern, index) => {
    const envoy = verdicts[index]!;
    const estimate = estimateProgramSize(pattern);
    const problem = re2Problem(pattern);
    if (!envoy.ok) {
      if (Number.isFinite(estimate)) {
        bad++;
        console.log(`SYNTAX  model admits, Envoy refuses: ${JSON.stringify(pattern)}: ${envoy.error.slice(0, 2000)}`);
      }
      return;
    }
    accepted++;
    if (!Number.isFinite(estimate)) console.log(`strict  model refuses what Envoy takes: ${JSON.stringify(pattern)} (${problem})`);
    else {
      maxRatio = Math.max(maxRatio, envoy.size / estimate);
      if (envoy.size > estimate) {
        bad++;
        console.log(`SIZE    real ${envoy.size} > estimate ${estimate}: ${JSON.stringify(pattern)}`);
      }
    }
  });
  const ratios = patterns
    .map((pattern, index) => ({ envoy: verdicts[index]!, estimate: estimateProgramSize(pattern) }))
    .filter((row) => row.envoy.ok && Number.isFinite(row.estimate))
    .map((row) => (row.envoy.ok ? row.envoy.size / row.estimate : 0))
    .sort((a, b) => a - b);
  const quantile = (q: number) => (ratios[Math.floor(q * (ratios.length - 1))] ?? 0).toFixed(2);
  console.log(`real/estimate quantiles: p10 ${quantile(0.1)}, p50 ${quantile(0.5)}, p90 ${quantile(0.9)}`);
  const admitted = patterns.filter((pattern, index) => verdicts[index]!.ok && re2Problem(pattern) === undefined).length;
  console.log(`${patterns.length} patterns, ${accepted} accepted by Envoy, ${admitted} admitted by the model; max real/estimate ${maxRatio.toFixed(3)}; ${bad} problems`);
  process.exitCode = bad > 0 ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
