// Allowed answers already given, as encoded CheckResponses. A client repeating
// its credential on a route gets the same answer until something it depends on
// changes, so the service hands back those bytes instead of deciding and encoding
// again (deciding and encoding were most of a check's CPU and garbage).
//
// What an answer depends on, and how each is covered:
// - the request: the route's context_extensions and the credential headers (and
//   the path, when the route takes its API key from the query) are the cache key;
//   a request carrying any other header the service reads (identity headers a
//   client sent, which the answer must remove) is never answered from here;
// - the State: one cache per index, replaced with it;
// - time: an answer stands from when it was decided until the credential's or
//   token's expiry (Validity.untilMs); a clock that steps back re-decides;
// - a JWT's key set: an answer stands only while its key source's generation is
//   the one the token was verified against.
// Only allows are kept: refusals are cheap to decide again, and keeping them
// would let a client fill the cache with junk.
import { createHmac, randomBytes } from 'node:crypto';
import { AUTHZ_CONTEXT, CREDENTIAL_HEADERS } from '../model/contract.ts';
import type { CheckedRequest, Validity } from './decide.ts';
import { setBounded } from './bounded.ts';

/** Bounded so memory stays flat whatever clients send. */
export const MAX_ANSWERS = 4_096;

export interface Answer {
  bytes: Uint8Array;
  /** The check's reason, for metrics (allow/<reason>). */
  reason: string;
  decidedAtMs: number;
  validity: Validity;
}

/**
 * Keys are an HMAC of the inputs under a per-process random key: the cache holds
 * no credential in the clear, and a key cannot be steered from outside.
 */
const KEY_SECRET = randomBytes(32);

export class AnswerCache {
  private readonly entries = new Map<string, Answer>();

  constructor(private readonly max = MAX_ANSWERS) {}

  get size(): number {
    return this.entries.size;
  }

  /** The answer for `key` when it still stands at `nowMs`; a stale one is dropped. */
  get(key: string, nowMs: number): Answer | undefined {
    const answer = this.entries.get(key);
    if (!answer) return undefined;
    if (stands(answer, nowMs)) return answer;
    this.entries.delete(key);
    return undefined;
  }

  /** Keeps `answer` if it stands now (a key set that changed while deciding voids it at once). */
  add(key: string, answer: Answer): void {
    if (!stands(answer, answer.decidedAtMs)) return;
    setBounded(this.entries, key, answer, this.max);
  }
}

function stands(answer: Answer, nowMs: number): boolean {
  const { validity } = answer;
  if (nowMs < answer.decidedAtMs || nowMs >= validity.untilMs) return false;
  return validity.keys === undefined || validity.keys.source.generation === validity.keys.generation;
}

const API_KEY_HEADER = CREDENTIAL_HEADERS.apiKey;
const AUTHORIZATION_HEADER = CREDENTIAL_HEADERS.authorization;

/**
 * The cache key for a request on a route, or undefined when the request may not
 * be answered from the cache (it carries a header other than the credential ones).
 * Every part is length-prefixed, so no two different inputs share a key.
 */
export function answerKey(request: CheckedRequest, context: Readonly<Record<string, string>>): string | undefined {
  let material = '';
  for (const name in request.headers) {
    if (name !== API_KEY_HEADER && name !== AUTHORIZATION_HEADER) return undefined;
  }
  material += part(request.headers[API_KEY_HEADER]) + part(request.headers[AUTHORIZATION_HEADER]);
  // The path matters only where the route reads its API key from the query.
  material += part(context[AUTHZ_CONTEXT.apiKeyQuery] === undefined ? undefined : request.path);
  for (const name in context) material += part(name) + part(context[name]);
  return createHmac('sha256', KEY_SECRET).update(material).digest('base64');
}

/** `-` for absent, else the length, a colon and the text. */
function part(value: string | undefined): string {
  return value === undefined ? '-' : `${value.length}:${value}`;
}
