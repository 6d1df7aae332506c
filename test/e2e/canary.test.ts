// A canary shift under load: one Envoy keeps serving a continuous load while the
// route's split moves 100/0 -> 90/10 -> 50/50 -> 0/100 through apply() (xDS, no
// restart). No request may fail, and in every step the split observed over the
// requests that ran fully within it is within 3 points of the weights.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type Gateway, type StateInput } from '../helpers/gateway.ts';
import { startLoad } from '../helpers/load.ts';
import { sleep } from '../helpers/net.ts';
import { requestsForMissRate } from '../helpers/stats.ts';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

/** Canary percent per step. */
const STEPS = [0, 10, 50, 100];
const TOLERANCE_POINTS = 3;
/**
 * Requests measured per step. Envoy picks a weighted cluster at random per
 * request, so a step's canary count is Binomial(n, percent/100). The two random
 * steps (10 and 50) share a false-failure budget of 1 in 10,000 runs: each is
 * sized so that the exact binomial chance of missing the 3-point bound is under
 * 1 in 20,000 (1,700 requests at 10%, 4,600 at 50%; checked to hold for up to
 * 100 extra requests a window may catch; the 2,500 used before failed about 1
 * run in 400). The 0 and 100 steps are exact: 400 requests.
 */
const measuredFor = (percent: number) => requestsForMissRate(percent / 100, TOLERANCE_POINTS / 100, 1 / 20_000, { minimum: 400 });
const MEASURED = STEPS.map(measuredFor);
/** After a step is synced, let requests routed under the old weights drain before measuring. */
const SETTLE_MS = 50;
const CONCURRENCY = 6;

let gw: Gateway;
let stable: HttpUpstream;
let canary: HttpUpstream;

function state(revision: number, canaryPercent: number): StateInput {
  return {
    revision,
    upstreams: [
      { name: 'stable', endpoints: [{ host: '127.0.0.1', port: stable.port }] },
      { name: 'canary', endpoints: [{ host: '127.0.0.1', port: canary.port }] },
    ],
    routes: [
      {
        name: 'shop',
        match: { path: { prefix: '/' } },
        action: {
          split: [
            { upstream: 'stable', weight: 100 - canaryPercent },
            { upstream: 'canary', weight: canaryPercent },
          ],
        },
      },
    ],
  };
}

before(async () => {
  stable = await startHttpUpstream({ name: 'stable' });
  canary = await startHttpUpstream({ name: 'canary' });
  gw = await startGateway({ envoys: [{ nodeId: 'canary-1' }] });
  await gw.apply(state(1, STEPS[0]!));
});

after(async () => {
  await gw?.stop();
  await stable?.close();
  await canary?.close();
});

interface StepResult {
  canaryPercent: number;
  stable: number;
  canary: number;
  observed: number;
}

test('canary shift 0 -> 10 -> 50 -> 100 percent under load: zero failures, split within 3 points per step', async () => {
  const envoy = gw.envoys[0]!;
  const started = Date.now();
  // More requests than the measured windows need: syncs and settle times run under
  // load too, and the tail after the last window is served at the final weights.
  const total = Math.round(MEASURED.reduce((a, b) => a + b, 0) * 1.6);
  let progress = 0;
  const load = startLoad({
    port: envoy.port,
    path: '/checkout',
    requests: total,
    concurrency: CONCURRENCY,
    onProgress: (done) => {
      progress = done;
    },
  });
  let loadDone = false;
  void load.result.then(() => (loadDone = true));
  const served = () => stable.requests + canary.requests;

  const steps: StepResult[] = [];
  let revision = 1;
  for (const [index, canaryPercent] of STEPS.entries()) {
    if (index === 0) {
      // Revision 1 (100/0) is already in place; wait for the load to be flowing.
      while (progress < CONCURRENCY * 4) await sleep(5);
    } else {
      revision += 1;
      await gw.apply(state(revision, canaryPercent));
    }
    await sleep(SETTLE_MS);
    const from = { stable: stable.requests, canary: canary.requests, served: served() };
    while (served() - from.served < MEASURED[index]!) {
      assert.ok(!loadDone, `load finished before step ${canaryPercent}% had ${MEASURED[index]} requests (raise the total)`);
      await sleep(2);
    }
    const s = stable.requests - from.stable;
    const c = canary.requests - from.canary;
    steps.push({ canaryPercent, stable: s, canary: c, observed: (100 * c) / (s + c) });
  }
  const result = await load.result;
  const elapsed = Date.now() - started;

  const summary = JSON.stringify({ steps, total: result.total, byUpstream: [...result.byUpstream], elapsedMs: elapsed });
  assert.equal(result.failed, 0, `failures: ${JSON.stringify([...result.failures])} ${summary}`);
  assert.equal(result.total, total, summary);
  assert.ok(result.total >= 2_000, summary);
  for (const [index, step] of steps.entries()) {
    assert.ok(step.stable + step.canary >= MEASURED[index]!, summary);
    assert.ok(Math.abs(step.observed - step.canaryPercent) <= TOLERANCE_POINTS, `step ${step.canaryPercent}%: observed ${step.observed.toFixed(2)}% canary ${summary}`);
  }
  // The end points are exact: no request strays to a weight-0 upstream.
  assert.equal(steps[0]!.canary, 0, summary);
  assert.equal(steps.at(-1)!.stable, 0, summary);
  // One Envoy, never restarted, synced to the last revision with no rejection.
  const node = gw.registry.list().find((n) => n.nodeId === envoy.nodeId);
  assert.equal(node?.syncedRevision, revision);
  assert.equal(node?.lastNack, undefined);
  assert.equal(envoy.handle.exited, false);
  // No bound on `elapsed`: speed is bench/'s business, not a test's.
  console.log(`# canary steps: ${summary}`);
});
