#!/usr/bin/env bash
# Installs the load tools and the reference rate-limit service the benches use,
# built from source with the Go toolchain into bench/.tools/bin (git-ignored).
# Idempotent: a tool already built at the pinned version is left alone.
#   vegeta        constant-rate HTTP load (authz and rate-limited route benches)
#   ghz           constant-rate gRPC load (rate-limit decision bench)
#   ratelimit     envoyproxy/ratelimit, the yardstick for Sluice's service
#   gcp-anchor    the reference control plane on go-control-plane
#                 (../shared/anchors/go-control-plane), the propagation yardstick
#   authz-floor   an ext_authz service that answers OK and nothing else (bench/authz-floor)
# Usage: bash bench/setup.sh        (FORCE=1 rebuilds everything)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$here/.tools"
bin="$tools/bin"

# Pinned so every run measures the same builds. The rate-limit service has no
# release tags, so it is pinned to a commit's pseudo-version.
VEGETA_VERSION="v12.13.0"
GHZ_VERSION="v0.93.0"
RATELIMIT_VERSION="v1.4.1-0.20260122083618-3fb702589d36"

if ! command -v go >/dev/null 2>&1; then
  echo "bench/setup.sh: no 'go' on PATH; install the Go toolchain (1.22 or newer) first" >&2
  exit 1
fi
echo "using $(go version)"

mkdir -p "$bin"
# Keep the build cache and module cache inside .tools, so the benches' builds do
# not depend on (or fill) the user's own Go folders.
export GOBIN="$bin"
export GOPATH="$tools/gopath"
export GOCACHE="$tools/gocache"
export GOFLAGS="-mod=mod -modcacherw"
export CGO_ENABLED=0

# install NAME PACKAGE VERSION: builds PACKAGE@VERSION as bin/NAME unless the
# stamp file says that version is already there.
install() {
  local name="$1" package="$2" version="$3"
  local stamp="$bin/.$name.version"
  if [[ -z "${FORCE:-}" && -x "$bin/$name" && -f "$stamp" && "$(cat "$stamp")" == "$package@$version" ]]; then
    echo "$name: $version already installed"
    return
  fi
  echo "$name: building $package@$version"
  go install "$package@$version"
  # The binary is named after the package's last element (a /vN suffix skipped).
  local base="${package%/v[0-9]*}"
  local built="$bin/${base##*/}"
  if [[ "$built" != "$bin/$name" ]]; then mv -f "$built" "$bin/$name"; fi
  echo "$package@$version" >"$stamp"
}

install vegeta github.com/tsenart/vegeta/v12 "$VEGETA_VERSION"
install ghz github.com/bojand/ghz/cmd/ghz "$GHZ_VERSION"
install ratelimit github.com/envoyproxy/ratelimit/src/service_cmd "$RATELIMIT_VERSION"

# The reference control plane is a module of its own beside the repository.
anchor_src="$here/../../shared/anchors/go-control-plane"
anchor_stamp="$bin/.gcp-anchor.version"
anchor_sum="$(cat "$anchor_src/go.sum" "$anchor_src/main.go" | sha256sum | cut -c1-16)"
if [[ -n "${FORCE:-}" || ! -x "$bin/gcp-anchor" || "$(cat "$anchor_stamp" 2>/dev/null)" != "$anchor_sum" ]]; then
  echo "gcp-anchor: building $anchor_src"
  (cd "$anchor_src" && GOFLAGS=-modcacherw go build -o "$bin/gcp-anchor" .)
  echo "$anchor_sum" >"$anchor_stamp"
else
  echo "gcp-anchor: already built"
fi

# authz-floor: a do-nothing ext_authz service (bench/authz-floor), the floor under
# the authz bench's Sluice arms.
floor_src="$here/authz-floor"
floor_stamp="$bin/.authz-floor.version"
floor_sum="$(cat "$floor_src/go.sum" "$floor_src/main.go" | sha256sum | cut -c1-16)"
if [[ -n "${FORCE:-}" || ! -x "$bin/authz-floor" || "$(cat "$floor_stamp" 2>/dev/null)" != "$floor_sum" ]]; then
  echo "authz-floor: building $floor_src"
  (cd "$floor_src" && go build -o "$bin/authz-floor" .)
  echo "$floor_sum" >"$floor_stamp"
else
  echo "authz-floor: already built"
fi

# The build cache is only needed while building (about 400 MB); the module cache
# stays, so FORCE=1 rebuilds without downloading again.
go clean -cache

echo "tools in $bin:"
ls -1 "$bin"
