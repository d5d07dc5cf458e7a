"""Intensity preprocessing of medical volumes to 8-bit slices: CT windows or MRI percentile scaling.

Chosen once at ingest, recorded in the dataset manifest and the model bundle, and applied again
by ``predict --volumes``, so a model always sees new scans scaled the way it was trained.

- ``window``: a CT window (level/width in Hounsfield units): [level - width/2, level + width/2] -> 0..255.
  Presets are the usual radiology windows.
- ``percentile``: per volume (and per sequence), the [low, high] percentiles -> 0..255; the usual
  choice for MRI, whose values have no fixed unit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.errors import SegTuneError, unknown_option
from core.registry import Registry


@dataclass(frozen=True)
class Window:
    name: str
    level: float  # HU
    width: float  # HU


WINDOW_PRESETS: Registry[Window] = Registry(
    "CT window",
    [
        Window("abdomen", 40.0, 400.0),
        Window("liver", 60.0, 160.0),
        Window("brain", 40.0, 80.0),
        Window("lung", -600.0, 1500.0),
        Window("bone", 400.0, 1800.0),
    ],
)
METHODS = ("window", "percentile")


@dataclass(frozen=True)
class IntensityConfig:
    """How voxel values become 0..255 grey levels (see the module docstring)."""

    method: str = "percentile"  # "window" (CT) or "percentile" (MRI, and the default)
    level: float | None = None  # window: centre in HU
    width: float | None = None  # window: width in HU (> 0)
    preset: str | None = None  # window: the preset name it came from, for display
    low: float = 0.5  # percentile: lower percentile
    high: float = 99.5  # percentile: upper percentile

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise SegTuneError(problem)

    def problem(self) -> str:
        if self.method not in METHODS:
            return unknown_option("intensity method", self.method, METHODS)
        if self.method == "window" and (self.level is None or self.width is None or self.width <= 0):
            return f"a CT window needs a level and a width > 0, got level={self.level}, width={self.width}"
        if self.method == "percentile" and not 0 <= self.low < self.high <= 100:
            return f"percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}"
        return ""

    @classmethod
    def window(
        cls, preset: str | None = None, *, level: float | None = None, width: float | None = None
    ) -> IntensityConfig:
        if preset is not None:
            entry = WINDOW_PRESETS.get(preset)
            level, width = entry.level, entry.width
        return cls(method="window", level=level, width=width, preset=preset)

    @property
    def description(self) -> str:
        if self.method == "window":
            name = f"{self.preset} " if self.preset else ""
            return f"CT {name}window L{self.level:g}/W{self.width:g} HU"
        return f"percentile normalisation per volume ({self.low:g}-{self.high:g}%)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntensityConfig:
        return cls(**{key: data[key] for key in ("method", "level", "width", "preset", "low", "high") if key in data})


def intensity_from_options(
    window: str | None, level: float | None, width: float | None, normalise: str | None
) -> IntensityConfig:
    """The config the CLI / dashboard options ask for (one way only: a preset, level+width, or percentile)."""
    chosen = [
        name
        for name, value in (
            ("--window", window),
            ("--level/--width", level if level is not None else width),
            ("--normalise", normalise),
        )
        if value is not None
    ]
    if len(chosen) > 1:
        raise SegTuneError(f"choose one intensity option, got {' and '.join(chosen)}")
    if window is not None:
        return IntensityConfig.window(window)
    if level is not None or width is not None:
        return IntensityConfig.window(level=level, width=width)
    if normalise not in (None, "percentile"):
        raise SegTuneError(unknown_option("normalisation", normalise, ["percentile"]))
    return IntensityConfig()


def to_uint8(volume: np.ndarray, config: IntensityConfig) -> np.ndarray:
    """A volume (X, Y, Z) or (X, Y, Z, sequences) as uint8, each sequence scaled on its own."""
    if volume.ndim == 4:
        return np.stack([to_uint8(volume[..., i], config) for i in range(volume.shape[-1])], axis=-1)
    values = volume.astype(np.float32)
    if config.method == "window":
        low = float(config.level) - float(config.width) / 2  # type: ignore[arg-type]
        high = float(config.level) + float(config.width) / 2  # type: ignore[arg-type]
    else:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return np.zeros(values.shape, np.uint8)
        low, high = (float(v) for v in np.percentile(finite, [config.low, config.high]))
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    scaled = (np.nan_to_num(values, nan=low) - low) * (255.0 / (high - low))
    return (np.clip(scaled, 0, 255) + 0.5).astype(np.uint8)
