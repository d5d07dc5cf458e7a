"""``python -m core ingest PATH --name NAME [--task ...] [--volumes ...]``: copy a dataset into the workspace.

2D: a folder or zip of images + masks (segmentation), or of images in one sub-folder per class or with a ``labels.csv``
(classification); the layout tells which unless ``--task`` says. ``--volumes``: NIfTI (MSD / nnU-Net ``imagesTr/`` +
``labelsTr/``) or DICOM series folders with NIfTI labels, stored as 2D slices along ``--axis`` with the chosen intensity
preprocessing (one of ``--window``, ``--level``/``--width``, ``--normalise``); ``--resample-uneven`` puts an unevenly
spaced DICOM series on an even grid instead of refusing it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.data.archives import volume_limits
from core.data.ingest import ingest_dataset
from core.data.intensity import WINDOW_PRESETS, intensity_from_options
from core.data.manifest import DatasetManifest, Task
from core.errors import SegTuneError
from core.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest", help="ingest a dataset (folder or .zip of images + masks, of labelled images, or of medical volumes)"
    )
    parser.add_argument(
        "path",
        type=Path,
        help="folder or .zip with images/ + masks/, or masks named <stem><suffix>; or one sub-folder "
        "of images per class, or images + labels.csv (name,label[,group]); with --volumes: imagesTr/ + labelsTr/",
    )
    parser.add_argument("--name", required=True, help="dataset name (letters, digits, '-', '_', '.')")
    parser.add_argument(
        "--task",
        choices=[str(task) for task in Task],
        help="segmentation (images + masks) or classification (class folders or labels.csv); default: told by the "
        "layout",
    )
    parser.add_argument(
        "--classes",
        help="comma-separated class names: indexed multi-class masks, background first; "
        "classification: the labels in class-index order (default: sorted)",
    )
    parser.add_argument(
        "--mask-suffix", help="mask file suffix in a single-folder layout, e.g. _mask (default: detected)"
    )
    volumes = parser.add_argument_group("medical volumes (NIfTI / DICOM series)")
    volumes.add_argument(
        "--volumes", action="store_true", help="PATH holds volumes: store them as 2D slices grouped by volume"
    )
    volumes.add_argument(
        "--axis", type=int, default=2, help="slicing axis of the RAS+ volume: 0 sagittal, 1 coronal, 2 axial (default)"
    )
    volumes.add_argument("--window", choices=WINDOW_PRESETS.names, help="CT window preset")
    volumes.add_argument("--level", type=float, help="CT window level in HU (with --width)")
    volumes.add_argument("--width", type=float, help="CT window width in HU (with --level)")
    volumes.add_argument(
        "--normalise", choices=["percentile"], help="MRI: per-volume 0.5-99.5 percentile scaling (the default)"
    )
    volumes.add_argument(
        "--max-volume-mb",
        type=_positive_mb,
        help="the most memory one volume may take, checked on its header before "
        "it is read (default: SEGTUNE_MAX_VOLUME_MB, else 2048)",
    )
    volumes.add_argument(
        "--empty-fraction", type=float, default=1.0, help="share of slices without foreground to keep (default 1 = all)"
    )
    volumes.add_argument(
        "--resample-uneven",
        action="store_true",
        help="resample a DICOM series whose slices are unevenly spaced (a missing slice, mixed spacings) along the "
        "slice normal onto an even grid at its median step, instead of refusing it; its label must be a DICOM-SEG",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    classes = [name.strip() for name in args.classes.split(",")] if args.classes else None
    if args.volumes and args.task == Task.CLASSIFICATION:
        raise SegTuneError(
            "--volumes stores slices with their masks (segmentation); for slice classes ingest them, then run "
            "`python -m core datasets from-masks NAME --name NEW` (mask empty / not empty)"
        )
    if args.volumes:
        return _ingest_volumes(args, classes, settings.datasets_dir, args.max_volume_mb or settings.max_volume_mb)
    manifest = ingest_dataset(
        args.path, args.name, settings.datasets_dir, classes=classes, mask_suffix=args.mask_suffix, task=args.task
    )
    print(f"ingested {manifest.name}: {summary(manifest)}")
    print(f"stored in {settings.datasets_dir / manifest.name}")
    return 0


def summary(manifest: DatasetManifest) -> str:
    """One line: how many items of what, e.g. ``120 labelled images, 1 channel(s), classes normal 80, tumour 40``."""
    if manifest.is_classification:
        counts = ", ".join(f"{name} {count}" for name, count in manifest.class_counts.items())
        return f"{len(manifest.pairs)} labelled images, {manifest.channels} channel(s), classes {counts}"
    return f"{len(manifest.pairs)} pairs, {manifest.channels} channel(s), classes {list(manifest.classes)}"


def _positive_mb(text: str) -> int:
    if not text.strip().isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"a whole number of MiB above 0, got {text!r}")
    return int(text)


def _ingest_volumes(
    args: argparse.Namespace, classes: list[str] | None, datasets_dir: Path, max_volume_mb: int | None
) -> int:
    from core.data.volume_ingest import VolumeIngestOptions, ingest_volumes

    intensity = intensity_from_options(args.window, args.level, args.width, args.normalise)
    options = VolumeIngestOptions(
        axis=args.axis,
        intensity=intensity,
        empty_fraction=args.empty_fraction,
        resample_uneven=args.resample_uneven,
    )
    manifest = ingest_volumes(
        args.path, args.name, datasets_dir, classes=classes, options=options, limits=volume_limits(max_volume_mb)
    )
    print(
        f"ingested {manifest.name}: {len(manifest.volumes)} volumes, {len(manifest.pairs)} slices along axis "
        f"{args.axis}, {intensity.description}, classes {list(manifest.classes)}"
    )
    for volume in manifest.volumes:
        if volume.resampled_from:
            print(f"resampled {volume.volume}: {volume.resampled_from.describe()}")
    print(f"stored in {datasets_dir / manifest.name}")
    return 0
