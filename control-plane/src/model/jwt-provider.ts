// JwtProvider: an issuer whose tokens the authz service accepts, and how to check them.
import { z } from 'zod';
import { ClaimHeaderNameSchema, NameSchema, boundedText, oneOf, safeText } from './common.ts';

/** Asymmetric algorithms only: no 'none', and no HS* (a shared secret would have to live in config). */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const;

/**
 * A JWK member value. Public JWK members (RFC 7517/7518: kty, kid, use, alg, n, e,
 * crv, x, y, x5c, key_ops, ...) are strings, lists of strings, or (ext) booleans;
 * nothing nests. Refusing deeper values keeps a hostile 10,000-level document a
 * 4xx that names the member instead of a deep walk anywhere downstream.
 */
const JwkMemberSchema = z.union([boundedText(16_384), z.boolean(), z.number(), z.array(boundedText(16_384)).max(16)], {
  error: 'JWK members must be strings, booleans, numbers or lists of strings',
});

const JwkSchema = z.object({ kty: boundedText(16).min(1) }).catchall(JwkMemberSchema);

/** An inline JSON Web Key Set, as a JSON object (RFC 7517 defines only `keys` at its top). */
export const JwksSchema = z.object({ keys: z.array(JwkSchema).min(1).max(64) }).strict();

export const ClaimToHeaderSchema = z
  .object({
    /** Top-level claim name, or a dotted path into nested claims (e.g. `org.id`). */
    claim: boundedText(256).min(1).regex(/^[^\s]+$/, 'must not contain whitespace'),
    /**
     * Set by the authz service and stripped from every client request gateway-wide,
     * so it cannot be a header the proxy, the client or the gateway owns (see
     * ClaimHeaderNameSchema); x-user-id and x-consumer-id are the identity headers
     * meant for claims (contract.ts), other x-sluice-* headers are auth's own.
     */
    header: ClaimHeaderNameSchema,
  })
  .strict();

export const JwtProviderSchema = z
  .object({
    name: NameSchema,
    issuer: boundedText(1024).min(1),
    jwks_uri: z.url({ protocol: /^https?$/ }).max(2048).optional(),
    jwks: JwksSchema.optional(),
    /** Accepted `aud` values; empty means the audience is not checked. */
    audiences: z.array(boundedText(1024).min(1)).max(32).default([]),
    algorithms: z
      .array(z.enum(JWT_ALGORITHMS))
      .min(1)
      .refine((algs) => new Set(algs).size === algs.length, { message: 'algorithms must be unique' })
      .default(['RS256']),
    clock_skew_s: z.int().min(0).max(300).default(30),
    claims_to_headers: z
      .array(ClaimToHeaderSchema)
      .max(32)
      .superRefine((entries, ctx) => {
        const seen = new Set<string>();
        entries.forEach((entry, index) => {
          if (seen.has(entry.header)) ctx.addIssue({ code: 'custom', path: [index, 'header'], message: `duplicate header '${entry.header}'` });
          seen.add(entry.header);
        });
      })
      .default([]),
  })
  .strict()
  .superRefine(safeText)
  .superRefine(oneOf(['jwks_uri', 'jwks']));

export type JwtProvider = z.infer<typeof JwtProviderSchema>;
export type JwtProviderInput = z.input<typeof JwtProviderSchema>;
