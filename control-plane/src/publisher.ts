// Part of the composition root: turns each committed revision into a snapshot
// for the fleet. A commit made in this process is handed over in memory
// (offer); a revision another replica committed arrives through the change
// feed (notify) and is loaded (the store catches up by change sets). Either
// way the State is translated (pure; unchanged routes reuse their bytes) and
// handed to the snapshot cache, which pushes only what changed. A local commit's
// config is translated while Postgres syncs it (prepare) and used only once it
// has committed. Bursts of revisions coalesce:
// at most one load runs at a time and the newest revision wins. A load that
// fails (Postgres away) is retried with jittered exponential backoff, so the
// revision is published as soon as Postgres answers again, without waiting for
// the feed to notify once more.
import { KINDS, type DeclarativeConfig, type State } from './model/index.ts';
import type { CredentialKey } from './store/config-store.ts';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from './store/backoff.ts';
import { createTranslationCache, translate, type EnvoyResources, type TranslateOptions } from './translate/index.ts';
import { SnapshotCache } from './xds/cache.ts';
import { makeSnapshot, type Snapshot } from './xds/snapshot.ts';
import type { Logger } from './xds/stream.ts';

/** One revision as the store gives it: the State and its credentials' key hashes. */
export interface LoadedRevision {
  state: State;
  keys: Record<string, CredentialKey>;
}

export interface PublisherOptions {
  loadState: () => Promise<LoadedRevision>;
  /**
   * Told of each revision before the fleet gets it (the request-path services take
   * it from here). When it returns a promise, the fleet gets the revision after it
   * settles: a key revoked in a revision fails at the services before any Envoy
   * has that revision. Translation runs meanwhile.
   */
  accept?: (revision: LoadedRevision) => void | Promise<void>;
  cache: SnapshotCache;
  translateOptions: TranslateOptions;
  log: Logger;
  /** Delays between retries of a failed load. */
  retryBackoff?: BackoffPolicy;
  /** Timings and the published revision (telemetry/'s PublisherMetrics fits). */
  metrics?: { translated(ms: number): void; published(revision: number, ms: number): void };
}

export class Publisher {
  /** The newest revision handed to the cache. */
  published = -1;
  /** The newest revision offered (its accept may still be running), and when it is in the cache. */
  private offered = -1;
  private offering: Promise<void> = Promise.resolve();
  private wanted = 0;
  private running?: Promise<void>;
  /** Failed loads in a row (drives the retry backoff). */
  private failures = 0;
  private retryTimer?: NodeJS.Timeout;
  private stopped = false;
  private readonly translationCache = createTranslationCache();
  /** A config translated ahead of its commit (see prepare): used when that very config is offered. */
  private prepared?: { config: DeclarativeConfig; resources?: EnvoyResources; timer?: NodeJS.Immediate };

  constructor(private readonly options: PublisherOptions) {}

  /** A revision was committed somewhere; publish it (or a newer one) soon. */
  notify(revision: number): void {
    this.wanted = Math.max(this.wanted, revision);
    // News from the feed usually means Postgres is back: try now rather than at the retry.
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.kick();
  }

  /**
   * A local commit is on its way to Postgres with this config: translate it
   * meanwhile (on the next turn of the event loop, once the commit's statement
   * is written out), so the fleet gets it as soon as the commit is durable
   * instead of a translation later. Nothing is published here: offer() uses the
   * result only for a revision whose config is this same object set, and a
   * config that never commits is simply replaced by the next one. Translation
   * is pure, so the result is what offer() would compute itself.
   */
  prepare(config: DeclarativeConfig): void {
    if (this.stopped) return;
    this.dropPrepared();
    const prepared: NonNullable<Publisher['prepared']> = { config };
    prepared.timer = setImmediate(() => {
      prepared.timer = undefined;
      try {
        prepared.resources = this.translateTimed({ revision: 0, ...config });
      } catch {
        // offer() translates again and reports the failure where it is handled.
        if (this.prepared === prepared) this.prepared = undefined;
      }
    });
    this.prepared = prepared;
  }

