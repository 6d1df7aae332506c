// No Envoy outlives the test process that started it: the helper's registry
// kills them on SIGTERM, SIGINT, an uncaught exception and process.exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from '../helpers/net.ts';

const childScript = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../helpers/envoy-child.ts');

/** Alive and not a zombie (a killed Envoy reparented to a non-reaping init stays a zombie). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function startChild(mode: string): Promise<{ child: ChildProcess; envoyPid: number; exited: Promise<number | string | null> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  let out = '';
  let err = '';
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const envoyPid = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child printed no Envoy pid in 20 s; stderr: ${err}`)), 20_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /"envoyPid":(\d+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    void exited.then((how) => reject(new Error(`child exited (${how}) before printing a pid; stderr: ${err}`)));
  });
  return { child, envoyPid, exited };
}

async function assertGone(pid: number, withinMs = 5_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (isRunning(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL'); // don't leak it from this test either
      assert.fail(`Envoy ${pid} still running ${withinMs} ms after its parent went away`);
    }
    await sleep(50);
  }
  assert.throws(() => {
    process.kill(pid, 0);
    if (!isRunning(pid)) throw new Error('zombie');
  });
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`Envoy dies when its test process gets ${signal}`, async () => {
    const { child, envoyPid, exited } = await startChild('wait');
    assert.ok(isRunning(envoyPid), 'Envoy is running before the signal');
    child.kill(signal);
    assert.equal(await exited, signal, 'the child still dies of the signal');
    await assertGone(envoyPid);
  });
}

test('Envoy dies when its test process crashes', async () => {
  const { envoyPid, exited } = await startChild('crash');
  assert.equal(await exited, 1);
  await assertGone(envoyPid);
});

test('Envoy dies when its test process calls process.exit', async () => {
  const { envoyPid, exited } = await startChild('exit');
  assert.equal(await exited, 0);
  await assertGone(envoyPid);
});
