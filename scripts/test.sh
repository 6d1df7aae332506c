#!/usr/bin/env bash
# The whole test suite: installs what it lacks, type-checks, runs unit then e2e tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "== typecheck"
node_modules/.bin/tsc --noEmit -p tsconfig.json
echo "== tests"
# A bounded run: a test that leaves a handle open must not hold CI for its whole limit.
timeout --signal=TERM 1500 node --import tsx --test --test-concurrency=1 --test-timeout=300000 --test-reporter=spec \
  $(find test/unit test/e2e -name '*.test.ts' | sort)
