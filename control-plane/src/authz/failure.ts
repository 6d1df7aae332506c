// Refusals and how they are told to the client: RFC 6750 challenges in
// WWW-Authenticate and a small JSON body. Descriptions are fixed strings from
// this service, never anything the client sent (no token or key is echoed).

export type BearerError = 'invalid_request' | 'invalid_token' | 'insufficient_scope';

export interface AuthFailure {
  status: 400 | 401 | 403;
  /** RFC 6750 error code; absent when the request carried no credential at all (RFC 6750 §3.1). */
  error?: BearerError;
  /** Human-readable, from a fixed vocabulary (RFC 6750 allows %x20-21 / %x23-5B / %x5D-7E). */
  description: string;
  /** Metrics reason, e.g. `token_expired`. */
  reason: string;
  /** For insufficient_scope: the scopes the route requires, space-separated. */
  scope?: string;
}

export const REALM = 'sluice';

export function missingCredential(): AuthFailure {
  return { status: 401, description: 'credentials are required', reason: 'missing_credential' };
}

export function invalidRequest(description: string, reason: string): AuthFailure {
  return { status: 400, error: 'invalid_request', description, reason };
}

export function invalidToken(description: string, reason: string): AuthFailure {
  return { status: 401, error: 'invalid_token', description, reason };
}

export function insufficientScope(required: readonly string[]): AuthFailure {
  return {
    status: 403,
    error: 'insufficient_scope',
    description: 'the credential lacks a required scope',
    reason: 'insufficient_scope',
    scope: [...required].sort().join(' '),
  };
}

/** A route whose settings the service cannot act on: refuse (fail closed). */
export function misconfigured(description: string): AuthFailure {
  return { status: 403, description, reason: 'route_misconfigured' };
}

/** Only characters RFC 6750 allows inside its quoted strings survive. */
function quoted(value: string): string {
  return `"${value.replace(/[^\x20\x21\x23-\x5B\x5D-\x7E]/g, '')}"`;
}

/** The WWW-Authenticate value for a failure (RFC 6750 §3). */
export function wwwAuthenticate(failure: AuthFailure): string {
  const params = [`realm=${quoted(REALM)}`];
  if (failure.error) {
    params.push(`error=${quoted(failure.error)}`, `error_description=${quoted(failure.description)}`);
  }
  if (failure.scope) params.push(`scope=${quoted(failure.scope)}`);
  return `Bearer ${params.join(', ')}`;
}

/** The JSON body of a refusal: `{ error, message }`. */
export function failureBody(failure: AuthFailure): string {
  const error = failure.error ?? (failure.status === 403 ? 'forbidden' : 'unauthorized');
  return JSON.stringify({ error, message: failure.description });
}
