// Admin API tokens: random bearer tokens, stored only as SHA-256 hex in
// admin_tokens. SHA-256 (not a slow KDF) is enough because the tokens carry
// 256 bits of randomness; the hash just keeps a database leak from being a login.
import { createHash, randomBytes } from 'node:crypto';
import type { PrismaClient } from '../store/prisma.ts';

export type AdminRole = 'read' | 'write';

export const ADMIN_ROLES: readonly AdminRole[] = ['read', 'write'];

const TOKEN_PREFIX = 'sat_';

export function hashAdminToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export interface CreatedAdminToken {
  id: string;
  name: string;
  role: AdminRole;
  /** The token itself: shown once, never stored. */
  token: string;
}

/** Creates a token and returns it; only its hash is kept. */
export async function createAdminToken(prisma: PrismaClient, name: string, role: AdminRole): Promise<CreatedAdminToken> {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const row = await prisma.adminToken.create({ data: { name, role, tokenHash: hashAdminToken(token) }, select: { id: true } });
  return { id: row.id, name, role, token };
}

/** Marks every live token with this name revoked; returns how many. */
export async function revokeAdminTokens(prisma: PrismaClient, name: string): Promise<number> {
  const result = await prisma.adminToken.updateMany({ where: { name, revokedAt: null }, data: { revokedAt: new Date() } });
  return result.count;
}

export function isAdminRole(value: string): value is AdminRole {
  return (ADMIN_ROLES as readonly string[]).includes(value);
}
