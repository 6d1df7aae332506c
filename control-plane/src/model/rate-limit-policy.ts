// RateLimitPolicy: how many requests per period, counted per which key.
import { z } from 'zod';
import { HeaderNameSchema, NameSchema, safeText } from './common.ts';

/** One dimension of a rate-limit key. */
export const RateLimitKeyPartSchema = z.union([
  z.enum(['route', 'consumer', 'client_ip']),
  z.object({ header: HeaderNameSchema }).strict(),
]);

export const RATE_LIMIT_PERIODS = ['second', 'minute', 'hour', 'day'] as const;
export type RateLimitPeriod = (typeof RATE_LIMIT_PERIODS)[number];

export const PERIOD_SECONDS: Readonly<Record<RateLimitPeriod, number>> = {
  second: 1,
  minute: 60,
  hour: 3_600,
  day: 86_400,
};

export const RateLimitPolicySchema = z
  .object({
    name: NameSchema,
    /** Requests are counted per distinct combination of these parts. */
    key: z
      .array(RateLimitKeyPartSchema)
      .min(1)
      .max(8)
      .superRefine((parts, ctx) => {
        const seen = new Set<string>();
        parts.forEach((part, index) => {
          const id = keyPartId(part);
          if (seen.has(id)) ctx.addIssue({ code: 'custom', path: [index], message: `duplicate key part '${id}'` });
          seen.add(id);
        });
      }),
    limit: z
      .object({
        requests: z.int().min(1).max(1_000_000_000),
        per: z.enum(RATE_LIMIT_PERIODS),
      })
      .strict(),
    /** Extra requests allowed above the limit in a short burst. */
    burst: z.int().min(0).max(1_000_000_000).optional(),
    algorithm: z.enum(['sliding_window', 'fixed_window']).default('sliding_window'),
  })
  .strict()
  .superRefine(safeText);

export type RateLimitPolicy = z.infer<typeof RateLimitPolicySchema>;
export type RateLimitPolicyInput = z.input<typeof RateLimitPolicySchema>;
export type RateLimitKeyPart = z.infer<typeof RateLimitKeyPartSchema>;

/** A stable string for one key part: 'route', 'consumer', 'client_ip' or 'header:<name>'. */
export function keyPartId(part: RateLimitKeyPart): string {
  return typeof part === 'string' ? part : `header:${part.header}`;
}
