"""``python -m core plan --dataset NAME [--device cpu|cuda] [--hours H] [--trials N] --out spec.json``.

Plans a study for a stored dataset with the auto preset (core/search/auto.py): sized so its
estimated total fits the time budget (default 2 h on a CPU, 12 h on a GPU), with the reasons for
every choice and the estimated study total printed. The written spec is what ``submit`` and
``tune`` take. The device's speed is timed first (one training step of the reference model);
``--no-measure`` uses the table's speed instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.data.manifest import load_manifest
from core.errors import SegTuneError
from core.search.auto import plan_for_manifest
from core.search.cost import device_kind
from core.search.validation import spec_from_dict
from core.settings import load_settings

MEASURE_SIDE = 128  # px of the speed probe (smaller for datasets of smaller images)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan", help="plan a study that fits a time budget and write its spec (for submit / tune)"
    )
    parser.add_argument("--dataset", required=True, help="a stored dataset (python -m core datasets)")
    parser.add_argument("--device", default="auto", help="cpu or cuda (default: cuda when a GPU is visible)")
    parser.add_argument(
        "--hours", type=float, help="time budget for the whole study (default: 2 on a CPU, 12 on a GPU)"
    )
    parser.add_argument("--trials", type=int, help="trials to plan (default: as many as fit the budget, up to 30)")
    parser.add_argument("--name", help="study name (default: auto-<dataset>)")
    parser.add_argument(
        "--no-measure", action="store_true", help="use the table's device speed instead of timing one step here"
    )
    parser.add_argument("--out", required=True, type=Path, help="where to write the spec (.json)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.hours is not None and not args.hours > 0:
        raise SegTuneError(f"--hours must be a positive number of hours, got {args.hours}")
    if args.trials is not None and args.trials < 1:
        raise SegTuneError(f"--trials must be at least 1, got {args.trials}")
    device = _device(args.device)
    manifest = load_manifest(load_settings().datasets_dir, args.dataset)
    profile = None
    if not args.no_measure:
        from core.training.estimate import measured_profile

        _check_measurable(device)
        short = min((min(p.height, p.width) for p in manifest.pairs), default=MEASURE_SIDE)
        profile = measured_profile(
            device, side=max(32, min(MEASURE_SIDE, short // 32 * 32)), channels=manifest.channels
        )
    auto = plan_for_manifest(
        manifest, name=args.name, device=device, hours=args.hours, n_trials=args.trials, profile=profile
    )
    spec = spec_from_dict(auto.spec)  # the plan is a valid spec, or this says why
    for reason in auto.reasons:
        print(f"- {reason}")
    args.out.write_text(spec.to_json() + "\n", encoding="utf-8")
    print(f"estimated study total: {auto.estimate.total_min:.0f} min (budget {auto.budget_s / 60:.0f} min)")
    print(f"wrote {args.out}: python -m core submit --spec {args.out}")
    return 0


def _device(value: str) -> str:
    if value == "auto":
        from core.runtime.launcher import visible_gpu_ids

        return "cuda" if visible_gpu_ids() else "cpu"
    if device_kind(value) == "cpu" and value != "cpu":
        raise SegTuneError(f"--device must be cpu, cuda or cuda:N, got {value!r}")
    return value


def _check_measurable(device: str) -> None:
    """Timing needs the device here; planning for a GPU elsewhere uses the table's speed."""
    from core.runtime.launcher import visible_gpu_ids

    if device_kind(device) == "cuda" and not visible_gpu_ids():
        raise SegTuneError(
            f"no GPU is visible here to time {device} on: add --no-measure to plan for a GPU with the table's speed"
        )
