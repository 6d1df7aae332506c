// RFC 9457 problem+json for every error the admin API returns.
//
// Field paths in `errors[].path` are dotted, relative to the request body:
// `action.upstream` for a route body, `routes.0.action.upstream` for a whole
// declarative config, `limit` for a query parameter; '' means the body itself.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Issue } from '../model/index.ts';
import { StoreError, type StoreErrorCode } from '../store/config-store.ts';
import { Prisma } from '../store/prisma.ts';

export interface ProblemField {
  path: string;
  message: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: ProblemField[];
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  410: 'Gone',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Thrown by handlers (and commit plans) to answer with a problem. */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    detail: string,
    readonly errors: ProblemField[] = [],
  ) {
    super(detail);
    this.name = 'ProblemError';
  }
}

export function formatPath(path: readonly (string | number)[]): string {
  return path.map(String).join('.');
}

export function fieldsFromIssues(issues: readonly Issue[], prefix: readonly (string | number)[] = []): ProblemField[] {
  return issues.map((issue) => ({ path: formatPath([...prefix, ...issue.path]), message: issue.message }));
}

export function problem(status: number, detail: string, errors: ProblemField[] = []): Problem {
  const body: Problem = { type: 'about:blank', title: TITLES[status] ?? 'Error', status, detail };
  if (errors.length > 0) body.errors = errors;
  return body;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The problem this request was answered with, for the access log. */
    problem?: { status: number; fields: string[] };
  }
}

export function sendProblem(reply: FastifyReply, status: number, detail: string, errors: ProblemField[] = []): FastifyReply {
  reply.request.problem = { status, fields: errors.map((e) => e.path) };
  // Serialised by hand: fastify only auto-serialises objects for JSON content types.
  return reply.code(status).type('application/problem+json').send(JSON.stringify(problem(status, detail, errors)));
}

const STORE_STATUS: Record<StoreErrorCode, number> = {
  invalid: 422,
  not_found: 404,
  conflict: 409,
  precondition_failed: 412,
  unavailable: 503,
};

// "Store unavailable" is decided from error classes and codes, never from
// message text (a message like "relation ... does not exist" is a bug in us,
// a 500, not an outage): Prisma's connection error codes (P1xxx, pool
// timeout), the pg driver adapter's error kinds, Postgres SQLSTATEs for
// connection loss and shutdown, and Node's socket error codes.
const UNAVAILABLE_PRISMA_CODES = new Set(['P1001', 'P1002', 'P1003', 'P1008', 'P1010', 'P1011', 'P1017', 'P2024']);
const UNAVAILABLE_ADAPTER_KINDS = new Set([
  'DatabaseNotReachable', 'DatabaseDoesNotExist', 'DatabaseAccessDenied', 'AuthenticationFailed',
  'ConnectionClosed', 'SocketTimeout', 'TooManyConnections', 'TlsConnectionError',
]);
/** SQLSTATEs: class 08 (connection exception) plus these. */
const UNAVAILABLE_SQLSTATES = new Set(['3D000', '28000', '28P01', '53300', '57P01', '57P02', '57P03']);
const UNAVAILABLE_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
// The pg driver raises these connection-loss errors without any code or class
// of their own; they are its fixed messages, compared whole, on code-less errors only.
const PG_CODELESS_CONNECTION_ERRORS = new Set([
  'Connection terminated unexpectedly',
  'Connection terminated',
  'Connection terminated due to connection timeout',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
]);

function isUnavailableSqlState(code: unknown): boolean {
  return typeof code === 'string' && (code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(code));
}

/** The pg adapter's error description Prisma keeps in `meta.driverAdapterError.cause`. */
function adapterCause(meta: unknown): { kind?: unknown; code?: unknown; originalCode?: unknown } | undefined {
  if (typeof meta !== 'object' || meta === null) return undefined;
  const adapterError = (meta as { driverAdapterError?: unknown }).driverAdapterError;
  if (typeof adapterError !== 'object' || adapterError === null) return undefined;
  const cause = (adapterError as { cause?: unknown }).cause;
  return typeof cause === 'object' && cause !== null ? cause : undefined;
}

