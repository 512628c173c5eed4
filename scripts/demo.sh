#!/usr/bin/env bash
# Install (if needed) and run the nnwidgets demo dashboard in Voila.
# Extra arguments are passed to `nnwidgets demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/nnwidgets" demo "$@"
