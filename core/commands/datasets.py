"""``python -m core datasets [list|demo|delete NAME|from-masks NAME --name NEW]``: the workspace's datasets.

``from-masks`` stores a segmentation dataset as a classification one: each image's class says whether
its mask is empty (core/data/mask_presence.py); slices keep their volume, so splits keep volumes whole.
"""

from __future__ import annotations

import argparse

from core.commands.ingest import summary
from core.data.demo import create_demo_dataset
from core.data.manifest import list_datasets
from core.data.mask_presence import mask_presence_dataset
from core.runtime.dataset_guard import delete_dataset_safely
from core.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help="list datasets, create the demo dataset, delete one, or make a "
        "'mask empty / not empty' classification dataset from a segmentation one",
    )
    parser.add_argument("action", nargs="?", choices=["list", "demo", "delete", "from-masks"], default="list")
    parser.add_argument("name", nargs="?", help="dataset to delete or to read the masks of, or the demo dataset's name")
    parser.add_argument(
        "--name", dest="new_name", metavar="NEW", help="from-masks: the new classification dataset's name"
    )
    parser.add_argument(
        "--classes", help="from-masks: two class names, empty masks first (default: 'no <foreground>,<foreground>')"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "demo":
        manifest = create_demo_dataset(settings.datasets_dir, **({"name": args.name} if args.name else {}))
        print(f"created demo dataset {manifest.name} ({len(manifest.pairs)} pairs)")
    elif args.action == "from-masks":
        if not args.name or not args.new_name:
            print("error: name the segmentation dataset and the new one: datasets from-masks SOURCE --name NEW")
            return 2
        classes = [name.strip() for name in args.classes.split(",")] if args.classes else None
        manifest = mask_presence_dataset(settings.datasets_dir, args.name, args.new_name, classes=classes)
        print(f"created {manifest.name} from {args.name}: {summary(manifest)}")
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
            print(f"{manifest.name:30s} {manifest.task:14s} {summary(manifest)}")
    return 0
