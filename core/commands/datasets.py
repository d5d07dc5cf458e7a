"""``python -m core datasets [list|demo|delete NAME]``: the workspace's datasets."""

from __future__ import annotations

import argparse

from core.data.demo import create_demo_dataset
from core.data.manifest import list_datasets
from core.runtime.dataset_guard import delete_dataset_safely
from core.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("datasets", help="list datasets, create the demo dataset, or delete one")
    parser.add_argument("action", nargs="?", choices=["list", "demo", "delete"], default="list")
    parser.add_argument("name", nargs="?", help="dataset to delete, or the demo dataset's name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "demo":
        manifest = create_demo_dataset(settings.datasets_dir, **({"name": args.name} if args.name else {}))
        print(f"created demo dataset {manifest.name} ({len(manifest.pairs)} pairs)")
    elif args.action == "delete":
        if not args.name:
            print("error: name the dataset to delete")
            return 2
        delete_dataset_safely(settings, args.name)  # refused while a queued or running job uses it
        print(f"deleted {args.name}")
    else:
        manifests = list_datasets(settings.datasets_dir)
        if not manifests:
            print("no datasets yet: `python -m core datasets demo` or `python -m core ingest PATH --name NAME`")
        for manifest in manifests:
            print(f"{manifest.name:30s} {len(manifest.pairs):6d} pairs  {manifest.channels} ch  classes {list(manifest.classes)}")
    return 0
