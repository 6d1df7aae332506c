// JWT verification with jose: pick the provider by `iss` among those the route
// allows, enforce its algorithm allowlist before any key is looked up, then the
// signature and the registered claims with the provider's clock skew.
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from 'jose';
import type { JwtProvider } from '../model/index.ts';
import { invalidToken, type AuthFailure } from './failure.ts';
import { KeysUnavailableError, type KeySource, type KeySources } from './jwks.ts';

/** Longer tokens are refused before any parsing. */
const MAX_TOKEN_LENGTH = 16 * 1024;
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** A pass names the key source and its key-set generation it was verified against (a later key change voids it). */
export type JwtResult = { ok: true; provider: JwtProvider; claims: JWTPayload; source: KeySource; generation: number } | { ok: false; failure: AuthFailure };

const fail = (description: string, reason: string): JwtResult => ({ ok: false, failure: invalidToken(description, reason) });

interface Unverified {
  alg: string;
  iss: string;
}

function peek(token: string): Unverified | undefined {
  if (token.length > MAX_TOKEN_LENGTH || !JWS_COMPACT.test(token)) return undefined;
  try {
    const header = decodeProtectedHeader(token);
    const payload = decodeJwt(token);
    if (typeof header.alg !== 'string' || typeof payload.iss !== 'string') return undefined;
    return { alg: header.alg, iss: payload.iss };
  } catch {
    return undefined;
  }
}

/**
 * Verifies `token` against the route's allowed providers. `allProviders` only
 * tells "an issuer this route does not accept" from "an unknown issuer".
 */
export async function verifyJwt(
  token: string,
  allowed: readonly JwtProvider[],
  allProviders: Iterable<JwtProvider>,
  sources: KeySources,
  nowMs: number,
): Promise<JwtResult> {
  // A token seen before is not decoded again: its entry holds what peek would read.
  const seen = sources.verified.get(token);
  const unverified = seen ?? peek(token);
  if (!unverified) return fail('the token is malformed', 'token_malformed');
  const candidates = allowed.filter((p) => p.issuer === unverified.iss);
  if (candidates.length === 0) {
    const known = [...allProviders].some((p) => p.issuer === unverified.iss);
    return known ? fail('the token issuer is not accepted on this route', 'provider_not_allowed') : fail('the token issuer is not trusted', 'issuer_unknown');
  }
  const provider = candidates.find((p) => (p.algorithms as readonly string[]).includes(unverified.alg));
  if (!provider) return fail('the token algorithm is not allowed', 'alg_not_allowed');
  const source = sources.get(provider.name);
  if (!source) return fail('the signing keys are unavailable', 'keys_unavailable');
  if (seen && sources.verified.valid(token, seen, provider, source, nowMs)) return { ok: true, provider, claims: seen.claims, source, generation: seen.generation };
  const generation = source.generation;
  try {
    const { payload } = await jwtVerify(token, (header, jws) => source.getKey(header, jws), {
      issuer: provider.issuer,
      audience: provider.audiences.length > 0 ? provider.audiences : undefined,
      algorithms: [...provider.algorithms],
      clockTolerance: provider.clock_skew_s,
      currentDate: new Date(nowMs),
      requiredClaims: ['exp'],
    });
    // jose checks iat only together with maxTokenAge; a token from the future is refused here.
    if (typeof payload.iat === 'number' && payload.iat > nowMs / 1000 + provider.clock_skew_s) {
      return fail('the token was issued in the future', 'token_iat_future');
    }
    // Remembered only when the key set did not change while this token was checked.
    if (source.generation === generation) {
      sources.verified.add(token, { alg: unverified.alg, iss: unverified.iss, provider, source, generation, claims: payload });
    }
    return { ok: true, provider, claims: payload, source, generation };
  } catch (err) {
    return { ok: false, failure: failureFor(err) };
  }
}

function failureFor(err: unknown): AuthFailure {
  if (err instanceof errors.JWTExpired) return invalidToken('the token has expired', 'token_expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
        return invalidToken('the token is not valid yet', 'token_not_yet_valid');
      case 'aud':
        return invalidToken('the token audience is not accepted', 'audience');
      case 'iss':
        return invalidToken('the token issuer is not trusted', 'issuer_unknown');
      case 'exp':
        return invalidToken('the token has no valid expiry', 'token_claims');
      default:
        return invalidToken('the token claims are not valid', 'token_claims');
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return invalidToken('the token algorithm is not allowed', 'alg_not_allowed');
  if (err instanceof errors.JWSSignatureVerificationFailed) return invalidToken('the token signature is not valid', 'signature');
  if (err instanceof errors.JWKSNoMatchingKey) return invalidToken('no signing key matches the token', 'unknown_kid');
  if (err instanceof KeysUnavailableError) return invalidToken('the signing keys are unavailable', 'keys_unavailable');
  return invalidToken('the token could not be verified', 'token_invalid');
}

/** Scopes granted by the token: `scope` (space-separated) and `scp` (array or string). */
export function tokenScopes(claims: JWTPayload): string[] {
  const scopes = new Set<string>();
  const add = (value: unknown) => {
    if (typeof value === 'string') for (const s of value.split(' ')) if (s) scopes.add(s);
  };
  add(claims.scope);
  const scp = claims.scp;
  if (Array.isArray(scp)) scp.forEach(add);
  else add(scp);
  return [...scopes].sort();
}

/** A claim by top-level name or dotted path (`org.id`). */
export function claimAt(claims: JWTPayload, path: string): unknown {
  if (Object.hasOwn(claims, path)) return claims[path];
  let value: unknown = claims;
  for (const part of path.split('.')) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}
