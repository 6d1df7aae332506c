// The reference control plane (../shared/anchors/go-control-plane, built on
// envoyproxy/go-control-plane) that the propagation and ADS-stream benches run
// side by side with Sluice. bench/setup.sh builds it into bench/.tools/bin.
// Its HTTP API (see its README): POST/PUT /routes[?wait=acked&timeout=ms], GET /stats.
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort, sleep } from '../test/helpers/net.ts';
import { tool } from './load-tools.ts';

export interface AnchorRoute {
  name: string;
  prefix: string;
}

export interface AnchorStats {
  streams: number;
  rds_subscribed: number;
  rds_synced: number;
  nacks: number;
  version: number;
  routes: number;
  last_set_ms: number;
}

export interface Anchor {
  xdsPort: number;
  httpPort: number;
  gatewayPort: number;
  pid: number;
  /** Adds routes (replace: the whole route set); with wait, returns once every RDS stream ACKed. */
  apply(routes: AnchorRoute[], opts?: { replace?: boolean; wait?: boolean; timeoutMs?: number }): Promise<{ version: number; routes: number; acked?: boolean }>;
  stats(): Promise<AnchorStats>;
  stop(): Promise<void>;
}

export async function startAnchor(opts: { upstreamPort: number; gatewayPort?: number }): Promise<Anchor> {
  const [xdsPort, httpPort] = [await freePort(), await freePort()];
  const gatewayPort = opts.gatewayPort ?? (await freePort());
  const child: ChildProcess = spawn(
    tool('gcp-anchor'),
    ['-xds', `127.0.0.1:${xdsPort}`, '-http', `127.0.0.1:${httpPort}`, '-gateway-port', String(gatewayPort), '-upstream-port', String(opts.upstreamPort)],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-4_000)));
  const base = `http://127.0.0.1:${httpPort}`;
  const stats = async (): Promise<AnchorStats> => (await (await fetch(`${base}/stats`)).json()) as AnchorStats;
  for (let tries = 0; ; tries++) {
    if (child.exitCode !== null) throw new Error(`gcp-anchor exited ${child.exitCode}: ${stderr}`);
    try {
      await stats();
      break;
    } catch {
      if (tries > 200) throw new Error(`gcp-anchor did not answer on ${base}: ${stderr}`);
      await sleep(25);
    }
  }
  return {
    xdsPort,
    httpPort,
    gatewayPort,
    pid: child.pid!,
    async apply(routes, { replace = false, wait = false, timeoutMs = 60_000 } = {}) {
      const query = wait ? `?wait=acked&timeout=${timeoutMs}` : '';
      const res = await fetch(`${base}/routes${query}`, {
        method: replace ? 'PUT' : 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ routes }),
      });
      if (res.status !== 201) throw new Error(`gcp-anchor ${replace ? 'PUT' : 'POST'} /routes: ${res.status} ${await res.text()}`);
      return (await res.json()) as { version: number; routes: number; acked?: boolean };
    },
    stats,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5_000).then(() => child.kill('SIGKILL'))]);
    },
  };
}
