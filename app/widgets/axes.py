"""Chart axes that do not magnify noise: a metric axis spans at least a sensible minimum.

Plotly fits an axis to the data, so two Dice values 0.0001 apart fill the whole height and a
rounding-level drop looks like a cliff. A metric in [0, 1] gets an axis at least MIN_SPAN wide,
centred on the data and kept inside [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MIN_SPAN = 0.05  # of a [0, 1] metric: differences far below this are noise on one split
PADDING = 0.1  # share of the data's span added on each side, so markers and labels are not cut


def metric_axis_range(
    values: Iterable[float], *, low: float = 0.0, high: float = 1.0, min_span: float = MIN_SPAN
) -> tuple[float, float] | None:
    """The y-range for ``values`` of a metric bounded by [low, high]: the data padded, at least
    ``min_span`` wide and inside the bounds; None without a finite value (let Plotly decide)."""
    finite = np.asarray([v for v in values if v is not None], dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None
    bottom, top = float(finite.min()), float(finite.max())
    span = max(min_span, (top - bottom) * (1 + 2 * PADDING))
    centre = (bottom + top) / 2
    start = min(max(low, centre - span / 2), high - span)
    return max(low, start), min(high, max(low, start) + span)
