// The six object kinds as the admin API names them: URL segment <-> store Kind,
// and the zod schema that validates a body of that kind.
import type { z } from 'zod';
import {
  ConsumerSchema, CredentialSchema, JwtProviderSchema, RateLimitPolicySchema, RouteSchema, UpstreamSchema, type Kind,
} from '../model/index.ts';
import type { ObjectSpec } from '../store/config-store.ts';

export interface KindInfo {
  kind: Kind;
  /** URL segment under /v1. */
  segment: string;
  /** Singular, for messages and OpenAPI. */
  singular: string;
  schema: z.ZodType<ObjectSpec, unknown>;
}

export const KIND_INFO: readonly KindInfo[] = [
  { kind: 'upstreams', segment: 'upstreams', singular: 'Upstream', schema: UpstreamSchema },
  { kind: 'routes', segment: 'routes', singular: 'Route', schema: RouteSchema },
  { kind: 'consumers', segment: 'consumers', singular: 'Consumer', schema: ConsumerSchema },
  { kind: 'credentials', segment: 'credentials', singular: 'Credential', schema: CredentialSchema },
  { kind: 'jwt_providers', segment: 'jwt-providers', singular: 'JwtProvider', schema: JwtProviderSchema },
  { kind: 'rate_limit_policies', segment: 'rate-limit-policies', singular: 'RateLimitPolicy', schema: RateLimitPolicySchema },
];
