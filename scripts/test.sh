#!/usr/bin/env bash
# The whole test suite: installs what it lacks, type-checks, runs unit then e2e tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "== typecheck"
node_modules/.bin/tsc --noEmit -p tsconfig.json
echo "== tests"
node --import tsx --test --test-concurrency=1 --test-force-exit --test-timeout=300000 --test-reporter=spec \
  $(find test/unit test/e2e -name '*.test.ts' | sort)
