// The in-memory index the Check service answers from: everything a request needs,
// keyed the way requests ask for it, built once per State revision.
import type { Consumer, Credential, JwtProvider, State } from '../model/index.ts';
import type { ApiKeyRecord } from './api-keys.ts';

/** The parts of a State the service reads (all it is handed when it runs in a worker). */
export type AuthzState = Pick<State, 'revision' | 'consumers' | 'credentials' | 'jwt_providers'>;

/** What the composition root hands the service on every revision. */
export interface AuthzInput {
  state: AuthzState;
  /** Hashes of the live API keys; a key absent here (revoked, deleted) fails. */
  apiKeys: readonly ApiKeyRecord[];
}

export interface ApiKeyEntry {
  keyHash: string;
  credential: Credential;
  consumer: Consumer;
}

export interface SubjectEntry {
  credential: Credential;
  consumer: Consumer;
}

export interface AuthzIndex {
  revision: number;
  /** API keys by their HMAC (hex). */
  apiKeys: ReadonlyMap<string, ApiKeyEntry>;
  providers: ReadonlyMap<string, JwtProvider>;
  /** jwt_subject credentials by provider name and `sub`. */
  subjects: ReadonlyMap<string, SubjectEntry>;
}

export function subjectKey(provider: string, subject: string): string {
  return `${provider}\0${subject}`;
}

/**
 * Builds the index. A key record whose credential is missing from the State, is
 * not an api_key credential, or names an unknown consumer is left out: the key
 * then fails like an unknown one.
 */
export function buildIndex(input: AuthzInput): AuthzIndex {
  const { state } = input;
  const consumers = new Map(state.consumers.map((c) => [c.name, c] as const));
  const credentials = new Map(state.credentials.map((c) => [c.name, c] as const));
  const apiKeys = new Map<string, ApiKeyEntry>();
  for (const record of input.apiKeys) {
    const credential = credentials.get(record.credential);
    const consumer = credential ? consumers.get(credential.consumer) : undefined;
    if (!credential || credential.kind !== 'api_key' || !consumer) continue;
    apiKeys.set(record.keyHash.toLowerCase(), { keyHash: record.keyHash.toLowerCase(), credential, consumer });
  }
  const subjects = new Map<string, SubjectEntry>();
  for (const credential of state.credentials) {
    const consumer = consumers.get(credential.consumer);
    if (credential.kind !== 'jwt_subject' || !credential.jwt || !consumer) continue;
    subjects.set(subjectKey(credential.jwt.provider, credential.jwt.subject), { credential, consumer });
  }
  return {
    revision: state.revision,
    apiKeys,
    providers: new Map(state.jwt_providers.map((p) => [p.name, p] as const)),
    subjects,
  };
}

/** True when the credential's expires_at is at or before `nowMs`. */
export function isExpired(credential: Credential, nowMs: number): boolean {
  return credential.expires_at !== undefined && Date.parse(credential.expires_at) <= nowMs;
}
