"""``python -m core predict --model BUNDLE --images DIR --out DIR [--overlay]``: masks for a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.deploy.predict import predict_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="segment a folder of images with an exported model")
    parser.add_argument("--model", required=True, type=Path, help="exported bundle or variant folder")
    parser.add_argument("--images", required=True, type=Path, help="folder of images (PNG, JPG, TIFF, BMP)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the masks (<stem>.png)")
    parser.add_argument("--overlay", action="store_true", help="also write overlays into OUT/overlays/")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = predict_folder(args.model, args.images, args.out, overlay=args.overlay, progress=True)
    print(report.summary(), file=sys.stderr if report.skipped else sys.stdout)
    return 0
