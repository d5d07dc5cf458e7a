"""Frozen, seeded train/val/test (or k-fold) splits of a dataset's pairs.

A split is a pure function of the pair stems and a :class:`SplitConfig`; its hash is stored with
every study so a result can always be traced back to exactly the images it was selected on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SplitConfig:
    """How to divide a dataset. Defaults follow paper P2 (70% train / 16% val / 14% test)."""

    train: float = 0.70
    val: float = 0.16
    test: float = 0.14
    k_folds: int | None = None  # when set: test held out first, the rest cut into k folds
    fold: int = 0  # which fold is the validation split (0 <= fold < k_folds)
    seed: int = 0
    group_pattern: str | None = None  # regex on the file stem; first group (or match) = group id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitConfig:
        return cls(**data)
