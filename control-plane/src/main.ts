// Composition root: validated config, wiring, signals, graceful shutdown.
//
//   Postgres (embedded or DATABASE_URL) -> migrations -> ConfigStore
//   change feed (LISTEN) -> Publisher (load State, translate) -> SnapshotCache
//   SnapshotCache + NodeRegistry -> ADS server (SotW + delta) -> Envoys
//   admin API (fastify) -> ConfigStore commits; fleet status from NodeRegistry
// Loaded after the entry (start.ts) has held the young generation (quiet-collector.ts).
import { holdYoungGeneration, quietCollector } from './quiet-collector.ts';
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { buildAdminApp } from './admin/app.ts';
import { configOrExit, type Config } from './config/env.ts';
import { createLog, createLogger, type Log } from './log.ts';
import { metricsArePublic } from './admin/metrics.ts';
import { Publisher } from './publisher.ts';
import { RequestPathWorker } from './request-path/host.ts';
import { requestPathState } from './request-path/protocol.ts';
import { ControlPlaneMetrics, exposeAuthz, exposeFleetTraffic, exposeRateLimit, metricsService } from './telemetry/index.ts';
import { clusterName } from './translate/names.ts';
import { LATENCY_BUCKETS_MS as AUTHZ_LATENCY_BUCKETS_MS } from './authz/metrics.ts';
import { STORE_LATENCY_BUCKETS_MS } from './ratelimit/metrics.ts';
import { ChangeFeed } from './store/change-feed.ts';
import { RolloutController } from './rollout/controller.ts';
import { FleetWindow } from './telemetry/fleet-window.ts';
import { ConfigStore } from './store/config-store.ts';
import { FleetStatusWriter, remoteFleetNodes, remoteNodesBehind } from './store/fleet-status.ts';
import { migrate } from './store/migrate.ts';
import { startDatabase } from './store/postgres.ts';
import { createPrisma, type PrismaClient } from './store/prisma.ts';
import { SnapshotCache } from './xds/cache.ts';
import { NodeRegistry } from './xds/registry.ts';
import { AdsServer } from './xds/server.ts';

/** The rate-limit domain Envoy's filter sends and the service answers for. */
const RATELIMIT_DOMAIN = 'sluice';

