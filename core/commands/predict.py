"""``python -m core predict --model BUNDLE (--images DIR | --volumes DIR) --out DIR|FILE.csv``: masks or labels for a
folder.

``--images``: a segmentation model writes one PNG mask per image into the folder ``--out``
(``--overlay`` adds overlays); a classifier writes one CSV file ``--out`` with each image's label
and class probabilities. ``--volumes``: one NIfTI label
volume per NIfTI file / DICOM series, with the input's geometry and the bundle's ingest-time
preprocessing (models trained on a volume dataset); an unevenly spaced DICOM series is skipped
with the reason, or with ``--resample-uneven`` segmented on an even grid (its label written with
that grid's geometry).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.contract import Task
from core.deploy.predict import predict_folder
from core.modeling.bundle import load_bundle_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="segment or classify a folder of images (or segment medical volumes) with an exported model"
    )
    parser.add_argument("--model", required=True, type=Path, help="exported bundle or variant folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images", type=Path, help="folder of images (PNG, JPG, TIFF, BMP; .npy HxWxC uint8 for multi-sequence models)"
    )
    source.add_argument(
        "--volumes",
        type=Path,
        help="folder of NIfTI volumes (<case>.nii.gz, <case>_0000.nii.gz ...) or DICOM series sub-folders",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="folder for the masks (<stem>.png) or label volumes (<case>.nii.gz); a classifier's CSV file (file, "
        "label, confidence, p_<class>...)",
    )
    parser.add_argument("--overlay", action="store_true", help="images: also write overlays into OUT/overlays/")
    parser.add_argument(
        "--resample-uneven",
        action="store_true",
        help="volumes: resample a DICOM series whose slices are unevenly spaced onto an even grid at its median step "
        "(as ingest --resample-uneven) instead of skipping it; its label is written on that grid",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="images: average the probabilities over mirrored copies (test-time augmentation)",
    )
    parser.add_argument(
        "--save-probabilities",
        action="store_true",
        help="images: also write OUT/<stem>.npz with the class probabilities (K x H x W, background first)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "volumes", None) is not None:
        from core.deploy.predict_volumes import predict_volumes

        report = predict_volumes(
            args.model, args.volumes, args.out, progress=True, resample_uneven=args.resample_uneven
        )
    elif load_bundle_config(args.model).task == Task.CLASSIFICATION:
        from core.deploy.classify import classify_folder

        report = classify_folder(args.model, args.images, args.out, progress=True)
    else:
        report = predict_folder(
            args.model,
            args.images,
            args.out,
            overlay=args.overlay,
            progress=True,
            tta=args.tta,
            save_probabilities=args.save_probabilities,
        )
    print(report.summary(), file=sys.stderr if report.skipped else sys.stdout)
    return 0
