// What start-up leaves in the heap goes back once it is done (quiet-collector.ts,
// issue 12's idle memory): the young generation is not grown by start-up, only
// once writes come; a compacting collection returns the old generation's partly
// live pages, which a plain gc() keeps, and quietCollector runs one once quiet
// after startupDone(). Each case runs in a child node (with --expose-gc, as
// production runs: the Dockerfile's NODE_OPTIONS), so the heap measured is the
// child's alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { COMPILED_COMMAND } from '../helpers/control-plane.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MODULE = pathToFileURL(path.join(repoRoot, 'control-plane/src/quiet-collector.ts')).href;
const MiB = 2 ** 20;

/** Runs `body` (an ES module's text, `quiet` bound to quiet-collector.ts) in a child node with --expose-gc; its last stdout line, parsed. */
async function inChild<T>(body: string): Promise<T> {
  const script = `import * as quiet from ${JSON.stringify(MODULE)};\nimport v8 from 'node:v8';\n${body}`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '--eval', script], {
    cwd: repoRoot,
    timeout: 60_000,
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as T;
}

/**
 * Fills ~58 MiB of old space with small objects, then drops every other one: each
 * page is left about half live, as module loading leaves the heap (V8's plain
 * full collection compacts only pages that are mostly free).
 */
const FRAGMENT = `
const oldSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space');
let kept = [];
for (let i = 0; i < 600_000; i++) kept.push({ i, text: 'object ' + i });
gc(); gc(); // promoted: in old space now
for (let i = 0; i < kept.length; i += 2) kept[i] = undefined;
`;

test('a compacting collection gives back the partly live old-space pages that a plain one keeps', async () => {
  const result = await inChild<{ plain: { size: number; used: number }; compacted: { size: number; used: number }; ran: boolean }>(`${FRAGMENT}
gc(); gc();
const plain = { size: oldSpace().space_size, used: oldSpace().space_used_size };
const ran = quiet.compactingCollection();
const compacted = { size: oldSpace().space_size, used: oldSpace().space_used_size };
console.log(JSON.stringify({ plain, compacted, ran, kept: kept.length }));
`);
  assert.equal(result.ran, true, 'it runs when gc is exposed');
  // Measured (5 runs, with and without --max-semi-space-size=1): after the plain
  // collections 58.5-59 MiB of pages hold 31 MiB (27-28 MiB free); compacted,
  // 31.7-32.2 MiB hold 30.9 (about 1 MiB free). The bounds leave 5 MiB or more
  // beyond each figure, and nothing depends on timing or other load: this child's
  // heap is built the same way each run.
  assert.ok(result.plain.size - result.plain.used > 16 * MiB, `the plain collections keep the half-empty pages (${JSON.stringify(result.plain)})`);
  assert.ok(result.compacted.size - result.compacted.used < 6 * MiB, `compacted, little free space is left in old space (${JSON.stringify(result.compacted)})`);
  assert.ok(result.plain.size - result.compacted.size > 12 * MiB, 'the freed pages are given back');
});

