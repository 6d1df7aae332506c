// A canary shift under load: one Envoy keeps serving a continuous load while the
// route's split moves 100/0 -> 90/10 -> 50/50 -> 0/100 through apply() (xDS, no
// restart). No request may fail, and in every step the split observed over the
// requests that ran fully within it is within 3 points of the weights.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type Gateway, type StateInput } from '../helpers/gateway.ts';
import { startLoad } from '../helpers/load.ts';
import { sleep } from '../helpers/net.ts';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstream.ts';

/** Canary percent per step. */
const STEPS = [0, 10, 50, 100];
/**
 * Requests measured per step. Envoy picks a weighted cluster at random per request,
 * so the observed share is binomial: at 50/50 over 2,500 requests one standard
 * deviation is 1 point, and the 3-point bound is 3 sd (about 1 run in 370 fails).
 */
const MEASURED_PER_STEP = 2_500;
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
  const total = Math.round(STEPS.length * MEASURED_PER_STEP * 1.6);
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
    while (served() - from.served < MEASURED_PER_STEP) {
      assert.ok(!loadDone, `load finished before step ${canaryPercent}% had ${MEASURED_PER_STEP} requests (raise the total)`);
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
  for (const step of steps) {
    assert.ok(step.stable + step.canary >= MEASURED_PER_STEP, summary);
    assert.ok(Math.abs(step.observed - step.canaryPercent) <= 3, `step ${step.canaryPercent}%: observed ${step.observed.toFixed(2)}% canary ${summary}`);
  }
  // The end points are exact: no request strays to a weight-0 upstream.
  assert.equal(steps[0]!.canary, 0, summary);
  assert.equal(steps.at(-1)!.stable, 0, summary);
  // One Envoy, never restarted, synced to the last revision with no rejection.
  const node = gw.registry.list().find((n) => n.nodeId === envoy.nodeId);
  assert.equal(node?.syncedRevision, revision);
  assert.equal(node?.lastNack, undefined);
  assert.equal(envoy.handle.exited, false);
  assert.ok(elapsed < 60_000, `took ${elapsed} ms`);
  console.log(`# canary steps: ${summary}`);
});
