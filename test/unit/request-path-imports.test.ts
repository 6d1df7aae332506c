// The request-path worker's module graph stays lean: the authz and rate-limit
// services' p99 is set by major collections in the worker, whose cost grows with
// its live heap, and the protobufjs registry of the whole Envoy API
// (proto/envoy.ts) and the zod schemas (model/index.ts, zod) were most of it
// while nothing on the request path uses them. This walks the static import graph
// from request-path/worker.ts, as the TypeScript parser sees it, and fails if it
// reaches any of them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const src = path.join(root, 'control-plane/src');
const WORKER = path.join(src, 'request-path/worker.ts');

/** What the worker must never load, and why it is listed. */
const FORBIDDEN_FILES = new Map([
  [path.join(src, 'proto/envoy.ts'), 'the protobufjs registry of the Envoy API'],
  [path.join(src, 'model/index.ts'), 'every zod schema of the model'],
]);
const FORBIDDEN_PACKAGES = new Set(['zod']);

/**
 * The specifiers a module loads at run time: import and export declarations
 * (not `import type` / `export type`, nor imports whose every name is `type`, which
 * TypeScript and tsx erase) and `import('...')` calls with a string literal.
 */
function runtimeSpecifiers(file: string, text = readFileSync(file, 'utf8')): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, file.endsWith('.ts') ? ts.ScriptKind.TS : ts.ScriptKind.JS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier) && !typeOnlyImport(node)) found.push(node.moduleSpecifier.text);
    else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier) && !typeOnlyExport(node)) found.push(node.moduleSpecifier.text);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [argument] = node.arguments;
      if (argument && ts.isStringLiteralLike(argument)) found.push(argument.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function typeOnlyImport(node: ts.ImportDeclaration): boolean {
  const clause = node.importClause;
  if (!clause) return false; // `import 'x'`: a side effect
  if (clause.isTypeOnly) return true;
  if (clause.name) return false;
  const bindings = clause.namedBindings;
  return bindings !== undefined && ts.isNamedImports(bindings) && bindings.elements.length > 0 && bindings.elements.every((element) => element.isTypeOnly);
}

function typeOnlyExport(node: ts.ExportDeclaration): boolean {
  if (node.isTypeOnly) return true;
  const clause = node.exportClause;
  return clause !== undefined && ts.isNamedExports(clause) && clause.elements.length > 0 && clause.elements.every((element) => element.isTypeOnly);
}

function resolveRelative(from: string, specifier: string): string {
  const base = path.resolve(path.dirname(from), specifier);
  for (const candidate of [base, `${base}.ts`, path.join(base, 'index.ts')]) if (existsSync(candidate) && !candidate.endsWith(path.sep)) return candidate;
  throw new Error(`${path.relative(root, from)}: cannot resolve '${specifier}'`);
}

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

interface Reach {
  /** Repository files reached, each with the chain of imports that reached it. */
  files: Map<string, string[]>;
  /** Bare package specifiers reached (not followed), each with a chain. */
  packages: Map<string, string[]>;
}

/** Every repository file and package the entry loads, following relative imports breadth-first. */
function importGraph(entry: string): Reach {
  const files = new Map<string, string[]>([[entry, [entry]]]);
  const packages = new Map<string, string[]>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.shift()!;
    const chain = files.get(file)!;
    for (const specifier of runtimeSpecifiers(file)) {
      if (specifier.startsWith('node:')) continue;
      if (!specifier.startsWith('.') && !specifier.startsWith('/')) {
        const name = packageName(specifier);
        if (!packages.has(name)) packages.set(name, [...chain, specifier]);
        continue;
      }
      const target = resolveRelative(file, specifier);
      if (files.has(target)) continue;
      files.set(target, [...chain, target]);
      queue.push(target);
    }
  }
  return { files, packages };
}

const show = (chain: string[]) => chain.map((file) => (path.isAbsolute(file) ? path.relative(root, file) : file)).join('\n  -> ');

test('the request-path worker reaches neither the Envoy proto registry, nor model/index.ts, nor zod', () => {
  const reach = importGraph(WORKER);
  const problems: string[] = [];
  for (const [file, why] of FORBIDDEN_FILES) {
    const chain = reach.files.get(file);
    if (chain) problems.push(`${path.relative(root, file)} (${why}) is loaded:\n  ${show(chain)}`);
  }
  for (const name of FORBIDDEN_PACKAGES) {
    const chain = reach.packages.get(name);
    if (chain) problems.push(`package ${name} is loaded:\n  ${show(chain)}`);
  }
  assert.deepEqual(problems, []);
  // The walk did walk: the services themselves are in the graph.
  assert.ok(reach.files.has(path.join(src, 'authz/service.ts')));
  assert.ok(reach.packages.has('protobufjs'), 'the lean codecs use protobufjs\' Reader/Writer');
});

test('the walk sees value imports, re-exports and dynamic imports, and skips type-only ones', () => {
  const text = [
    "import type { A } from './type-only.ts';",
    "import { type B, type C } from './all-names-type.ts';",
    "export type { D } from './type-export.ts';",
    "import { type E, f } from './mixed.ts';",
    "import g from 'zod';",
    "import './side-effect.ts';",
    "export * from './star.ts';",
    "export { h } from './named.ts';",
    "const lazy = () => import('./dynamic.ts');",
    '// import { x } from "./in-a-comment.ts";',
    "const text = \"import { y } from './in-a-string.ts'\";",
  ].join('\n');
  assert.deepEqual(runtimeSpecifiers('probe.ts', text), ['./mixed.ts', 'zod', './side-effect.ts', './star.ts', './named.ts', './dynamic.ts']);
});

/**
 * Run in a child process (tsx, as the worker runs): a module-resolution hook
 * records every URL loaded while the worker's own imports load. Catches what the
 * static walk cannot see (a package that loads zod, an import tsx keeps).
 */
const RECORD_LOADS = `
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const loaded = new Set();
const { port1, port2 } = new MessageChannel();
port1.on('message', (url) => loaded.add(url));
port1.unref();
const hooks = 'export function initialize({ port }) { globalThis.port = port; }' +
  ' export async function resolve(specifier, context, next) { const result = await next(specifier, context); globalThis.port.postMessage(result.url); return result; }';
register('data:text/javascript,' + encodeURIComponent(hooks), { data: { port: port2 }, transferList: [port2] });
for (const url of JSON.parse(process.argv[1])) await import(url);
await new Promise((resolve) => setTimeout(resolve, 200));
process.stdout.write(JSON.stringify([...loaded]));
`;

test('loading the worker\'s imports in a real process loads neither the registry, nor model/index.ts, nor zod', async () => {
  // worker.ts itself starts the services when loaded, so its value imports are loaded instead.
  const imports = runtimeSpecifiers(WORKER)
    .filter((specifier) => specifier.startsWith('.'))
    .map((specifier) => pathToFileURL(resolveRelative(WORKER, specifier)).href);
  assert.ok(imports.length >= 2, 'the worker imports its services');
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', RECORD_LOADS, JSON.stringify(imports)], { cwd: root, timeout: 60_000 });
  const loaded = JSON.parse(stdout) as string[];
  assert.ok(loaded.some((url) => url.endsWith('/authz/service.ts')), 'the hook saw the services load');
  const forbidden = loaded.filter((url) => [...FORBIDDEN_FILES.keys()].some((file) => url === pathToFileURL(file).href) || /\/node_modules\/zod\//.test(url));
  assert.deepEqual(forbidden, []);
});
