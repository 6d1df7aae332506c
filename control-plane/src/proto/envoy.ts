// Envoy's API, loaded at start-up from the .proto files that ship inside the
// @grpc/grpc-js-xds npm package (its deps/ folder). Nothing is copied into the
// repo. Field names keep Envoy's snake_case so code reads like Envoy's docs.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { ENVOY_PROTO_FILES } from './files.ts';

const require = createRequire(import.meta.url);
const xdsPackageDir = path.dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
const here = path.dirname(fileURLToPath(import.meta.url));

/** Folders searched for imports, in order: Sluice's own protos, then the package's. */
export const PROTO_INCLUDE_DIRS: readonly string[] = [
  path.resolve(here, '../../../proto'),
  ...['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((dir) =>
    path.join(xdsPackageDir, 'deps', dir),
  ),
  // google/protobuf/descriptor.proto, which protobufjs ships but does not preload.
  path.dirname(require.resolve('protobufjs/package.json')),
];


function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (path.isAbsolute(target) && existsSync(target)) return target;
    for (const dir of PROTO_INCLUDE_DIRS) {
      const candidate = path.join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync([...ENVOY_PROTO_FILES], { keepCase: true });
  root.resolveAll();
  return root;
}

export const envoyRoot: protobuf.Root = loadRoot();

const typeCache = new Map<string, protobuf.Type>();

/** The message type with this full name, e.g. `envoy.config.cluster.v3.Cluster`. */
export function messageType(fullName: string): protobuf.Type {
  let type = typeCache.get(fullName);
  if (!type) {
    type = envoyRoot.lookupType(fullName);
    typeCache.set(fullName, type);
  }
  return type;
}
