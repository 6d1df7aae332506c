// The gate's promise, checked by a generator: every config the model admits, the
// pinned Envoy accepts ("model/ is the gate, translate/ never emits what model/
// did not check"). States are generated from the model's shapes
// (test/helpers/arbitraries.ts), filtered through the model's own parse (refused
// ones prove nothing), translated, and judged by `envoy --mode validate` in
// batches (test/helpers/envoy-validate.ts); a smaller sample goes live to a SotW
// and a delta Envoy over ADS.
//
// Reproducing a failure: the message names the seed and the fast-check path of
// each rejected config (the shrunk one too). `npm run fuzz -- --seed 72026 --runs
// <path + 1>` judges the same configs again and prints them; in code,
// fc.sample(admittedStates({ caPem }, tally), { seed, path, numRuns: 1 }) gives the
// input back (with any valid CA certificate: its text does not steer the generator).
// Longer runs with random seeds: `npm run fuzz -- --runs 5000`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { type State, parseState } from '../../control-plane/src/model/index.ts';
import { translate } from '../../control-plane/src/translate/index.ts';
import { encode } from '../../control-plane/src/proto/codec.ts';
import { type Finding, admittedStates, checkAdmittedAccepted, describeInput, judgeOne, translateOptionsFor, validateBatch } from '../helpers/envoy-validate.ts';
import { startGateway, type Gateway } from '../helpers/gateway.ts';

/** Fixed, so the suite judges the same configs every run. */
const SEED = 72_026;
/** Admitted configs through the Envoy validator (issue 7 asks for at least 500). */
const RUNS = 500;
/** Admitted configs applied live to each of the two Envoys. */
const LIVE_RUNS = 40;

let tmp: string;
let caPem: string;

before(() => {
  // A real CA certificate for tls.verify.ca_pem, made fresh for this run.
  tmp = mkdtempSync(path.join(os.tmpdir(), 'sluice-pbt-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(tmp, 'ca.key'), '-out', path.join(tmp, 'ca.pem'), '-subj', '/CN=sluice-pbt-ca', '-days', '2'], { stdio: 'ignore' });
  caPem = readFileSync(path.join(tmp, 'ca.pem'), 'utf8');
});

after(() => rmSync(tmp, { recursive: true, force: true }));

function explain(seed: number, findings: readonly Finding[]): string {
  const lines = [`${findings.length} admitted config(s) rejected by Envoy (seed ${seed}):`];
  for (const finding of findings.slice(0, 5)) {
    lines.push(`- path ${finding.path}: ${finding.message}`);
    if (finding.minimal) {
      lines.push(`  minimal (path ${finding.minimal.path}): ${finding.minimal.message}`);
      lines.push(`  ${describeInput(finding.minimal.input)}`);
    }
  }
  if (findings.length > 5) lines.push(`- and ${findings.length - 5} more at paths ${findings.slice(5).map((f) => f.path).join(', ')}`);
  lines.push(`Replay one: fc.sample(admittedStates({ caPem }, tally), { seed: ${seed}, path: '<path>', numRuns: 1 }) (test/helpers/envoy-validate.ts).`);
  return lines.join('\n');
}

/** A State built without the model, to show the judge refuses what Envoy refuses (translate() trusts its input). */
function unchecked(overrides: { host?: string; pathRegex?: string }): State {
  const parsed = parseState({
    revision: 1,
    upstreams: [{ name: 'eds', endpoints: [{ host: '127.0.0.1', port: 8080 }] }, { name: 'dns', endpoints: [{ host: 'svc.internal', port: 80 }], health_check: { path: '/healthz' } }],
    routes: [
      { name: 'r', match: { path: { regex: '/items/[0-9]+' } }, action: { split: [{ upstream: 'eds', weight: 60 }, { upstream: 'dns', weight: 40 }] }, mirror: { upstream: 'dns' } },
      { name: 'c', match: { path: { prefix: '/c' } }, action: { canary: { primary: 'eds', canary: 'dns', cookie: { name: 'beta', value: 'on' } } }, auth: { mode: 'api_key' } },
    ],
  });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  const state = structuredClone(parsed.value);
  if (overrides.host) state.upstreams[0]!.endpoints[0]!.host = overrides.host;
  if (overrides.pathRegex) state.routes[0]!.match.path = { regex: overrides.pathRegex };
  return state;
}

test('the batch judge accepts a good config and names the configs Envoy refuses (EDS address, route regex)', async () => {
  const cases = [unchecked({}), unchecked({}), unchecked({}), unchecked({ pathRegex: '/x\\y' }), unchecked({})].map((state, index) => ({
    resources: translate(state, translateOptionsFor(index)),
  }));
  // An EDS assignment holding a malformed IP: the judge must carry it into the static cluster.
  const endpoints = cases[1]!.resources.endpoints;
  endpoints[0] = { ...endpoints[0]!, value: encode('envoy.config.endpoint.v3.ClusterLoadAssignment', {
    cluster_name: endpoints[0]!.name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '999.1.1.1', port_value: 80 } } } }] }],
  }) };
  const verdicts = await validateBatch(cases);
  assert.equal(verdicts[0], undefined);
  assert.match(verdicts[1] ?? 'accepted', /malformed IP address: 999\.1\.1\.1/);
  assert.equal(verdicts[2], undefined);
  assert.match(verdicts[3] ?? 'accepted', /invalid escape sequence/);
  assert.equal(verdicts[4], undefined);
});

