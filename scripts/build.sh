#!/usr/bin/env bash
# Compiles the control plane to plain JavaScript in control-plane/dist
# (git-ignored), which production runs: `node control-plane/dist/start.js`
# (the entry module, which runs main.js; control-plane/src/start.ts says why).
# Running compiled code instead of `node --import tsx` saves tsx's loader
# thread and its transform caches (tens of MiB of RSS; bench/RESULTS.md).
#
#   bash scripts/build.sh              build now
#   bash scripts/build.sh --if-stale   build only if a source is newer than the last build
#
# dist mirrors control-plane/src at the same depth, so paths the code resolves
# from import.meta.url (migrations/, proto/, node_modules) are the same from
# both. Type errors are not checked here (npm run typecheck does).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=control-plane/dist
stamp="$out/.built"

# One build at a time (a test and a bench may both ask): lock a file we own anyway.
exec 9<tsconfig.build.json
flock 9

stale() {
  [[ ! -f "$stamp" ]] && return 0
  # A newer file, or a folder whose entries changed (a source added or deleted).
  [[ -n "$(find control-plane/src tsconfig.build.json tsconfig.json scripts/build.sh -newer "$stamp" -print -quit)" ]]
}
if [[ "${1:-}" == --if-stale ]] && ! stale; then exit 0; fi

# Built beside, then swapped in: a control plane running from dist never sees a half-written tree.
next=.tmp/build/next old=.tmp/build/old # .tmp/ is git-ignored
rm -rf "$next" "$old"
mkdir -p "$next"
touch "$next/.built" # stamped before compiling: a source saved meanwhile makes the next --if-stale build again
node_modules/.bin/tsc -p tsconfig.build.json --outDir "$next"
# The worker thread's entry. The source's worker-entry.mjs registers tsx for the
# worker (which does not inherit --import tsx); compiled code needs no loader,
# so the built entry loads the compiled worker directly.
[[ -f "$next/request-path/worker.js" ]] || { echo "build: request-path/worker.js missing" >&2; exit 1; }
[[ -f "$next/start.js" && -f "$next/main.js" ]] || { echo "build: the entry (start.js) or main.js missing" >&2; exit 1; }
printf '%s\n' "// Written by scripts/build.sh: the compiled worker needs no TypeScript loader." "await import('./worker.js');" > "$next/request-path/worker-entry.mjs"
[[ -d "$out" ]] && mv "$out" "$old"
mv "$next" "$out"
rm -rf "$old"
