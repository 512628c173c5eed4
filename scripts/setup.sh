#!/usr/bin/env bash
# Create/refresh the project virtualenv (.venv) and install nnwidgets into it.
#
#   bash scripts/setup.sh           # runtime + demo extras (Voila, demo data)
#   bash scripts/setup.sh --test    # + test extras (pytest, JupyterLab, Notebook, Playwright)
#                                   #   and Debian's chromium for the browser tests
#
# Idempotent: re-running is cheap. The pip steps are skipped when pyproject.toml has not
# changed since the last successful run (set NNWIDGETS_FORCE_SETUP=1 to redo them).
# Environment: PYTHON (default python3) is used to create the venv.
set -euo pipefail

MODE=demo
for arg in "$@"; do
    case "$arg" in
        --test) MODE=test ;;
        --demo) MODE=demo ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
TORCH_PIN="torch==2.13.0"   # CPU build; plain `torch` would pull a multi-GB CUDA build

log() { echo "[setup] $*" >&2; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# 1. virtualenv ---------------------------------------------------------------------------
if [[ ! -x "$PY" ]]; then
    log "creating $VENV with ${PYTHON:-python3} ($("${PYTHON:-python3}" --version 2>&1))"
    "${PYTHON:-python3}" -m venv "$VENV" || die "could not create the virtualenv"
fi

# 2. Python packages (skipped when nothing changed) ------------------------------------------
stamp="$VENV/.nnwidgets-setup-$MODE"
want="$(cat pyproject.toml "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1) $TORCH_PIN"
up_to_date() {  # a [test] install also satisfies [demo]
    local f
    for f in "$stamp" "$VENV/.nnwidgets-setup-test"; do
        [[ -f "$f" && "$(cat "$f")" == "$want" ]] && return 0
    done
    return 1
}
installed=0
if [[ "${NNWIDGETS_FORCE_SETUP:-0}" != 1 ]] && up_to_date \
        && "$PY" -c 'import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ("torch", "nnwidgets"))))' 2>/dev/null; then
    log "python packages up to date ($MODE)"
else
    rm -f "$stamp"
    log "upgrading pip"
    "$PY" -m pip install -q --upgrade pip
    log "installing $TORCH_PIN (CPU)"
    "$PY" -m pip install -q "$TORCH_PIN"
    log "installing nnwidgets (editable) with extras [$MODE]"
    # The torch pin is repeated so the resolver can never swap torch for another build.
    "$PY" -m pip install -q "$TORCH_PIN" -e ".[$MODE]"
    installed=1
fi

# 3. Jupyter kernel: python3 must run this venv's interpreter ----------------------------
kernel_json="$VENV/share/jupyter/kernels/python3/kernel.json"
if [[ $installed == 1 ]] || ! grep -qF "\"$VENV/bin/python\"" "$kernel_json" 2>/dev/null; then
"$PY" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
"$PY" - "$VENV" <<'PYEOF' || die "the python3 kernelspec does not point at .venv (see above)"
import json, os, subprocess, sys
venv = os.path.abspath(sys.argv[1])  # not realpath: bin/python is a symlink out of the venv
out = subprocess.run([os.path.join(venv, "bin", "jupyter"), "kernelspec", "list", "--json"],
                     check=True, capture_output=True, text=True).stdout
spec = json.loads(out)["kernelspecs"].get("python3")
if spec is None:
    sys.exit("[setup] no python3 kernelspec found")
argv0 = spec["spec"]["argv"][0]
resource = os.path.abspath(spec["resource_dir"])
if not resource.startswith(venv + os.sep) or not os.path.abspath(argv0).startswith(venv + os.sep):
    sys.exit(f"[setup] python3 kernelspec at {resource} runs {argv0}, not the venv python")
PYEOF
fi
[[ $installed == 1 ]] && echo "$want" > "$stamp"

# 4. Chromium for the browser tests (test mode only) ------------------------------------
if [[ "$MODE" == test ]]; then
    if command -v chromium >/dev/null 2>&1; then
        log "chromium found: $(command -v chromium)"
    elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian chromium (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq chromium >/dev/null
        command -v chromium >/dev/null 2>&1 || die "apt-get installed chromium but it is not on PATH"
        log "chromium installed: $(command -v chromium)"
    else
        log "WARNING: 'chromium' is not on PATH and cannot be installed here (needs root + apt-get)."
        log "WARNING: browser tests will be skipped locally (and FAIL when CI is set)."
        log "WARNING: install it with: sudo apt-get install chromium"
    fi
fi
log "done ($MODE)"
