"""``python -m core``: headless SegTune. Each sub-command lives in its own module of core.commands.

A command module defines ``register(subparsers) -> None`` that adds its parser and sets
``func=run`` where ``run(args: argparse.Namespace) -> int``. New modules are picked up by name,
so adding a command never touches this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

import core.commands
from core.errors import SegTuneError

Register = Callable[[argparse._SubParsersAction], None]


def build_parser(prog: str = "python -m core", extra: Register | None = None) -> argparse.ArgumentParser:
    """Every command module's parser; ``extra`` adds commands of another front end (the ``segtune`` command's
    dashboard)."""
    parser = argparse.ArgumentParser(prog=prog, description="SegTune: tune segmentation models headless.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if extra is not None:
        extra(subparsers)
    for module_info in sorted(pkgutil.iter_modules(core.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"core.commands.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m core", extra: Register | None = None) -> int:
    args = build_parser(prog, extra).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SegTuneError as exc:  # a user can fix it: one message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
