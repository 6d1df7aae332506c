#!/usr/bin/env bash
# Generates TypeScript declarations (types only) for the Envoy API messages
# Sluice uses, from the .proto files in @grpc/grpc-js-xds. Output is git-ignored
# and rebuilt on every `npm install`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
deps=node_modules/@grpc/grpc-js-xds/deps
out=control-plane/src/proto/generated
files=$(grep -oE "'(envoy|ratelimit)/[^']+\.proto'" control-plane/src/proto/files.ts | tr -d "'" | tr '\n' ' ')
rm -rf "$out"
node_modules/.bin/proto-loader-gen-types --keepCase --longs=String --enums=String --defaults --oneofs \
  --grpcLib=@grpc/grpc-js --includeComments=false \
  -I proto -I "$deps/envoy-api" -I "$deps/xds" -I "$deps/googleapis" -I "$deps/protoc-gen-validate" -I node_modules/protobufjs \
  --outDir="$out" $files >/dev/null
