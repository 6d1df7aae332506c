// Original file: node_modules/@grpc/grpc-js-xds/deps/envoy-api/envoy/extensions/common/ratelimit/v3/ratelimit.proto


export interface LocalClusterRateLimit {
}

export interface LocalClusterRateLimit__Output {
}
