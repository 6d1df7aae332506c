// Bearer-token auth for the admin API. Tokens are looked up by their SHA-256
// (a unique index), so no stored secret is ever compared byte by byte; the
// final equality check is constant-time anyway. Read tokens may only GET/HEAD.
//
// Verified tokens are cached briefly so read-only status (GET /v1/fleet) keeps
// working while Postgres is down; while Postgres is up every request re-checks
// the row, so a revocation takes effect on the next request.
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { rawRows, type PrismaClient } from '../store/prisma.ts';
import { isUnavailable, ProblemError } from './problem.ts';
import { markPhase } from './timing.ts';
import { type AdminRole, hashAdminToken, isAdminRole } from './tokens.ts';

export interface AdminPrincipal {
  name: string;
  role: AdminRole;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: AdminPrincipal;
  }
  interface FastifyContextConfig {
    /** GET/HEAD of this route need no token (set per deployment, e.g. /metrics on loopback). */
    publicRead?: boolean;
  }
}

const READ_METHODS = new Set(['GET', 'HEAD']);
const PUBLIC_PATHS = new Set(['/healthz']);
/** How long a verified token may be trusted without the database (reads only). */
const OFFLINE_GRACE_MS = 10 * 60_000;

interface TokenRow {
  name: string;
  role: string;
  tokenHash: string;
  revoked: boolean;
}

interface CachedToken extends AdminPrincipal {
  hash: string;
  verifiedAt: number;
}

export function registerAuth(app: FastifyInstance, prisma: PrismaClient): void {
  const cache = new Map<string, CachedToken>();

  async function lookup(hash: string, readOnly: boolean): Promise<AdminPrincipal | undefined> {
    try {
      // On every request: straight through the pool (rawRows), skipping Prisma's query pipeline (~1 ms of the 'auth' phase).
      const [row] = await rawRows<TokenRow>(
        prisma,
        'SELECT name, role, token_hash AS "tokenHash", revoked_at IS NOT NULL AS revoked FROM admin_tokens WHERE token_hash = $1',
        hash,
      );
      if (!row || row.revoked || !isAdminRole(row.role) || !sameHash(row.tokenHash, hash)) {
        cache.delete(hash);
        return undefined;
      }
      cache.set(hash, { name: row.name, role: row.role, hash, verifiedAt: Date.now() });
      return { name: row.name, role: row.role };
    } catch (err) {
      const cached = cache.get(hash);
      if (readOnly && isUnavailable(err) && cached && Date.now() - cached.verifiedAt < OFFLINE_GRACE_MS && sameHash(cached.hash, hash)) {
        return { name: cached.name, role: cached.role };
      }
      throw err;
    }
  }

  app.decorateRequest('principal', undefined);
  app.addHook('onRequest', async (request: FastifyRequest, reply) => {
    const path = request.url.split('?')[0] ?? '';
    if ((PUBLIC_PATHS.has(path) || request.routeOptions.config?.publicRead === true) && READ_METHODS.has(request.method)) return;
    const token = bearerToken(request.headers.authorization);
    if (!token) throw new ProblemError(401, 'missing bearer token (Authorization: Bearer <token>)', [{ path: 'Authorization', message: 'expected Bearer <token>' }]);
    const readOnly = READ_METHODS.has(request.method);
    markPhase(request, reply, 'pre-auth');
    const principal = await lookup(hashAdminToken(token), readOnly);
    markPhase(request, reply, 'auth');
    if (!principal) throw new ProblemError(401, 'invalid or revoked token', [{ path: 'Authorization', message: 'invalid or revoked token' }]);
    if (!readOnly && principal.role !== 'write') throw new ProblemError(403, `token '${principal.name}' has the read role; this request needs write`);
    request.principal = principal;
  });
}

function bearerToken(header: string | undefined): string | undefined {
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match?.[1];
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The actor recorded on revisions and audit rows. */
export function actorOf(request: FastifyRequest): string {
  return request.principal ? `token:${request.principal.name}` : 'anonymous';
}
