"""``python -m core evaluate``: per-case Dice, IoU, NSD and HD95 of predicted masks against ground truth.

``--pred DIR --masks DIR`` scores a folder of predicted masks (nnU-Net's evaluate_folder);
``--model BUNDLE --images DIR --masks DIR [--tta]`` predicts the images first, exactly as
``predict`` would. ``--out report.csv`` writes one row per case and foreground class.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.deploy.evaluate import evaluate_folders, evaluate_model
from core.metrics.cases import NSD_TOLERANCE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score predicted masks (a folder, or a model on images) against ground truth, per case"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--pred", type=Path, help="folder of predicted masks (<stem>.png: class indices, or 0/255 for binary)"
    )
    source.add_argument("--model", type=Path, help="exported model folder: predict --images first, as `predict` would")
    parser.add_argument("--images", type=Path, help="with --model: the folder of images to predict")
    parser.add_argument("--masks", required=True, type=Path, help="folder of ground-truth masks (<stem>.png)")
    parser.add_argument(
        "--classes", help="with --pred: class names, background first (default: from the ground truth's values)"
    )
    parser.add_argument(
        "--tta", action="store_true", help="with --model: average over mirrored copies (test-time augmentation)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=NSD_TOLERANCE, help=f"NSD tolerance in pixels (default {NSD_TOLERANCE:g})"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write the per-case report here (CSV: name, class, dice, iou, nsd, hd95, height, width)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.model is not None:
        if args.images is None:
            print("error: --model needs --images (the folder to predict)", file=sys.stderr)
            return 2
        report = evaluate_model(args.model, args.images, args.masks, tta=args.tta, tolerance=args.tolerance)
    else:
        classes = tuple(name.strip() for name in args.classes.split(",")) if args.classes else None
        report = evaluate_folders(args.pred, args.masks, classes, tolerance=args.tolerance)
    print(report.summary(), file=sys.stdout)
    if args.out is not None:
        print(f"per-case report: {report.write_csv(args.out)}")
    return 0
