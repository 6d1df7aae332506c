// Issue 11 item 1's acceptance: the real control plane's GET /metrics parses
// with a Prometheus text-format parser (parse-prometheus-text-format, not a
// regex) and shows a push, an ACK and a NACK after the test makes each happen
// with a real Envoy; a commit shows in the commit-latency histogram, and the
// in-process authz and rate-limit services' counters are exposed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import parsePrometheusTextFormat, { type ParsedFamily } from 'parse-prometheus-text-format';
import { startControlPlane, type ControlPlane } from '../helpers/control-plane.ts';
import { startEnvoy, type EnvoyHandle } from '../helpers/envoy.ts';
import { freePort, sleep } from '../helpers/net.ts';
import { createTestDatabase, stopTestPostgres, type TestDatabase } from '../helpers/postgres.ts';

let db: TestDatabase;
let cp: ControlPlane;
let envoy: EnvoyHandle | undefined;
let portHolder: net.Server;

before(async () => {
  db = await createTestDatabase();
  // Something else already holds the gateway port (without SO_REUSEPORT), so
  // Envoy cannot bind the listener and NACKs it, while it ACKs the clusters.
  const gatewayPort = await freePort();
  portHolder = net.createServer();
  await new Promise<void>((resolve) => portHolder.listen(gatewayPort, '127.0.0.1', resolve));
  cp = await startControlPlane({ databaseUrl: db.url, gatewayPort });
});

after(async () => {
  await envoy?.stop();
  await cp?.stop();
  await new Promise((resolve) => portHolder?.close(resolve));
  await db?.drop();
  await stopTestPostgres();
});

async function scrape(): Promise<ParsedFamily[]> {
  const res = await fetch(`${cp.adminUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  return parsePrometheusTextFormat(await res.text());
}

function family(families: ParsedFamily[], name: string): ParsedFamily {
  const found = families.find((f) => f.name === name);
  assert.ok(found, `${name} is exposed`);
  return found;
}

/** A counter's value for the series with these labels (0 when absent). */
function counterValue(families: ParsedFamily[], name: string, labels: Record<string, string>): number {
  const sample = family(families, name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return sample ? Number(sample.value) : 0;
}

/** An unlabelled histogram's observation count. */
function histogramCount(families: ParsedFamily[], name: string): number {
  return family(families, name).metrics.reduce((n, m) => n + Number(m.count ?? 0), 0);
}

const PUSHED = 'sluice_xds_responses_pushed_total';
const ACKS = 'sluice_xds_acks_total';
const NACKS = 'sluice_xds_nacks_total';

test('/metrics shows a push, an ACK and a NACK from a real Envoy, a commit, and the request-path services', async () => {
  const before = await scrape();
  assert.equal(family(before, PUSHED).type, 'COUNTER');
  assert.equal(counterValue(before, PUSHED, { type: 'cluster' }), 0, 'no Envoy yet: nothing pushed');
  assert.equal(counterValue(before, ACKS, { type: 'cluster' }), 0);
  assert.equal(counterValue(before, NACKS, { type: 'listener' }), 0);
  assert.equal(histogramCount(before, 'sluice_config_commit_duration_seconds'), 0);

  const upstream = await cp.api('POST', '/v1/upstreams', { name: 'up', endpoints: [{ host: '127.0.0.1', port: 9 }] });
  assert.equal(upstream.status, 201, JSON.stringify(upstream.body));
  const route = await cp.api('POST', '/v1/routes', { name: 'r', match: { path: { prefix: '/' } }, action: { upstream: 'up' } });
  assert.equal(route.status, 201, JSON.stringify(route.body));

  envoy = await startEnvoy({ adsPort: cp.xdsPort, nodeId: 'metrics-1', nodeCluster: 'default' });
  let after = await scrape();
  const deadline = Date.now() + 20_000;
  while (!(counterValue(after, ACKS, { type: 'cluster' }) > 0 && counterValue(after, NACKS, { type: 'listener' }) > 0) && Date.now() < deadline) {
    await sleep(200);
    after = await scrape();
  }
  assert.ok(counterValue(after, PUSHED, { type: 'cluster' }) >= 1, 'clusters pushed');
  assert.ok(counterValue(after, PUSHED, { type: 'listener' }) >= 1, 'listeners pushed');
  assert.ok(counterValue(after, ACKS, { type: 'cluster' }) >= 1, 'clusters ACKed');
  assert.ok(counterValue(after, NACKS, { type: 'listener' }) >= 1, 'the listener that cannot bind NACKed');
  // (The parser folds a labelled histogram's series into one, so only the family's type is checked here.)
  assert.equal(family(after, 'sluice_xds_push_to_ack_seconds').type, 'HISTOGRAM');
  assert.equal(histogramCount(after, 'sluice_config_commit_duration_seconds'), 2, 'both commits timed');
  assert.equal(counterValue(after, 'sluice_xds_streams', { group: 'default' }), 1, 'one stream');

  for (const name of ['sluice_authz_checks_total', 'sluice_authz_answers_cached_total', 'sluice_ratelimit_decisions_total', 'sluice_ratelimit_store_errors_total']) {
    assert.equal(family(after, name).type, 'COUNTER');
  }
  for (const name of ['sluice_authz_check_duration_seconds', 'sluice_ratelimit_store_duration_seconds']) {
    assert.equal(family(after, name).type, 'HISTOGRAM');
  }
});
