#!/usr/bin/env bash
# One command from a fresh checkout to a running dashboard on http://localhost:8501: creates .venv
# and installs the pinned requirements on first use (again when they change), then serves SegTune.
# Workspace: $SEGTUNE_HOME (default ~/.segtune). Password for network use: $SEGTUNE_PASSWORD.
# Extra arguments go to `streamlit run`, e.g. --server.port 8600.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt
# A first start opens on something to tune: the generated demo dataset, when the workspace has none.
if ! .venv/bin/python -m core datasets list | grep -q ' pairs '; then
  .venv/bin/python -m core datasets demo
fi
exec .venv/bin/python -m streamlit run app/main.py "$@"
