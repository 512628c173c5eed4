#!/usr/bin/env bash
# Install (if needed) and run the test suite.
#   bash scripts/test.sh                     # all tests
#   bash scripts/test.sh tests/browser -x    # any pytest arguments
# Set CI=true to make missing browser prerequisites an error instead of a skip.
# A full run (no arguments) then runs the kernel tests again on ipykernel 6
# (scripts/ipykernel6.sh, ~50 s); the first run expects ipykernel 7 (NNWIDGETS_EXPECT_IPYKERNEL).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" --test
cd "$ROOT"
echo "[test] ipykernel $("$ROOT/.venv/bin/python" -c 'import ipykernel; print(ipykernel.__version__)') in .venv" >&2
rc=0
NNWIDGETS_EXPECT_IPYKERNEL="${NNWIDGETS_EXPECT_IPYKERNEL:-7}" "$ROOT/.venv/bin/python" -m pytest -ra "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
    echo "[test] pytest collected no tests: treating as a failure" >&2
    exit 1
fi
# The kernel tests again on ipykernel 6 (full runs only; NNWIDGETS_SKIP_IPYKERNEL6=1 skips).
if [[ $# -eq 0 && "${NNWIDGETS_SKIP_IPYKERNEL6:-0}" != 1 ]]; then
    echo "[test] kernel tests on ipykernel 6 (scripts/ipykernel6.sh)" >&2
    rc6=0
    bash "$ROOT/scripts/ipykernel6.sh" || rc6=$?
    [[ $rc -eq 0 ]] && rc=$rc6
fi
exit $rc