test('without --expose-gc a compacting collection does nothing', async () => {
  const script = `import { compactingCollection } from ${JSON.stringify(MODULE)};\nconsole.log(JSON.stringify(compactingCollection()));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', script], { cwd: repoRoot, timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '' } });
  assert.equal(JSON.parse(stdout.trim()), false);
});

/**
 * A quietCollector on the fragmented heap (FRAGMENT) in a child: `calls` on
 * `collector` right after it is made, then past the quiet second (with margin;
 * its timers are unref'd, so the child waits). What it logged, and old space's
 * free bytes before and after.
 */
function collectorRun(calls: string): Promise<{ messages: string[]; freeBefore: number; freeAfter: number }> {
  return inChild(`${FRAGMENT}
gc(); gc();
const messages = [];
const log = { info: (msg) => messages.push(msg), warn: (msg) => messages.push(msg), error: (msg) => messages.push(msg), debug: () => {} };
const collector = quiet.quietCollector(log);
const freeBefore = oldSpace().space_size - oldSpace().space_used_size;
${calls}
await new Promise((resolve) => setTimeout(resolve, 2_500));
collector.stop();
const freeAfter = oldSpace().space_size - oldSpace().space_used_size;
console.log(JSON.stringify({ messages, freeBefore, freeAfter, kept: kept.length }));
`);
}

test('quietCollector compacts once quiet after startupDone(), and only once', async () => {
  const result = await collectorRun('collector.startupDone();');
  assert.deepEqual(result.messages, ['sluice: compacted the heap once quiet after start-up']);
  // The heap of the case above: ~27 MiB free before, ~1 MiB after.
  assert.ok(result.freeBefore > 16 * MiB, `half-empty pages before (${result.freeBefore})`);
  assert.ok(result.freeAfter < 6 * MiB, `given back after (${result.freeAfter})`);
});

test('a publish before start-up\'s compaction ran: one collection once quiet after it, and it compacts', async () => {
  // The control plane's first write can come within start-up's quiet second. Start-up's compaction must
  // then not run on its own first and take the growth the collection after the publish is for.
  const result = await collectorRun('collector.startupDone();\ncollector.published();');
  // A compacting collection gives back ~8 MiB or more: a second round may follow it.
  assert.equal(result.messages[0], 'sluice: collected garbage once quiet');
  assert.ok(!result.messages.includes('sluice: compacted the heap once quiet after start-up'), result.messages.join(', '));
  assert.ok(result.freeBefore > 16 * MiB, `half-empty pages before (${result.freeBefore})`);
  assert.ok(result.freeAfter < 6 * MiB, `given back after: the collection compacted (${result.freeAfter})`);
});

/** Allocates ~30 MiB of objects that a scavenge keeps (a tenth of ~3 million), as start-up does; the young generation's size after, MiB. */
const SURVIVORS = `
const youngMiB = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 2 ** 20;
const survive = () => {
  const kept = [];
  for (let i = 0; i < 3_000_000; i++) { const o = { i, text: 'x' + i }; if (i % 10 === 0) kept.push(o); }
  return kept;
};
`;

test('the young generation is not grown by start-up, also after a worker thread started, and grows again once start-up is done', async () => {
  const result = await inChild<{ atImport: number; startup: number; stillStarting: number; work: number }>(`${SURVIVORS}
const atImport = youngMiB();
// Creating a worker's isolate resets V8's growth factor; main.ts holds again after.
const { Worker } = await import('node:worker_threads');
const worker = new Worker('setTimeout(() => {}, 1)', { eval: true });
await new Promise((resolve) => worker.once('online', resolve));
quiet.holdYoungGeneration();
let kept = survive();
const startup = youngMiB();
const collector = quiet.quietCollector({ info() {}, warn() {}, error() {} });
collector.startupDone();
collector.published(); // start-up's own publish: not quiet yet, still held
kept = [kept, survive()];
const stillStarting = youngMiB();
// Past the quiet second (start-up's compaction, then the release), with margin.
await new Promise((resolve) => setTimeout(resolve, 2_500));
kept = [kept, survive()];
const work = youngMiB();
collector.stop();
console.log(JSON.stringify({ atImport, startup, stillStarting, work, kept: kept.length }));
`);
  // V8's default grows it to its 32 MiB maximum on such work (two semi-spaces of
  // 16 MiB; measured, and what the control plane had after start-up). Held, it
  // keeps the size it had when the module was loaded (4 MiB measured here, 8 in the
  // control plane); released, it grows as before. Deterministic: V8 grows it by
  // doubling, from what a scavenge kept, and the work is the same each run.
  assert.ok(result.startup <= Math.max(result.atImport, 8), `held through start-up: ${JSON.stringify(result)}`);
  assert.ok(result.stillStarting <= Math.max(result.atImport, 8), `held until start-up is quiet: ${JSON.stringify(result)}`);
  assert.ok(result.work >= 16, `grown again for work after: ${JSON.stringify(result)}`);
});


test("production's entry holds the young generation before main.ts's modules load (control-plane/src/start.ts)", async () => {
  execFileSync('bash', [path.join(repoRoot, 'scripts/build.sh'), '--if-stale'], { stdio: 'inherit' });
  // The process exits at its config check (an invalid ADMIN_PORT), just after every
  // module has loaded and before anything starts; the preload reports the young
  // generation's size as it exits.
  const atExit = `import v8 from 'node:v8'; process.on('exit', () => process.stdout.write(JSON.stringify(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 2 ** 20) + '\\n'));`;
  const youngMiBAfterLoading = (entry: string) => {
    const run = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(atExit)}`, entry], {
      cwd: repoRoot,
      timeout: 60_000,
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '--expose-gc', ADMIN_PORT: 'not-a-port' },
    });
    assert.equal(run.status, 2, `exits at the config check: ${run.stderr}`);
    assert.match(run.stderr, /ADMIN_PORT/);
    return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as number;
  };
  const entry = COMPILED_COMMAND.at(-1)!;
  assert.equal(entry, 'control-plane/dist/start.js', 'production starts the entry module');
  // Measured: 2 MiB through the entry (the size V8 starts with), 8 MiB when main.js
  // is run directly (its static imports load before quiet-collector.ts runs). V8
  // grows it only by doubling what a scavenge kept, and loading the same modules
  // keeps the same objects each run: deterministic, so the bound (one doubling
  // above the measured size, one halving below main.js's) is not a timing or load matter.
  const throughEntry = youngMiBAfterLoading(entry);
  const direct = youngMiBAfterLoading('control-plane/dist/main.js');
  assert.ok(throughEntry <= 4, `held from the start: ${throughEntry} MiB (main.js direct: ${direct} MiB)`);
  assert.ok(direct > throughEntry, `module loading alone grows it when not held first: ${direct} MiB`);
});

