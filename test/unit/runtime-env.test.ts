// The control plane's memory settings (glibc malloc and --expose-gc for main.ts's
// quiet collections; why: the Dockerfile) are given in three places: the image's
// ENV, scripts/start.sh, and the propagation bench's compiled launch, which must
// measure what production runs. They must say the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { COMPILED_COMMAND } from '../helpers/control-plane.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (file: string) => readFileSync(path.join(repoRoot, file), 'utf8');
const NAMES = ['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_', 'NODE_OPTIONS'];

/** KEY=value pairs with one of NAMES as the key, from shell or Dockerfile text. */
function settings(text: string): Record<string, string> {
  const found: Record<string, string> = {};
  for (const match of text.matchAll(/\b([A-Z_]+)=([^\s\\]+)/g)) if (NAMES.includes(match[1]!)) found[match[1]!] = match[2]!;
  return found;
}

test("the image's ENV, scripts/start.sh and the propagation bench give the control plane the same memory settings", () => {
  const dockerfile = read('Dockerfile').replace(/\\\n/g, ' ');
  const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const envLines = runtimeStage.split('\n').filter((l) => /^ENV /.test(l)).join('\n');
  const image = settings(envLines);
  assert.deepEqual(Object.keys(image).sort(), [...NAMES].sort(), "the runtime stage's ENV sets each");

  const start = read('scripts/start.sh').split('\n');
  const launch = start.findIndex((l) => l.startsWith(`node ${COMPILED_COMMAND.join(' ')} `));
  assert.ok(launch > 0, 'scripts/start.sh starts the compiled control plane');
  assert.deepEqual(settings(start.slice(0, launch).filter((l) => /^export /.test(l)).join('\n')), image, 'scripts/start.sh exports them before the launch');

  const bench = /const PRODUCTION_ENV[^=]*= (\{[^}]*\})/.exec(read('bench/propagation.bench.ts'));
  assert.ok(bench, 'bench/propagation.bench.ts has PRODUCTION_ENV');
  const benchEnv = JSON.parse(bench[1]!.replace(/'/g, '"').replace(/(\w+):/g, '"$1":')) as Record<string, string>;
  assert.deepEqual(benchEnv, image, "the bench's compiled launch");
});

/** Every `node …/dist/<entry>.js` a file names (commands and comments alike). */
function entriesNamed(text: string): string[] {
  return [...new Set([...text.matchAll(/control-plane\/dist\/[\w./-]+\.js/g)].map((m) => m[0]))];
}

test('every place that starts the control plane names the same entry: the entry module, which loads main.js after holding the young generation', () => {
  // Why the entry and not main.js: control-plane/src/start.ts (test/unit/quiet-collection.test.ts measures it).
  const entry = 'control-plane/dist/start.js';
  assert.deepEqual(COMPILED_COMMAND, [entry], 'the tests and the bench start it (test/helpers/control-plane.ts)');
  const dockerfile = read('Dockerfile').split('\n').filter((l) => /^CMD /.test(l)).at(-1);
  assert.deepEqual(JSON.parse(dockerfile!.slice(4)), ['node', entry], "the image's CMD");
  assert.match(read('package.json'), /"start": "bash scripts\/start.sh"/, 'npm start runs scripts/start.sh');
  for (const file of ['scripts/start.sh', 'deploy/kubernetes/sluice.yaml', 'docker-compose.yml', 'README.md']) {
    assert.deepEqual(entriesNamed(read(file)), [entry], `${file} names it, and no other`);
  }
  // scripts/build.sh names the entry and checks that the build wrote it and main.js.
  assert.ok(entriesNamed(read('scripts/build.sh')).includes(entry));
  assert.match(read('scripts/build.sh'), /-f "\$next\/start\.js" && -f "\$next\/main\.js"/);
  // The entry loads quiet-collector.ts before any other module, and main.ts only by a dynamic import.
  const source = read('control-plane/src/start.ts').split('\n').filter((l) => /^(import|await import)\b/.test(l));
  assert.equal(source.length, 2, `one static import and one dynamic: ${source.join(' | ')}`);
  assert.match(source[0]!, /^import '\.\/quiet-collector\.ts';/);
  assert.match(source[1]!, /^await import\('\.\/main\.ts'\);/);
});
