// Child process for test/e2e/envoy-cleanup.test.ts: starts one Envoy through the
// helper, prints `{"envoyPid":N}` on stdout, then waits to be killed. With the
// argument `crash` it throws an uncaught exception shortly after; with `exit`
// it calls process.exit(0) shortly after.
import { startEnvoy } from './envoy.ts';
import { freePort } from './net.ts';

const mode = process.argv[2] ?? 'wait';
// Nothing listens on this port: Envoy starts anyway and keeps retrying ADS.
const envoy = await startEnvoy({ adsPort: await freePort(), nodeId: `cleanup-${mode}` });
process.stdout.write(`${JSON.stringify({ envoyPid: envoy.pid })}\n`);

if (mode === 'crash') {
  setTimeout(() => {
    throw new Error('deliberate crash');
  }, 200);
} else if (mode === 'exit') {
  setTimeout(() => process.exit(0), 200);
}
// Otherwise the running Envoy child keeps the event loop alive until a signal.