async function main(): Promise<void> {
  const config = configOrExit();
  const logger = createLogger(config.logLevel); // one pino logger: the admin API logs through it too
  const log = createLog(logger);
  const closers: Array<() => Promise<unknown>> = [];
  const shutdown = async (signal: string) => {
    log.info('sluice: shutting down', { signal });
    for (const close of closers.reverse()) await close().catch((err: unknown) => log.warn('sluice: close failed', { error: String(err) }));
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));

  const db = await startDatabase(config, { handleSignals: false });
  closers.push(() => db.stop());
  const migrated = await migrate(db.url);
  log.info('sluice: database ready', { embedded: config.databaseUrl === undefined, migrationsApplied: migrated.applied.length });

  const prisma = createPrisma(db.url);
  closers.push(() => prisma.$disconnect());
  await ensureBootstrapToken(prisma, config, log);
  const store = new ConfigStore(prisma, config.revisionHistory, (err) => log.warn('sluice: pruning revision history failed', { error: String(err) }), {
    // Retried by the next commit that is due one; until then a rebuild replays a little more.
    onCheckpointError: (err) => log.warn('sluice: writing a revision checkpoint failed', { error: String(err) }),
  });
  const stopPruning = store.startPruning(); // hourly; writes also trigger one every 50 commits
  closers.push(async () => stopPruning());

  const cache = new SnapshotCache();
  const registry = new NodeRegistry();
  // Node status shared with the other replicas through Postgres (batched; a lease per replica).
  const replicaId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const fleetStatus = new FleetStatusWriter({ prisma, replicaId, nodes: () => registry.list(), node: (streamId) => registry.get(streamId), log });
  registry.onChange((streamId) => fleetStatus.changed(streamId));
  await fleetStatus.start();
  closers.push(() => fleetStatus.stop());
  const telemetry = new ControlPlaneMetrics({ fleet: registry });
  // Fleet traffic: every Envoy's metrics_service stat sink streams to the xDS port
  // (envoy/bootstrap.ts); the rolling window serves /v1/.../stats, /metrics and rollouts.
  const fleetStats = new FleetWindow();
  exposeFleetTraffic(telemetry.registry, fleetStats);
  const ads = new AdsServer({
    cache, registry, log, observer: telemetry.xds, tls: config.xdsTls, limits: { maxReceiveBytes: config.xdsMaxReceiveBytes },
    services: [metricsService(fleetStats)],
  });
  const xdsPort = await ads.listen(config.xdsHost, config.xdsPort);
  closers.push(() => ads.close());
  const xdsSecurity = !config.xdsTls ? 'plaintext' : config.xdsTls.clientCa ? 'mutual TLS' : 'TLS without client certificates';
  log.info('sluice: xds listening', { host: config.xdsHost, port: xdsPort, security: xdsSecurity });
  if (!config.xdsTls?.clientCa && !['127.0.0.1', '::1', 'localhost'].includes(config.xdsHost)) {
    // Anyone who reaches the port can then claim any node id (SECURITY.md).
    log.warn('sluice: xds is reachable beyond loopback without client certificates; set XDS_TLS_CERT, XDS_TLS_KEY and XDS_CLIENT_CA', { host: config.xdsHost });
  }

  // The request-path services run on their own thread of this process by default
  // (request-path/host.ts), fed the same State as the fleet, before the fleet gets
  // it: a revoked key fails from that revision.
  const requestPath = await RequestPathWorker.start({
    log,
    authz: { host: config.authzHost, port: config.authzPort, ...(config.secret ? { secret: config.secret } : {}) },
    ratelimit: {
      host: config.ratelimitHost,
      port: config.ratelimitPort,
      ...(config.redisUrl ? { redisUrl: config.redisUrl } : {}),
      domain: RATELIMIT_DOMAIN,
      // Answer (allow or deny per policy) well before Envoy gives up on the service.
      storeTimeoutMs: Math.floor(config.ratelimitTimeoutMs / 2),
    },
  });
  closers.push(() => requestPath.close());
  holdYoungGeneration(); // V8 reset it when it created the worker's isolate
  const authzPort = requestPath.authzPort;
  // Their plain counters, fetched from the worker at each /metrics scrape.
  telemetry.refreshBeforeRender(() => requestPath.refreshMetrics());
  exposeAuthz(telemetry.registry, () => requestPath.metrics().authz, AUTHZ_LATENCY_BUCKETS_MS);
  exposeRateLimit(telemetry.registry, () => requestPath.metrics().ratelimit, STORE_LATENCY_BUCKETS_MS);
  log.info('sluice: request-path services listening', { authz: authzPort, ratelimit: requestPath.ratelimitPort, counters: config.redisUrl ? 'redis' : 'memory' });

  const collectAfterGrowth = quietCollector(log);
  closers.push(async () => collectAfterGrowth.stop());
  const publisher = new Publisher({
    loadState: () => store.loadState(),
    accept: ({ state, keys }) => {
      fleetStats.setKnown({ routes: routeNames(state.routes), clusters: new Map(state.upstreams.map((u) => [clusterName(u.name), u.name])) });
      return requestPath.install({ state: requestPathState(state), apiKeys: Object.entries(keys).map(([credential, key]) => ({ credential, keyHash: key.hash })) });
    },
    cache,
    translateOptions: {
      listenerPort: config.gatewayPort,
      listenerAddress: config.gatewayAddress,
      // Envoys dial the advertised address (a Service over every replica) when one is set.
      authz: {
        clusterName: 'sluice_authz',
        host: config.authzAdvertise.host ?? config.authzHost,
        port: config.authzAdvertise.port ?? authzPort,
        timeoutMs: config.authzTimeoutMs,
      },
      ratelimit: {
        clusterName: 'sluice_ratelimit',
        host: config.ratelimitAdvertise.host ?? config.ratelimitHost,
        port: config.ratelimitAdvertise.port ?? requestPath.ratelimitPort,
        domain: RATELIMIT_DOMAIN,
        timeoutMs: config.ratelimitTimeoutMs,
      },
      edge: config.gatewayEdge,
      routeStats: config.routeStats,
      accessLog: config.gatewayAccessLog,
      tracing: {
        samplingPercent: config.traceSamplingPercent,
        otlpCollector: config.otlpCollector && { clusterName: 'sluice_otlp_collector', ...config.otlpCollector },
      },
    },
    log,
    metrics: {
      translated: (ms) => telemetry.publisher.translated(ms),
      published: (revision, ms) => {
        telemetry.publisher.published(revision, ms);
        collectAfterGrowth.published();
      },
    },
  });
  // A commit through this replica goes to its fleet straight from memory; the
  // feed's NOTIFY for it then finds it published already.
  store.onCommitted((revision, snapshot) => {
    try {
      publisher.offer({ state: { revision, ...snapshot.config }, keys: snapshot.credential_keys });
    } catch (err) {
      // Same as a failed load: logged, and retried through the feed's path with backoff.
      log.warn('publisher: could not publish a local commit; retrying', { revision, error: String(err) });
      publisher.notify(revision);
    }
  });
  // Translated while the commit's fsync runs; used only once that config has committed.
  store.onPrepared((config) => publisher.prepare(config));
  const feed = new ChangeFeed(db.url);
  feed.on('revision', (revision) => publisher.notify(revision));
  feed.on('connected', (connected) => log.info('sluice: change feed', { connected }));
  await feed.start();
  closers.push(() => feed.stop());

  // Automated canary rollouts judge the fleet stats window. It must be the same
  // FleetWindow the metrics_service sink feeds (telemetry/metrics-sink.ts).
  const rollouts = new RolloutController({ prisma, store, stats: fleetStats, log });
  await rollouts.start(); // continues rollouts a previous process left running (rollout/controller.ts)
  closers.push(() => rollouts.stop());
  const admin = buildAdminApp({
    store, prisma, registry, secret: config.secret, logger, rollouts, serverTiming: config.serverTiming,
    sharedFleet: {
      replicaId,
      remote: () => remoteFleetNodes(prisma, replicaId),
      remoteBehind: (revision, localNodeIds) => remoteNodesBehind(prisma, replicaId, revision, localNodeIds),
    },
    readiness: { feedConnected: () => feed.connected, headRevision: () => store.currentRevision(), publishedRevision: () => publisher.published },
    metrics: { metrics: telemetry, public: metricsArePublic(config.adminHost, config.metricsPublic) },
    stats: { reader: fleetStats, exists: (kind, name) => fleetStats.exists(kind, name), windowMs: fleetStats.windowLengthMs, bucketMs: fleetStats.bucketWidthMs },
  });
  await admin.listen({ host: config.adminHost, port: config.adminPort });
  closers.push(() => admin.close());
  log.info('sluice: admin API listening', { host: config.adminHost, port: config.adminPort });
  collectAfterGrowth.startupDone();
}

/** Creates the first write token from SLUICE_BOOTSTRAP_TOKEN when no token exists yet. */
async function ensureBootstrapToken(prisma: PrismaClient, config: Config, log: Log): Promise<void> {
  if (!config.bootstrapToken) return;
  const tokenHash = createHash('sha256').update(config.bootstrapToken).digest('hex');
  if ((await prisma.adminToken.count()) > 0) return;
  await prisma.adminToken.create({ data: { name: 'bootstrap', tokenHash, role: 'write' } });
  log.info('sluice: bootstrap admin token created', { name: 'bootstrap' });
}

main().catch((err: unknown) => {
  process.stderr.write(`sluice: failed to start: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});

/** The routes' names, read only when the fleet window takes the revision in (not per publish). */
function* routeNames(routes: readonly { name: string }[]): Iterable<string> {
  for (const route of routes) yield route.name;
}
