#!/usr/bin/env bash
# Run the kernel tests against ipykernel 6 (the project's .venv has the newest 7.x).
#   bash scripts/ipykernel6.sh            # build .venv-ipk6 if needed, run the kernel tests
#   bash scripts/ipykernel6.sh -x -k nbclient   # any pytest arguments, after the files
#
# .venv-ipk6 is a small venv that holds only ipykernel 6 (and nest_asyncio, which 6.x needs
# and 7.x dropped); everything else comes from .venv, added after it on sys.path by a .pth
# line (site.addsitedir, so .venv's own .pth files - the editable nnwidgets - work too). Its
# python therefore imports ipykernel 6 and the project's torch, ipywidgets, jupyter_client,
# and a kernel the tests start with sys.executable runs ipykernel 6. Cost: one ~1 s pip
# install the first time, then the test run itself.
# NNWIDGETS_EXPECT_IPYKERNEL=6 makes tests/test_kernel_output.py fail if the kernel it
# starts is not 6.x. Needs .venv (scripts/setup.sh --test) first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BASE="$ROOT/.venv/bin/python"
VENV="$ROOT/.venv-ipk6"
SPEC='ipykernel>=6.29,<7'
KERNEL_TESTS=(tests/test_kernel_output.py tests/test_magic.py tests/test_magic_frontends.py)
log() { echo "[ipykernel6] $*" >&2; }
[[ -x "$BASE" ]] || { log "ERROR: $BASE missing: run scripts/setup.sh --test first"; exit 1; }
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

base_site="$("$BASE" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV"
    "$BASE" -m venv --without-pip "$VENV"
fi
site6="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "import site; site.addsitedir('$base_site')" > "$site6/zz_nnwidgets_base_venv.pth"
if ! "$VENV/bin/python" - "$SPEC" <<'PYEOF' 2>/dev/null; then
import importlib.metadata as m, sys, os
from packaging.specifiers import SpecifierSet
dist = m.distribution("ipykernel")
ok = dist.version in SpecifierSet(sys.argv[1].split("ipykernel", 1)[1]) and str(dist.locate_file("")).startswith(sys.prefix)
import nest_asyncio  # noqa: F401 - ipykernel 6 imports it
sys.exit(0 if ok else 1)
PYEOF
    log "installing $SPEC into $VENV"
    "$BASE" -m pip install -q --no-deps --target "$site6" --upgrade "$SPEC" nest_asyncio
fi
version="$("$VENV/bin/python" -c 'import ipykernel; print(ipykernel.__version__, ipykernel.__file__)')"
log "ipykernel $version"
case "$version" in 6.*) ;; *) log "ERROR: expected ipykernel 6.x"; exit 1 ;; esac
export NNWIDGETS_EXPECT_IPYKERNEL=6
rc=0
"$VENV/bin/python" -m pytest -ra -p no:cacheprovider "${KERNEL_TESTS[@]}" "$@" || rc=$?
[[ $rc -eq 5 ]] && { log "pytest collected no tests: treating as a failure"; exit 1; }
exit $rc
