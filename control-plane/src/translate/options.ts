// Deployment settings translation needs beyond the State.

/** A gRPC service Envoy calls: the cluster Sluice emits for it, and its address. */
export interface ServiceEndpoint {
  clusterName: string;
  host: string;
  port: number;
}

export interface TranslateOptions {
  listenerPort: number;
  /** Default 0.0.0.0. */
  listenerAddress?: string;
  /** The Sluice authz service; without it, routes that need auth answer 503 (fail closed). */
  authz?: ServiceEndpoint;
  /** The Sluice rate-limit service; without it, only the local shield limits apply. */
  ratelimit?: ServiceEndpoint & { domain: string };
}
