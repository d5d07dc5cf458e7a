#!/usr/bin/env bash
# One command from a fresh checkout to a running dashboard: creates .venv on first use,
# installs the pinned requirements, and serves SegTune on http://localhost:8501.
# Workspace: $SEGTUNE_HOME (default ~/.segtune). Password for network use: $SEGTUNE_PASSWORD.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install --upgrade pip
  .venv/bin/pip install -r requirements.txt
fi
exec .venv/bin/streamlit run app/main.py "$@"