  /** Cancels a pending retry; nothing is loaded after this. */
  stop(): void {
    this.stopped = true;
    this.dropPrepared();
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private kick(): void {
    if (this.stopped) return;
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (this.wanted > this.published && !this.stopped) {
      try {
        const loadStarted = performance.now();
        const loaded = await this.options.loadState();
        this.failures = 0;
        await this.offer(loaded, loadStarted);
        if (loaded.state.revision < this.wanted) this.wanted = loaded.state.revision; // the feed ran ahead of what we can read
      } catch (err) {
        // Postgres away: keep serving the last snapshot and try again later.
        this.failures += 1;
        const retryInMs = backoffDelay(this.failures, this.options.retryBackoff ?? DEFAULT_BACKOFF);
        this.options.log.warn('publisher: could not load state', { error: String(err), retryInMs });
        this.scheduleRetry(retryInMs);
        return;
      }
    }
  }

  private scheduleRetry(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, delayMs);
    this.retryTimer.unref(); // never what keeps a process alive
  }

  /**
   * Publishes a revision unless a newer one is out (or on its way) already: a load
   * that raced a local commit must not take the fleet back. Resolves when the
   * revision (or the newer one) is in the cache.
   */
  offer(loaded: LoadedRevision, loadStarted?: number): Promise<void> {
    if (loaded.state.revision <= this.published) return Promise.resolve();
    if (loaded.state.revision <= this.offered) return this.offering;
    this.offered = loaded.state.revision;
    const accepted = this.options.accept?.(loaded);
    const started = performance.now();
    const snapshot = this.translate(loaded.state);
    const install = () => this.install(loaded.state.revision, snapshot, loadStarted ?? started, started);
    if (!accepted) {
      install(); // throws to the caller, who retries
      return (this.offering = Promise.resolve());
    }
    const revision = loaded.state.revision;
    this.offering = accepted
      .then(install, (err: unknown) => {
        this.options.log.warn('publisher: the request-path services did not take the revision; publishing it anyway', { revision, error: String(err) });
        install();
      })
      .catch((err: unknown) => {
        // As a failed load: logged, and retried through the feed's path with backoff.
        this.options.log.warn('publisher: could not publish; retrying', { revision, error: String(err) });
        this.offered = this.published;
        this.notify(revision);
      });
    return this.offering;
  }

  private translate(state: State): Snapshot {
    const resources = this.preparedFor(state) ?? this.translateTimed(state);
    return makeSnapshot(state.revision, [...resources.clusters, ...resources.endpoints, ...resources.listeners, ...resources.routes, ...resources.ratelimitConfigs]);
  }

  private translateTimed(state: State): EnvoyResources {
    const started = performance.now();
    const resources = translate(state, this.options.translateOptions, this.translationCache);
    this.options.metrics?.translated(performance.now() - started);
    return resources;
  }

  /**
   * The prepared translation when `state` is the prepared config (the same
   * frozen arrays of every kind: the store hands the committed config over as
   * it was prepared); translated now if it is still waiting for its turn. The
   * preparation is used up either way.
   */
  private preparedFor(state: State): EnvoyResources | undefined {
    const prepared = this.prepared;
    if (!prepared || !KINDS.every((kind) => prepared.config[kind] === state[kind])) return undefined;
    this.dropPrepared();
    return prepared.resources ?? this.translateTimed(state);
  }

  private dropPrepared(): void {
    if (this.prepared?.timer) clearImmediate(this.prepared.timer);
    this.prepared = undefined;
  }

  /** Hands the snapshot to the cache unless a newer one got there first. */
  private install(revision: number, snapshot: Snapshot, loadStarted: number, translateStarted: number): void {
    if (revision <= this.published) return;
    this.options.cache.setSnapshot(SnapshotCache.DEFAULT_GROUP, snapshot);
    this.published = revision;
    this.options.metrics?.published(revision, performance.now() - loadStarted);
    this.options.log.info('publisher: published', { revision, ms: Math.round(performance.now() - translateStarted) });
  }
}
