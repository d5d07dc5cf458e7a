"""Dataset fingerprints made by hand, for planner tests."""

from __future__ import annotations

from core.search.auto import Fingerprint


def segmentation(count: int, side: int = 512, channels: int = 1, foreground: float = 0.2) -> Fingerprint:
    return Fingerprint(
        count=count,
        channels=channels,
        bit_depth=8,
        median_height=side,
        median_width=side,
        num_classes=2,
        foreground_median=foreground,
        empty_fraction=0.0,
        class_fractions=(foreground,),
    )
