// Original file: node_modules/@grpc/grpc-js-xds/deps/envoy-api/envoy/config/listener/v3/udp_listener_config.proto


export interface ActiveRawUdpListenerConfig {
}

export interface ActiveRawUdpListenerConfig__Output {
}
