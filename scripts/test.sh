#!/usr/bin/env bash
# One command: set up (first run only) and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements-dev.txt
# The browser tests drive Debian's chromium (never a downloaded browser build).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed: browser tests will skip"
fi
# The architecture first: formatting and lint (ruff, line length 120), the layer contracts
# (import-linter, see pyproject.toml) and no import cycles among core's modules.
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/lint-imports
if [ -f ../shared/tools/import_cycles.py ]; then
  .venv/bin/python ../shared/tools/import_cycles.py . core
fi
# nnU-Net, a benchmark dependency only (bench/vs_nnunet.py, tests/test_vs_nnunet.py): its own venv,
# which sees the product venv's packages through a .pth file (so torch is not installed twice) while
# its own pins (e.g. timm) stay apart from the product's. The product never imports it.
if [ ! -x .venv-nnunet/bin/python ] || [ ! -f ".venv-nnunet/.installed-$(sha256sum bench/requirements-nnunet.txt | cut -c1-12)" ]; then
  python3 -m venv .venv-nnunet
  .venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
    > "$(.venv-nnunet/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/segtune_product.pth"
  .venv-nnunet/bin/python -m pip install --quiet -r bench/requirements-nnunet.txt
  touch ".venv-nnunet/.installed-$(sha256sum bench/requirements-nnunet.txt | cut -c1-12)"
fi
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
# The compute_only tests (pure CPU work on their own temporary files: int8 for every architecture,
# ~10 min) run in a second process beside the rest of the suite, which spends much
# of its time waiting on servers, browsers and background workers. Their report follows the main one.
side_log=$(mktemp)
.venv/bin/python -m pytest -m compute_only -p no:cacheprovider > "$side_log" 2>&1 &
side=$!
status=0
.venv/bin/python -m pytest -m "not compute_only" || status=$?
side_status=0
wait "$side" || side_status=$?
echo "== the compute_only tests, run beside the others (exit status $side_status) =="
cat "$side_log"
[ "$status" -eq 0 ] && [ "$side_status" -eq 0 ]
