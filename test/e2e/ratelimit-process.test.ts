// The rate-limit service as its own process (control-plane/src/ratelimit/main.ts):
// State from a watched JSON file, counters in a real Redis, called by a real gRPC
// client; a changed limit in the file applies without a restart.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import type { RateLimitRequest, RateLimitResponse } from '../../control-plane/src/proto/codec.ts';
import { RATE_LIMIT_SERVICE_DEFINITION } from '../../control-plane/src/ratelimit/client.ts';
import { sleep } from '../helpers/net.ts';
import { startRedis, type TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let child: ChildProcess;
let dir: string;
let client: grpc.Client;
const stateFile = () => path.join(dir, 'state.json');

function writeState(revision: number, requests: number): void {
  const state = { revision, rate_limit_policies: [{ name: 'per-route', key: ['route'], limit: { requests, per: 'hour' } }] };
  // Write then rename, so the watcher never reads half a file.
  writeFileSync(`${stateFile()}.tmp`, JSON.stringify(state));
  renameSync(`${stateFile()}.tmp`, stateFile());
}

before(async () => {
  redis = await startRedis();
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-rls-'));
  writeState(1, 2);
  child = spawn(process.execPath, ['--import', 'tsx', 'control-plane/src/ratelimit/main.ts'], {
    env: { ...process.env, SLUICE_STATE_FILE: stateFile(), REDIS_URL: redis.url, SLUICE_RATELIMIT_PORT: '0', SLUICE_RATELIMIT_DOMAIN: 'sluice' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; port?: number };
      if (entry.msg === 'rate-limit service listening' && entry.port) resolve(entry.port);
    });
    child.once('exit', (code) => reject(new Error(`rate-limit process exited (${code})`)));
  });
  client = new (grpc.makeGenericClientConstructor(RATE_LIMIT_SERVICE_DEFINITION, 'RateLimitService'))(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

after(async () => {
  client?.close();
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  await redis?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function check(route: string): Promise<RateLimitResponse> {
  const req: RateLimitRequest = { domain: 'sluice', descriptors: [{ entries: [{ key: 'sluice_policy', value: 'per-route' }, { key: 'route', value: route }] }] };
  return new Promise((resolve, reject) => {
    const method = (client as unknown as Record<string, (r: RateLimitRequest, cb: (err: Error | null, res: RateLimitResponse) => void) => void>)['ShouldRateLimit']!;
    method.call(client, req, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

test('as its own process: counts in Redis from the State file, and a limit changed in the file applies without a restart', async () => {
  assert.deepEqual([(await check('a')).overall_code, (await check('a')).overall_code, (await check('a')).overall_code], ['OK', 'OK', 'OVER_LIMIT']);
  writeState(2, 4);
  // Poll until the new revision is in force: the same counter (2 used) now admits 2 more.
  const deadline = Date.now() + 15_000;
  while ((await check('a')).overall_code !== 'OK') {
    assert.ok(Date.now() < deadline, 'the raised limit applied');
    await sleep(100);
  }
  assert.equal((await check('a')).overall_code, 'OK');
  assert.equal((await check('a')).overall_code, 'OVER_LIMIT');
});
