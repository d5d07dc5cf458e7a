"""Test Dice against budget for SegTune and nnU-Net, from several bench/vs_nnunet.py runs (issue 27).

    .venv-nnunet/bin/python bench/budget_curve.py bench/vs_nnunet/*/vs_nnunet.json --png bench/vs_nnunet_curve.png

One panel per dataset; each system a line through its runs' mean per-case Dice, the budget in
CPU-minutes per side on the x axis (log scale). matplotlib is a bench-only dependency: it comes with
bench/requirements-nnunet.txt (nnU-Net needs it), so run this with that interpreter.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def curve_points(results: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """dataset -> system -> [(budget in CPU-minutes, mean test Dice)], sorted by budget."""
    points: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for result in results:
        for system, row in result["systems"].items():
            points.setdefault(result["dataset"], {}).setdefault(system, []).append(
                (float(result["budget_min"]), float(row["dice"]))
            )
    for systems in points.values():
        for series in systems.values():
            series.sort()
    return points


def plot_budget_curve(paths: list[Path], png: Path) -> Path:
    """Plot the runs in ``paths`` (vs_nnunet.json files) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve_points([json.loads(Path(path).read_text(encoding="utf-8")) for path in paths])
    if not points:
        raise SystemExit("budget_curve: no runs given")
    figure, axes = plt.subplots(1, len(points), figsize=(4.5 * len(points), 3.6), squeeze=False)
    for ax, (dataset, systems) in zip(axes[0], sorted(points.items())):
        for system, series in sorted(systems.items()):
            budgets, dice = zip(*series)
            ax.plot(budgets, dice, marker="o", label=system)
        ax.set_xscale("log")
        budgets = sorted({budget for series in systems.values() for budget, _ in series})
        ax.set_xticks(budgets, [f"{budget:g}" for budget in budgets])  # the measured budgets, not log decades
        ax.minorticks_off()
        ax.set_xlim(budgets[0] / 1.6, budgets[-1] * 1.6)
        ax.set_title(dataset)
        ax.set_xlabel("budget (CPU-minutes of training per side)")
        ax.set_ylabel("mean per-case test Dice")
        ax.set_ylim(0, 1)  # Dice is bounded: a fixed axis keeps panels and reruns comparable
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="vs_nnunet.json files")
    parser.add_argument("--png", type=Path, required=True)
    args = parser.parse_args(argv)
    print(plot_budget_curve(args.runs, args.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
