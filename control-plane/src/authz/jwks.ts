// Key sources for JWT verification: an inline JWKS, or a JWKS URL fetched and
// cached. The cached set follows the server's Cache-Control max-age (within
// bounds), is refreshed in the background before it goes stale, survives the
// endpoint being down, and is refetched on an unknown `kid` at most once per
// cooldown so a flood of made-up kids cannot hammer the identity provider.
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWSHeaderParameters, type FlattenedJWSInput } from 'jose';
import type { JwtProvider } from '../model/index.ts';
import type { AuthzMetrics } from './metrics.ts';
import { VerifiedTokens } from './verified-tokens.ts';

export interface JwksSettings {
  /** Lifetime of a fetched set when the response carries no max-age. */
  defaultTtlMs: number;
  /** max-age is clamped into [minTtlMs, maxTtlMs]. */
  minTtlMs: number;
  maxTtlMs: number;
  /** At most one unknown-kid refetch per provider in this window; also the retry delay after a failed fetch. */
  refetchCooldownMs: number;
  fetchTimeoutMs: number;
  /** A JWKS response larger than this is refused. */
  maxBytes: number;
}

export const DEFAULT_JWKS_SETTINGS: Readonly<JwksSettings> = Object.freeze({
  defaultTtlMs: 5 * 60_000,
  minTtlMs: 30_000,
  maxTtlMs: 24 * 3_600_000,
  refetchCooldownMs: 30_000,
  fetchTimeoutMs: 5_000,
  maxBytes: 512 * 1024,
});

/** Fraction of the lifetime after which the background refresh runs. */
const REFRESH_AT = 0.8;

type LocalSet = ReturnType<typeof createLocalJWKSet>;
export type VerificationKey = Awaited<ReturnType<LocalSet>>;

/** Raised when no key can be had for a token: the token cannot be verified (401). */
export class KeysUnavailableError extends Error {}

export interface KeySource {
  getKey(header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<VerificationKey>;
  /** Changes whenever the key set does, so a token verified under an older set is verified again. */
  readonly generation: number;
  close(): void;
}

export class InlineJwks implements KeySource {
  readonly generation = 0; // fixed keys: a change of the provider's jwks makes a new source
  private readonly local: LocalSet;
  constructor(jwks: JSONWebKeySet) {
    this.local = createLocalJWKSet(jwks);
  }
  getKey(header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<VerificationKey> {
    return this.local(header, token);
  }
  close(): void {}
}

export class RemoteJwks implements KeySource {
  generation = 0;
  private local: LocalSet | undefined;
  private staleAt = 0;
  private inflight: Promise<boolean> | undefined;
  private lastKidRefetchAt = Number.NEGATIVE_INFINITY;
  private lastFailureAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly provider: string,
    readonly uri: string,
    private readonly settings: JwksSettings,
    private readonly metrics: AuthzMetrics,
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts the first fetch in the background, so the first request rarely waits. */
  prefetch(): void {
    void this.refresh();
  }

