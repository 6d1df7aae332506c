// Tokens whose signature and static claims (iss, aud, alg) already verified, so a
// client reusing its token does not pay for a signature check on every request
// (the same idea as Envoy jwt_authn's jwt_cache_config). An entry answers only for
// the exact token bytes, the same provider object (a new State makes new ones),
// the same key source and the same key-set generation; the time claims are
// re-checked on every use with jose's own rules, and anything short of a clean
// pass goes back through full verification, which gives the precise refusal.
import type { JWTPayload } from 'jose';
import type { JwtProvider } from '../model/index.ts';
import type { KeySource } from './jwks.ts';
import { setBounded } from './bounded.ts';

export interface VerifiedToken {
  /** The protected header's alg and the payload's iss: what provider selection reads. */
  alg: string;
  iss: string;
  provider: JwtProvider;
  source: KeySource;
  generation: number;
  claims: JWTPayload;
}

/** Bounded so memory stays flat whatever clients send; only verified tokens get in. */
export const MAX_VERIFIED_TOKENS = 4_096;

export class VerifiedTokens {
  private readonly entries = new Map<string, VerifiedToken>();

  constructor(private readonly max = MAX_VERIFIED_TOKENS) {}

  get size(): number {
    return this.entries.size;
  }

  get(token: string): VerifiedToken | undefined {
    return this.entries.get(token);
  }

  /** The entry when it still vouches for `token` under this provider and source at `nowMs`; else drops it. */
  valid(token: string, entry: VerifiedToken, provider: JwtProvider, source: KeySource, nowMs: number): boolean {
    const ok = entry.provider === provider && entry.source === source && entry.generation === source.generation && timesHold(entry.claims, provider.clock_skew_s, nowMs);
    if (!ok) this.entries.delete(token);
    return ok;
  }

  add(token: string, entry: VerifiedToken): void {
    setBounded(this.entries, token, entry, this.max);
  }

  clear(): void {
    this.entries.clear();
  }
}

/**
 * exp, nbf and iat against now, exactly as a full verification would pass them:
 * jose's rules for exp and nbf (whole seconds, clock tolerance) and jwt.ts's for
 * an iat in the future.
 */
function timesHold(claims: JWTPayload, skewS: number, nowMs: number): boolean {
  const now = Math.floor(nowMs / 1000);
  const { exp, nbf, iat } = claims;
  if (typeof exp !== 'number' || exp <= now - skewS) return false;
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now + skewS)) return false;
  if (iat !== undefined && (typeof iat !== 'number' || iat > nowMs / 1000 + skewS)) return false;
  return true;
}
