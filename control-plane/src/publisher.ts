// Part of the composition root: turns each committed revision into a snapshot
// for the fleet. The change feed says a revision exists; the publisher loads
// the whole State once, translates it (pure) and hands the resources to the
// snapshot cache, which pushes only what changed. Bursts of revisions coalesce:
// at most one load runs at a time and the newest revision wins.
import type { State } from './model/index.ts';
import { createTranslationCache, translate, type TranslateOptions } from './translate/index.ts';
import { SnapshotCache } from './xds/cache.ts';
import { makeSnapshot } from './xds/snapshot.ts';
import type { Logger } from './xds/stream.ts';

export interface PublisherOptions {
  loadState: () => Promise<State>;
  cache: SnapshotCache;
  translateOptions: TranslateOptions;
  log: Logger;
}

export class Publisher {
  /** The newest revision handed to the cache. */
  published = -1;
  private wanted = 0;
  private running?: Promise<void>;
  private readonly translationCache = createTranslationCache();

  constructor(private readonly options: PublisherOptions) {}

  /** A revision was committed somewhere; publish it (or a newer one) soon. */
  notify(revision: number): void {
    this.wanted = Math.max(this.wanted, revision);
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (this.wanted > this.published) {
      try {
        const state = await this.options.loadState();
        this.publish(state);
        if (state.revision < this.wanted) this.wanted = state.revision; // the feed ran ahead of what we can read
      } catch (err) {
        // Postgres away: keep serving the last snapshot; the feed re-notifies on reconnect.
        this.options.log.warn('publisher: could not load state', { error: String(err) });
        return;
      }
    }
  }

  /** Translates a State and sets it as the fleet's snapshot. */
  publish(state: State): void {
    const started = performance.now();
    const resources = translate(state, this.options.translateOptions, this.translationCache);
    const snapshot = makeSnapshot(state.revision, [...resources.clusters, ...resources.endpoints, ...resources.listeners, ...resources.routes]);
    this.options.cache.setSnapshot(SnapshotCache.DEFAULT_GROUP, snapshot);
    this.published = Math.max(this.published, state.revision);
    this.options.log.info('publisher: published', { revision: state.revision, ms: Math.round(performance.now() - started) });
  }
}
