#!/usr/bin/env bash
# One command from a fresh checkout to a running dashboard on http://localhost:8501: creates .venv
# and installs the pinned requirements on first use (again when they change), then serves SegTune.
# Workspace: $SEGTUNE_HOME (default ~/.segtune). Password for network use: $SEGTUNE_PASSWORD.
# Extra arguments go to the launcher (app/serve.py): Streamlit options such as --server.port 8600,
# and --insecure-no-password to serve on a network without a password (see README, "Serving on a
# network"). Upload limit: $SEGTUNE_MAX_UPLOAD_MB (default 2048).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements.txt
# What the installed `segtune dashboard` runs (segtune/cli.py): on a first start the demo dataset
# (something to tune, when the workspace has none), then the launcher app/serve.py.
exec .venv/bin/python -m segtune dashboard "$@"
