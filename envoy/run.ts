// Runs one Envoy from the pinned install against a Sluice control plane:
//   node --import tsx envoy/run.ts [--node-id ID] [--group G] [--delta]
// Reads XDS_HOST / XDS_PORT (defaults 127.0.0.1:18000) and ENVOY_ADMIN_PORT (9901).
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { adsBootstrap } from './bootstrap.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    'node-id': { type: 'string', default: `envoy-${os.hostname()}-${process.pid}` },
    group: { type: 'string', default: 'default' },
    delta: { type: 'boolean', default: false },
  },
});

const bootstrap = adsBootstrap({
  nodeId: values['node-id']!,
  nodeCluster: values.group!,
  adsHost: process.env.XDS_HOST ?? '127.0.0.1',
  adsPort: Number(process.env.XDS_PORT ?? 18000),
  adminPort: Number(process.env.ENVOY_ADMIN_PORT ?? 9901),
  delta: values.delta!,
});
const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-envoy-'));
const file = path.join(dir, 'bootstrap.json');
writeFileSync(file, JSON.stringify(bootstrap, null, 2));

const binary = process.env.SLUICE_ENVOY_BIN ?? path.join(here, '.install/envoy/_bin/envoy');
const child = spawn(binary, ['-c', file, '--disable-hot-restart', '--concurrency', '2', '-l', process.env.ENVOY_LOG_LEVEL ?? 'warning'], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
