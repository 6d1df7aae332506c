#!/usr/bin/env bash
# Starts the whole stack on embedded defaults: embedded Postgres, the Sluice
# control plane (admin API :9080, xDS :18000), one Envoy (gateway :10000,
# admin :9901) and a demo upstream (:8000). Installs what it lacks first and
# (re)builds the compiled control plane when a source changed (scripts/setup.sh
# runs scripts/build.sh --if-stale); the control plane runs as production runs
# it, compiled JavaScript without tsx, through its entry module (the
# Dockerfile's CMD; control-plane/src/start.ts says why).
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SLUICE_SETUP_REDIS=0 bash scripts/setup.sh

data="${SLUICE_DATA_DIR:-$PWD/.data}"
mkdir -p "$data"
# Secrets made once per data folder and kept there (mode 600), never printed except the admin token.
[[ -s "$data/secret" ]] || (umask 077; head -c 48 /dev/urandom | base64 | tr -d '\n/+=' > "$data/secret")
[[ -s "$data/admin-token" ]] || (umask 077; echo "sla_$(head -c 32 /dev/urandom | base64 | tr -d '\n/+=')" > "$data/admin-token")
export SLUICE_DATA_DIR="$data"
export SLUICE_SECRET="${SLUICE_SECRET:-$(cat "$data/secret")}"
export SLUICE_BOOTSTRAP_TOKEN="${SLUICE_BOOTSTRAP_TOKEN:-$(cat "$data/admin-token")}"
token="$SLUICE_BOOTSTRAP_TOKEN"
admin="http://${ADMIN_HOST:-127.0.0.1}:${ADMIN_PORT:-9080}"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# The control plane's memory settings, as in the Dockerfile's ENV (why: there;
# test/unit/runtime-env.test.ts keeps them equal). The other node processes here
# inherit them, harmlessly.
export MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 NODE_OPTIONS=--expose-gc
node control-plane/dist/start.js & pids+=($!)
node --import tsx scripts/demo-upstream.ts & pids+=($!)
for _ in $(seq 1 100); do curl -fs "$admin/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
node --import tsx envoy/run.ts --node-id envoy-1 & pids+=($!)

cat <<MSG

Sluice is up.
  admin API   $admin   (docs: $admin/docs)
  gateway     http://127.0.0.1:${GATEWAY_PORT:-10000}
  admin token $token

Create an upstream and a route, then call it through Envoy:

  curl -s -X POST $admin/v1/upstreams -H "authorization: Bearer $token" -H 'content-type: application/json' \\
    -d '{"name":"demo","endpoints":[{"host":"127.0.0.1","port":8000}]}'
  curl -s -X POST "$admin/v1/routes?wait=applied" -H "authorization: Bearer $token" -H 'content-type: application/json' \\
    -d '{"name":"hello","match":{"path":{"prefix":"/hello"}},"action":{"upstream":"demo"}}'
  curl -s http://127.0.0.1:${GATEWAY_PORT:-10000}/hello

MSG
wait
