// JwtProvider: an issuer whose tokens the authz service accepts, and how to check them.
import { z } from 'zod';
import { HeaderNameSchema, NameSchema, oneOf } from './common.ts';

/** Asymmetric algorithms only: no 'none', and no HS* (a shared secret would have to live in config). */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const;

const JwkSchema = z.looseObject({ kty: z.string().min(1) });

/** An inline JSON Web Key Set, as a JSON object. */
export const JwksSchema = z.looseObject({ keys: z.array(JwkSchema).min(1).max(64) });

export const ClaimToHeaderSchema = z
  .object({
    /** Top-level claim name, or a dotted path into nested claims (e.g. `org.id`). */
    claim: z.string().min(1).max(256).regex(/^[^\s]+$/, 'must not contain whitespace'),
    header: HeaderNameSchema,
  })
  .strict();

export const JwtProviderSchema = z
  .object({
    name: NameSchema,
    issuer: z.string().min(1).max(1024),
    jwks_uri: z.url({ protocol: /^https?$/ }).max(2048).optional(),
    jwks: JwksSchema.optional(),
    /** Accepted `aud` values; empty means the audience is not checked. */
    audiences: z.array(z.string().min(1).max(1024)).max(32).default([]),
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
  .superRefine(oneOf(['jwks_uri', 'jwks']));

export type JwtProvider = z.infer<typeof JwtProviderSchema>;
export type JwtProviderInput = z.input<typeof JwtProviderSchema>;

/** Headers the authz service sets from claims (also stripped from client requests). */
export function claimHeaders(provider: JwtProvider): string[] {
  return provider.claims_to_headers.map((entry) => entry.header);
}
