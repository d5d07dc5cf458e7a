"""``python -m core export --study S [--trial N] [--format ...] --out DIR``: write a trial's model."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.deploy.export import FORMATS, export_ensemble, export_trial
from core.runtime.storage import open_artifact_store, open_storage
from core.runtime.tuning import load_study
from core.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a trial's model as a bundle, ONNX and/or TorchScript")
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--trial", type=int, help="trial number (default: the best trial)")
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=[*FORMATS, "all"],
        help="bundle (safetensors + config), onnx, torchscript or all; repeatable (default: bundle)",
    )
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="a cross-validated trial: export all k fold models as one ensemble (<study>-trial<N>-ensemble/, "
        "predict.py averages them); default formats bundle + onnx",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write <study>-trial<N>/ into")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    study, _spec = load_study(args.study, open_storage(settings.db_url))
    store = open_artifact_store(settings)
    if args.ensemble:
        report = export_ensemble(study, args.trial, store, args.out, args.formats or ["bundle", "onnx"])
    else:
        report = export_trial(study, args.trial, store, args.out, args.formats or ["bundle"])
    print(f"exported to {report.folder}")
    for exported in report.files:
        check = "" if exported.max_abs_diff is None else f"  (max abs diff vs PyTorch {exported.max_abs_diff:.2e})"
        print(f"  {exported.format:12} {exported.path.relative_to(report.folder)}{check}")
    if any(f.max_abs_diff is not None for f in report.files):
        print(f"parity checked on {report.checked_on}")
    return 0
