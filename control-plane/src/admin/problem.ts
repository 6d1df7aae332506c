// RFC 9457 problem+json for every error the admin API returns.
//
// Field paths in `errors[].path` are dotted, relative to the request body:
// `action.upstream` for a route body, `routes.0.action.upstream` for a whole
// declarative config, `limit` for a query parameter; '' means the body itself.
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import type { Issue } from '../model/index.ts';
import { StoreError, type StoreErrorCode } from '../store/config-store.ts';

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
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
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

export function sendProblem(reply: FastifyReply, status: number, detail: string, errors: ProblemField[] = []): FastifyReply {
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

// Codes that mean "Postgres is not there": Node socket errors, Prisma's
// connection errors (P1xxx, pool timeout), and Postgres connection/admin SQLSTATEs.
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH',
  'P1001', 'P1002', 'P1003', 'P1008', 'P1011', 'P1017', 'P2024',
  '57P01', '57P02', '57P03', '3D000', '08000', '08001', '08003', '08004', '08006',
]);
const UNAVAILABLE_NAMES = new Set(['PrismaClientInitializationError', 'PrismaClientRustPanicError']);
const UNAVAILABLE_MESSAGE = /DatabaseNotReachable|ConnectionClosed|SocketTimeout|DatabaseDoesNotExist|TooManyConnections|Can't reach database|Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect|does not exist|terminating connection/i;

/** True when `err` (or anything in its cause chain) says the database cannot be reached. */
export function isUnavailable(err: unknown, depth = 0): boolean {
  if (depth > 5 || typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown; meta?: unknown };
  if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true;
  if (typeof e.name === 'string' && UNAVAILABLE_NAMES.has(e.name)) return true;
  if (typeof e.message === 'string' && UNAVAILABLE_MESSAGE.test(e.message) && !(err instanceof StoreError)) return true;
  return isUnavailable(e.cause, depth + 1) || isUnavailable(e.meta, depth + 1);
}

function isFastifyError(err: unknown): err is FastifyError {
  return err instanceof Error && typeof (err as FastifyError).code === 'string' && (err as FastifyError).code.startsWith('FST_');
}

/** Maps anything thrown by a handler to a problem response; never a 500 for bad input. */
export function toProblem(err: unknown): { status: number; detail: string; errors: ProblemField[] } {
  if (err instanceof ProblemError) return { status: err.status, detail: err.message, errors: err.errors };
  if (err instanceof StoreError) {
    return { status: STORE_STATUS[err.code], detail: err.code === 'unavailable' ? 'store unavailable' : err.message, errors: fieldsFromIssues(err.issues) };
  }
  if (isUnavailable(err)) return { status: 503, detail: 'store unavailable: cannot reach Postgres', errors: [] };
  const status = (err as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // Fastify's own 4xx (bad JSON, body too large, unsupported media type): its message is safe to show.
    return { status, detail: isFastifyError(err) ? err.message : 'bad request', errors: [] };
  }
  return { status: 500, detail: 'internal error', errors: [] };
}

export function registerProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const { status, detail, errors } = toProblem(err);
    if (status >= 500 && status !== 503) request.log.error({ err }, 'admin request failed');
    return sendProblem(reply, status, detail, errors);
  });
  app.setNotFoundHandler((request, reply) => sendProblem(reply, 404, `no route for ${request.method} ${request.url.split('?')[0]}`));
}
