// Original file: node_modules/@grpc/grpc-js-xds/deps/xds/xds/core/v3/authority.proto


export interface Authority {
  'name'?: (string);
}

export interface Authority__Output {
  'name': (string);
}