function adapterSaysUnavailable(cause: { kind?: unknown; code?: unknown; originalCode?: unknown } | undefined): boolean {
  if (!cause) return false;
  if (typeof cause.kind === 'string' && UNAVAILABLE_ADAPTER_KINDS.has(cause.kind)) return true;
  return isUnavailableSqlState(cause.originalCode) || (cause.kind === 'postgres' && isUnavailableSqlState(cause.code));
}

/** True when `err` (or anything in its cause chain) says the database cannot be reached. */
export function isUnavailable(err: unknown, depth = 0): boolean {
  if (depth > 5 || typeof err !== 'object' || err === null) return false;
  if (err instanceof StoreError) return err.code === 'unavailable';
  if (err instanceof Prisma.PrismaClientInitializationError || err instanceof Prisma.PrismaClientRustPanicError) return true;
  if (err instanceof Prisma.PrismaClientKnownRequestError) {
    return UNAVAILABLE_PRISMA_CODES.has(err.code) || adapterSaysUnavailable(adapterCause(err.meta));
  }
  const e = err as { code?: unknown; syscall?: unknown; severity?: unknown; message?: unknown; cause?: unknown; name?: unknown };
  // Node system errors carry a syscall; pg's DatabaseError carries a severity and SQLSTATE.
  if (typeof e.code === 'string' && typeof e.syscall === 'string' && UNAVAILABLE_SOCKET_CODES.has(e.code)) return true;
  if (typeof e.severity === 'string' && isUnavailableSqlState(e.code)) return true;
  if (e.name === 'DriverAdapterError' && adapterSaysUnavailable(e.cause as { kind?: unknown } | undefined)) return true;
  if (e.code === undefined && err instanceof Error && PG_CODELESS_CONNECTION_ERRORS.has(err.message)) return true;
  return isUnavailable(e.cause, depth + 1);
}

function isFastifyError(err: unknown): err is FastifyError {
  return err instanceof Error && typeof (err as FastifyError).code === 'string' && (err as FastifyError).code.startsWith('FST_');
}

/** The request part each of fastify's own 4xx errors is about ('' is the body). */
const FASTIFY_ERROR_FIELDS: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'Content-Type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'Content-Length',
  FST_ERR_CTP_BODY_TOO_LARGE: '',
  FST_ERR_CTP_EMPTY_JSON_BODY: '',
  FST_ERR_CTP_INVALID_JSON_BODY: '',
};

/** Maps anything thrown by a handler to a problem response; never a 500 for bad input. */
export function toProblem(err: unknown): { status: number; detail: string; errors: ProblemField[] } {
  if (err instanceof ProblemError) return { status: err.status, detail: err.message, errors: err.errors };
  if (err instanceof StoreError) {
    return { status: STORE_STATUS[err.code], detail: err.code === 'unavailable' ? 'store unavailable' : err.message, errors: fieldsFromIssues(err.issues) };
  }
  if (isUnavailable(err)) return { status: 503, detail: 'store unavailable: cannot reach Postgres', errors: [] };
  const status = (err as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // Fastify's own 4xx (body too large, unsupported media type): its message is safe to show.
    if (!isFastifyError(err)) return { status, detail: 'bad request', errors: [] };
    const field = FASTIFY_ERROR_FIELDS[err.code];
    return { status, detail: err.message, errors: field === undefined ? [] : [{ path: field, message: err.message }] };
  }
  return { status: 500, detail: 'internal error', errors: [] };
}

/** Logs a 5xx with its cause (error and stack); 4xx are logged by the access log. */
function logFailure(request: FastifyRequest, status: number, err: unknown): void {
  if (status >= 500) request.log.error({ err }, status === 503 ? 'admin request failed: store unavailable' : 'admin request failed');
}

export function registerProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const { status, detail, errors } = toProblem(err);
    logFailure(request, status, err);
    return sendProblem(reply, status, detail, errors);
  });
  app.setNotFoundHandler((request, reply) => sendProblem(reply, 404, `no route for ${request.method} ${clip(request.url.split('?')[0] ?? '')}`));
}

/** Shortens echoed client input so a 10 KB URL is not echoed back whole. */
export function clip(text: string, max = 120): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}