  async getKey(header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<VerificationKey> {
    if (!this.local) {
      // Nothing cached yet: wait for a fetch, unless one failed moments ago.
      if (this.now() - this.lastFailureAt < this.settings.refetchCooldownMs && !this.inflight) throw new KeysUnavailableError('signing keys unavailable');
      await this.refresh();
      if (!this.local) throw new KeysUnavailableError('signing keys unavailable');
    } else if (this.now() >= this.staleAt) {
      void this.refresh(); // serve what we have; refresh behind it
    }
    try {
      return await this.local(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey) || !this.mayRefetchForKid()) throw err;
      // An unknown kid may be a rotation: look once more, then decide.
      this.lastKidRefetchAt = this.now();
      await this.refresh();
      return await this.local(header, token);
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private mayRefetchForKid(): boolean {
    return this.now() - this.lastKidRefetchAt >= this.settings.refetchCooldownMs;
  }

  /** One fetch at a time; resolves true when fresh keys were installed. */
  private refresh(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    this.inflight ??= this.fetchOnce().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async fetchOnce(): Promise<boolean> {
    try {
      const { jwks, ttlMs } = await this.download();
      this.local = createLocalJWKSet(jwks);
      this.generation += 1;
      this.staleAt = this.now() + ttlMs;
      this.metrics.recordJwksFetch(this.provider, 'ok');
      this.schedule(ttlMs * REFRESH_AT);
      return true;
    } catch {
      // Keep whatever keys we had; try again after the cooldown.
      this.lastFailureAt = this.now();
      this.metrics.recordJwksFetch(this.provider, 'error');
      this.schedule(this.settings.refetchCooldownMs);
      return false;
    }
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), Math.max(delayMs, 1)).unref();
  }

  private async download(): Promise<{ jwks: JSONWebKeySet; ttlMs: number }> {
    const response = await fetch(this.uri, {
      headers: { accept: 'application/json' },
      redirect: 'error',
      signal: AbortSignal.timeout(this.settings.fetchTimeoutMs),
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new Error(`JWKS answered ${response.status}`);
    }
    const text = await response.text();
    if (text.length > this.settings.maxBytes) throw new Error('JWKS too large');
    const jwks: unknown = JSON.parse(text);
    if (!isJwks(jwks)) throw new Error('not a JWKS');
    return { jwks, ttlMs: ttlFrom(response.headers.get('cache-control'), this.settings) };
  }
}

function isJwks(value: unknown): value is JSONWebKeySet {
  if (typeof value !== 'object' || value === null) return false;
  const keys = (value as { keys?: unknown }).keys;
  return Array.isArray(keys) && keys.every((key) => typeof key === 'object' && key !== null);
}

/** The set's lifetime from Cache-Control: max-age clamped to the bounds; no-store/no-cache -> the minimum. */
export function ttlFrom(cacheControl: string | null, settings: JwksSettings): number {
  const clamp = (ms: number) => Math.min(Math.max(ms, settings.minTtlMs), settings.maxTtlMs);
  if (!cacheControl) return clamp(settings.defaultTtlMs);
  const directives = cacheControl.toLowerCase().split(',').map((d) => d.trim());
  if (directives.some((d) => d === 'no-store' || d === 'no-cache')) return settings.minTtlMs;
  const maxAge = directives.map((d) => /^max-age=(\d{1,10})$/.exec(d)).find((m) => m !== null);
  return clamp(maxAge ? Number(maxAge[1]) * 1000 : settings.defaultTtlMs);
}

/**
 * Key sources per provider, rebuilt on each State but keeping a remote source
 * (and its cache) when the provider's jwks_uri did not change.
 */
export class KeySources {
  private sources = new Map<string, { fingerprint: string; source: KeySource }>();
  /** Tokens already verified under these sources; emptied with every State. */
  readonly verified = new VerifiedTokens();

  constructor(
    private readonly settings: JwksSettings,
    private readonly metrics: AuthzMetrics,
    private readonly now: () => number = Date.now,
  ) {}

  update(providers: readonly JwtProvider[]): void {
    this.verified.clear();
    const next = new Map<string, { fingerprint: string; source: KeySource }>();
    for (const provider of providers) {
      const fingerprint = JSON.stringify([provider.jwks_uri ?? null, provider.jwks ?? null]);
      const kept = this.sources.get(provider.name);
      if (kept && kept.fingerprint === fingerprint) {
        next.set(provider.name, kept);
        continue;
      }
      const source = this.create(provider);
      if (source) next.set(provider.name, { fingerprint, source });
    }
    for (const [name, entry] of this.sources) if (next.get(name) !== entry) entry.source.close();
    this.sources = next;
  }

  get(provider: string): KeySource | undefined {
    return this.sources.get(provider)?.source;
  }

  close(): void {
    for (const entry of this.sources.values()) entry.source.close();
    this.sources.clear();
    this.verified.clear();
  }

  private create(provider: JwtProvider): KeySource | undefined {
    if (provider.jwks) {
      try {
        return new InlineJwks(provider.jwks as JSONWebKeySet);
      } catch {
        return undefined; // a set jose cannot read verifies nothing
      }
    }
    if (!provider.jwks_uri) return undefined;
    const remote = new RemoteJwks(provider.name, provider.jwks_uri, this.settings, this.metrics, this.now);
    remote.prefetch();
    return remote;
  }
}
