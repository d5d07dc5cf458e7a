"""``python -m core ingest PATH --name NAME``: copy a folder or zip of images + masks into the workspace."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.data.ingest import ingest_dataset
from core.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ingest", help="ingest a dataset (folder or .zip of images + masks)")
    parser.add_argument("path", type=Path, help="folder or .zip with images/ + masks/, or masks named <stem><suffix>")
    parser.add_argument("--name", required=True, help="dataset name (letters, digits, '-', '_', '.')")
    parser.add_argument("--classes", help="comma-separated class names for indexed multi-class masks, background first")
    parser.add_argument("--mask-suffix", help="mask file suffix in a single-folder layout, e.g. _mask (default: detected)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    classes = [name.strip() for name in args.classes.split(",")] if args.classes else None
    manifest = ingest_dataset(args.path, args.name, settings.datasets_dir, classes=classes, mask_suffix=args.mask_suffix)
    print(f"ingested {manifest.name}: {len(manifest.pairs)} pairs, {manifest.channels} channel(s), classes {list(manifest.classes)}")
    print(f"stored in {settings.datasets_dir / manifest.name}")
    return 0
