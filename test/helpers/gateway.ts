// A whole gateway for end-to-end tests: Sluice's ADS server, real Envoys (each in
// its own node group, so each gets its own listener port), and apply(state), which
// translates a State per Envoy, publishes it and waits until every Envoy holds it.
import net from 'node:net';
import { type State, type Issue, StateSchema, validateState } from '../../control-plane/src/model/index.ts';
import type { z } from 'zod';
import { translate, type TranslateOptions } from '../../control-plane/src/translate/index.ts';
import { SnapshotCache } from '../../control-plane/src/xds/cache.ts';
import { NodeRegistry } from '../../control-plane/src/xds/registry.ts';
import { AdsServer } from '../../control-plane/src/xds/server.ts';
import { makeSnapshot } from '../../control-plane/src/xds/snapshot.ts';
import { startEnvoy, type EnvoyHandle } from './envoy.ts';
import { freePort, sleep } from './net.ts';

export type StateInput = z.input<typeof StateSchema>;

export interface GatewayEnvoyOptions {
  nodeId: string;
  delta?: boolean;
  /** More Envoy command-line arguments (e.g. --file-flush-interval-msec). */
  extraArgs?: string[];
}

export interface GatewayEnvoy {
  handle: EnvoyHandle;
  /** The Envoy's HTTP listener port (on 127.0.0.1). */
  port: number;
  nodeId: string;
  /** The node group (Envoy's node.cluster) this Envoy's snapshots go to. */
  group: string;
  delta: boolean;
}

export interface Gateway {
  envoys: GatewayEnvoy[];
  /** Validates, translates once per Envoy, publishes, and resolves once every Envoy has synced `state.revision`. */
  apply(state: StateInput, opts?: { timeoutMs?: number }): Promise<State>;
  registry: NodeRegistry;
  server: AdsServer;
  cache: SnapshotCache;
  adsPort: number;
  stop(): Promise<void>;
}

export interface StartGatewayOptions {
  envoys: GatewayEnvoyOptions[];
  /** Extra translate options (edge limits, services); listenerPort/Address are set per Envoy. */
  translateOptions?: Omit<TranslateOptions, 'listenerPort' | 'listenerAddress'>;
}

/** Parses with the model's schemas (defaults filled in) and its cross-object rules; throws on any issue. */
export function parseTestState(input: StateInput): State {
  const parsed = StateSchema.safeParse(input);
  if (!parsed.success) throw new Error(`invalid test state: ${JSON.stringify(parsed.error.issues, null, 2)}`);
  const issues: Issue[] = validateState(parsed.data);
  if (issues.length > 0) throw new Error(`invalid test state: ${JSON.stringify(issues, null, 2)}`);
  return parsed.data;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(1_000, () => done(false));
  });
}

export async function startGateway(opts: StartGatewayOptions): Promise<Gateway> {
  const cache = new SnapshotCache();
  const registry = new NodeRegistry();
  const server = new AdsServer({ cache, registry, recordDeltaSends: true });
  const adsPort = await server.listen('127.0.0.1', 0);
  const envoys: GatewayEnvoy[] = [];
  let readyOnce = false;

  const stop = async (): Promise<void> => {
    await Promise.all(envoys.map((e) => e.handle.stop()));
    await server.close();
  };

  try {
    for (const spec of opts.envoys) {
      const group = `gw-${spec.nodeId}`;
      const port = await freePort();
      const handle = await startEnvoy({ adsPort, nodeId: spec.nodeId, nodeCluster: group, delta: spec.delta ?? false, extraArgs: spec.extraArgs });
      envoys.push({ handle, port, nodeId: spec.nodeId, group, delta: spec.delta ?? false });
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const apply = async (input: StateInput, applyOpts: { timeoutMs?: number } = {}): Promise<State> => {
    const state = parseTestState(input);
    for (const envoy of envoys) {
      const { listeners, routes, clusters, endpoints } = translate(state, { ...opts.translateOptions, listenerPort: envoy.port, listenerAddress: '127.0.0.1' });
      cache.setSnapshot(envoy.group, makeSnapshot(state.revision, [...listeners, ...routes, ...clusters, ...endpoints]));
    }
    const deadline = Date.now() + (applyOpts.timeoutMs ?? 15_000);
    for (;;) {
      const nodes = registry.list();
      const pending: string[] = [];
      for (const envoy of envoys) {
        if (envoy.handle.exited) throw new Error(`Envoy ${envoy.nodeId} exited\n${envoy.handle.logTail()}`);
        const node = nodes.find((n) => n.nodeId === envoy.nodeId);
        if (node?.lastNack && node.lastNack.revision === state.revision) {
          throw new Error(`Envoy ${envoy.nodeId} rejected revision ${state.revision} (${node.lastNack.typeUrl}): ${node.lastNack.message}`);
        }
        if (node?.syncedRevision !== state.revision) pending.push(`${envoy.nodeId} (at ${node?.syncedRevision ?? 'not connected'})`);
      }
      if (pending.length === 0) break;
      if (Date.now() >= deadline) {
        throw new Error(`revision ${state.revision} not synced within ${applyOpts.timeoutMs ?? 15_000} ms: ${pending.join(', ')}\n${envoys.map((e) => e.handle.logTail(10)).join('\n')}`);
      }
      await sleep(10);
    }
    if (!readyOnce) {
      // First config: the listener must be bound before tests send traffic.
      for (const envoy of envoys) {
        await envoy.handle.waitReady();
        await envoy.handle.waitFor(() => canConnect(envoy.port), 10_000, `listener ${envoy.port} accepting`);
      }
      readyOnce = true;
    }
    return state;
  };

  return { envoys, apply, registry, server, cache, adsPort, stop };
}
