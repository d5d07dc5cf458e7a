"""``segtune COMMAND``: what ``pip install .`` puts on the PATH.

``segtune dashboard [--server.OPTION VALUE ...]`` starts the dashboard the way ``scripts/start.sh``
does: the demo dataset on a first start (a workspace without datasets), then the launcher
``app.serve`` with its password and upload-limit rules. Every other command is ``python -m core``'s
(core.cli), with the same arguments. This module sits outside core/ and app/ because it joins the
two: core never imports the UI, and the UI never reaches into the CLI (pyproject's contracts).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core import cli

DASHBOARD = "dashboard"
PROG = "segtune"


def _register_dashboard(subparsers: argparse._SubParsersAction) -> None:
    # Listed for --help only: main() hands `dashboard ...` to the launcher before argparse sees its
    # Streamlit options, which argparse could not parse.
    subparsers.add_parser(
        DASHBOARD, help="start the web dashboard (Streamlit options such as --server.port 8600 pass through)"
    )


def dashboard(options: Sequence[str]) -> int:
    """A first start opens on something to tune (the demo dataset), then the launcher serves the app."""
    from core.data.demo import create_demo_dataset
    from core.data.manifest import list_datasets
    from core.settings import load_settings

    settings = load_settings()
    if not list_datasets(settings.datasets_dir):
        manifest = create_demo_dataset(settings.datasets_dir)
        print(f"created demo dataset {manifest.name} in {settings.datasets_dir}", file=sys.stderr)
    from app import serve

    return serve.main(list(options))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [DASHBOARD]:
        return dashboard(args[1:])
    return cli.main(args, prog=PROG, extra=_register_dashboard)