/**
 * A Wasm module whose one function, f(n), sums n..1 in a loop (hand-assembled:
 * type (i32) -> i32, exported as "f", one i32 local), called hot enough that V8's
 * dynamic tiering recompiles it with TurboFan; V8's --trace-wasm-compilation-times
 * prints which compiler compiled each function.
 */
const HOT_WASM = `
const bytes = new Uint8Array([0x00,0x61,0x73,0x6d,0x01,0x00,0x00,0x00, 0x01,0x06,0x01,0x60,0x01,0x7f,0x01,0x7f, 0x03,0x02,0x01,0x00,
  0x07,0x05,0x01,0x01,0x66,0x00,0x00, 0x0a,0x1b,0x01,0x19, 0x01,0x01,0x7f, 0x03,0x40, 0x20,0x01,0x20,0x00,0x6a,0x21,0x01,
  0x20,0x00,0x41,0x01,0x6b,0x22,0x00, 0x0d,0x00, 0x0b, 0x20,0x01, 0x0b]);
const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes));
let sum = 0;
for (let i = 0; i < 200; i++) sum += exports.f(100_000);
await new Promise((resolve) => setTimeout(resolve, 200)); // background compiles finish
console.log(JSON.stringify(sum));
`;

test('WebAssembly stays on the baseline compiler once quiet-collector.ts is loaded (wasmBaselineOnly)', async () => {
  const compilers = async (importFirst: string) => {
    const script = `${importFirst}\n${HOT_WASM}`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--trace-wasm-compilation-times', '--import', 'tsx', '--input-type=module', '--eval', script], {
      cwd: repoRoot,
      timeout: 60_000,
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    const lines = stdout.trim().split('\n');
    assert.match(lines.at(-1)!, /^-?\d+$/, `the module ran: ${stdout.slice(-500)}`);
    return new Set(lines.flatMap((l) => /^Compiled function .* using (\w+)/.exec(l)?.[1] ?? []));
  };
  // Without it V8 recompiles the hot function with TurboFan (the case this guards
  // against); with it, Liftoff only. Which compiler runs is V8's tiering decision,
  // not a timing: 200 calls of 100,000 iterations are far past its tiering budget.
  assert.ok((await compilers('')).has('TurboFan'), 'the hot function is optimised by default (the test sees tier-up)');
  assert.deepEqual([...(await compilers(`await import(${JSON.stringify(MODULE)});`))], ['Liftoff']);
});
