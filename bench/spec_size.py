"""How long validating and sizing a huge search space takes: target well under one second.

    python bench/spec_size.py [--repeats 20]

The spec is the issue's form entry (batch_size 1..1024 x epochs 1..10000) times a stepped learning
rate and three architectures: about 10^12 grid points, counted by arithmetic and refused as a grid.
Before core/search/size.py the count enumerated the grid and the process was OOM-killed at 22.7 GB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.search.size import search_space_size
from core.search.validation import SpecError, spec_from_dict

SPACE = {
    "architecture": {"choices": ["Unet", "ClassicUNet", "FCN32"]},
    "batch_size": {"low": 1, "high": 1024},
    "epochs": {"low": 1, "high": 10_000},
    "lr": {"low": 1e-5, "high": 1e-1, "step": 1e-5},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    tpe = spec_from_dict({"name": "big", "dataset": "d", "search_space": SPACE, "budget": {"max_epochs": 10_000}})
    start = time.perf_counter()
    for _ in range(args.repeats):
        size = search_space_size(tpe)
    count_s = (time.perf_counter() - start) / args.repeats
    start = time.perf_counter()
    for _ in range(args.repeats):
        try:
            spec_from_dict(
                {
                    "name": "big",
                    "dataset": "d",
                    "sampler": "grid",
                    "search_space": SPACE,
                    "budget": {"max_epochs": 10_000},
                }
            )
        except SpecError as error:
            message = error.problems["sampler"]
    refuse_s = (time.perf_counter() - start) / args.repeats
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"points: {size:,}")
    print(f"count by arithmetic: {count_s * 1e3:.3f} ms")
    print(f"grid spec validated and refused: {refuse_s * 1e3:.3f} ms  ({message[:60]}...)")
    print(f"peak RSS of the process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
