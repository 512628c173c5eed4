#!/usr/bin/env bash
# Install (if needed) and run the test suite.
#   bash scripts/test.sh                     # all tests
#   bash scripts/test.sh tests/browser -x    # any pytest arguments
# Set CI=true to make missing browser prerequisites an error instead of a skip.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" --test
cd "$ROOT"
rc=0
"$ROOT/.venv/bin/python" -m pytest -ra "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
    echo "[test] pytest collected no tests: treating as a failure" >&2
    exit 1
fi
exit $rc