test(`Envoy accepts every config the model admits (${RUNS} generated configs, envoy --mode validate)`, async (t) => {
  const report = await checkAdmittedAccepted({ seed: SEED, runs: RUNS, arbitraryOptions: { caPem }, shrinkFindings: 2, shrinkRuns: 80, log: (line) => t.diagnostic(line) });
  const ratio = report.admitted / report.generated;
  t.diagnostic(`seed ${SEED}: ${report.admitted} of ${report.generated} generated configs admitted (${(ratio * 100).toFixed(1)}%), ${report.envoyRuns} Envoy runs`);
  assert.equal(report.admitted, RUNS);
  assert.deepEqual(report.findings.map((f) => f.path), [], explain(SEED, report.findings));
  // Deterministic for a fixed seed and model. Guards the generators: configs the
  // model refuses prove nothing, so most of what they make must be admitted.
  assert.ok(ratio >= 0.5, `only ${(ratio * 100).toFixed(1)}% of generated configs were admitted; the generators drifted from the model`);
});

test(`live: a SotW and a delta Envoy ACK every admitted config (${LIVE_RUNS} generated configs over ADS)`, async (t) => {
  const tally = { generated: 0, admitted: 0 };
  // Loopback endpoints only: live Envoys resolve names and run health checks.
  const inputs = fc.sample(admittedStates({ caPem, loopbackOnly: true }, tally), { seed: SEED, numRuns: LIVE_RUNS });
  const gw: Gateway = await startGateway({ envoys: [{ nodeId: 'pbt-sotw' }, { nodeId: 'pbt-delta', delta: true }] });
  const rejected: string[] = [];
  try {
    for (const [index, input] of inputs.entries()) {
      try {
        await gw.apply({ ...input, revision: index + 1 });
      } catch (err) {
        // Fleet status keeps a shortened NACK; the validator gives Envoy's whole reason.
        const live = (err as Error).message.split('\n')[0]!.slice(0, 300);
        const parsed = parseState({ ...input, revision: index + 1 });
        const offline = parsed.ok ? await judgeOne(parsed.value) : 'refused by the model';
        rejected.push(`path ${index}: ${live}\n  validate: ${offline ?? 'accepted'}\n  ${describeInput(input).slice(0, 4000)}`);
      }
    }
  } finally {
    await gw.stop();
  }
  t.diagnostic(`seed ${SEED}: ${tally.admitted} of ${tally.generated} generated configs admitted; ${rejected.length} rejected live`);
  assert.deepEqual(rejected, [], `admitted configs rejected live (seed ${SEED}, loopbackOnly):\n${rejected.join('\n')}`);
});
