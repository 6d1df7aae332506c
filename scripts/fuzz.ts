// The property-based gate check, run long: generates States the model admits,
// translates them and has the pinned Envoy judge them in batches
// (test/helpers/envoy-validate.ts). The suite runs the same property with a fixed
// seed and 500 configs (test/e2e/property-envoy.test.ts).
//
//   npm run fuzz -- [--runs N] [--seed S] [--batch B] [--shrink K] [--json FILE]
//
// --runs   admitted configs to judge (default 2000)
// --seed   replay a seed; a random one by default (printed first, so any run can be replayed)
// --batch  configs per Envoy run (default 50)
// --shrink findings to shrink to a minimal counterexample (default 3)
// --json   also write every finding (seed, path, Envoy's message, input) to FILE
// Exits 1 when Envoy rejected any admitted config.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { checkAdmittedAccepted, describeInput } from '../test/helpers/envoy-validate.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '2000' },
    seed: { type: 'string' },
    batch: { type: 'string', default: '50' },
    shrink: { type: 'string', default: '3' },
    json: { type: 'string' },
  },
});

function positiveInt(name: string, raw: string): number {
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} must be a non-negative integer (got '${raw}')`);
  return value;
}

/** A fresh CA certificate for tls.verify.ca_pem, as the suite makes one. */
function makeCaPem(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-fuzz-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(dir, 'ca.key'), '-out', path.join(dir, 'ca.pem'), '-subj', '/CN=sluice-fuzz-ca', '-days', '2'], { stdio: 'ignore' });
    return readFileSync(path.join(dir, 'ca.pem'), 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const runs = positiveInt('runs', values.runs!);
const seed = values.seed === undefined ? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0 : Number(values.seed);
if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer (got '${values.seed}')`);
console.log(`fuzz: seed ${seed}, ${runs} admitted configs`);

const started = Date.now();
const report = await checkAdmittedAccepted({
  seed,
  runs,
  batchSize: Math.max(1, positiveInt('batch', values.batch!)),
  shrinkFindings: positiveInt('shrink', values.shrink!),
  arbitraryOptions: { caPem: makeCaPem() },
  log: (line) => console.log(`  ${line}`),
});

const ratio = report.generated === 0 ? 0 : report.admitted / report.generated;
console.log(
  `fuzz: seed ${seed}: ${report.admitted} admitted of ${report.generated} generated (${(ratio * 100).toFixed(1)}%), ` +
    `${report.findings.length} rejected by Envoy, ${report.envoyRuns} Envoy runs, ${((Date.now() - started) / 1000).toFixed(0)} s`,
);
for (const finding of report.findings) {
  console.log(`- seed ${seed} path ${finding.path}: ${finding.message}`);
  if (finding.minimal) console.log(`  minimal (path ${finding.minimal.path}): ${finding.minimal.message}\n  ${describeInput(finding.minimal.input)}`);
}
if (values.json) {
  writeFileSync(values.json, JSON.stringify({ seed, runs, generated: report.generated, admitted: report.admitted, findings: report.findings }, null, 1));
  console.log(`fuzz: findings written to ${values.json}`);
}
process.exitCode = report.findings.length > 0 ? 1 : 0;
