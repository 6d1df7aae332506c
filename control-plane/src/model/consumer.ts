// Consumer: who calls the API. Credential: how a consumer proves it (an API key,
// generated and stored hashed by the server, or a JWT subject from a provider).
import { z } from 'zod';
import { NameSchema, boundedText, safeText } from './common.ts';

export const TagSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9._:/-]+$/, 'must be letters, digits and . _ : / -');

export const ConsumerSchema = z
  .object({
    name: NameSchema,
    tags: z
      .array(TagSchema)
      .max(64)
      .refine((tags) => new Set(tags).size === tags.length, { message: 'tags must be unique' })
      .default([]),
    metadata: z
      .record(boundedText(64).min(1), boundedText(1024))
      .refine((record) => Object.keys(record).length <= 64, { message: 'at most 64 metadata entries' })
      .default({}),
  })
  .strict()
  .superRefine(safeText);

export const CredentialSchema = z
  .object({
    name: NameSchema,
    consumer: NameSchema,
    kind: z.enum(['api_key', 'jwt_subject']),
    /** ISO 8601 date-time after which the credential is refused. */
    expires_at: z.iso.datetime({ offset: true }).optional(),
    /** For kind jwt_subject: the provider and the `sub` claim that identify the consumer. */
    jwt: z
      .object({ provider: NameSchema, subject: boundedText(512).min(1) })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine(safeText)
  .superRefine((credential, ctx) => {
    if (credential.kind === 'jwt_subject' && !credential.jwt) {
      ctx.addIssue({ code: 'custom', path: ['jwt'], message: 'kind jwt_subject needs jwt {provider, subject}' });
    }
    if (credential.kind === 'api_key' && credential.jwt) {
      ctx.addIssue({ code: 'custom', path: ['jwt'], message: 'jwt applies only to kind jwt_subject' });
    }
  });

export type Consumer = z.infer<typeof ConsumerSchema>;
export type ConsumerInput = z.input<typeof ConsumerSchema>;
export type Credential = z.infer<typeof CredentialSchema>;
export type CredentialInput = z.input<typeof CredentialSchema>;
