"""A classification study's predictions as the Compare predictions page draws them: confusion
matrices as heatmaps, which images to show, and one card per image (thumbnail, true class, each
trial's prediction and confidence).

The numbers come from ``core.results.predictions`` (the trial's stored confusion matrix and
validation predictions); this module only chooses and draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.data.visual import resize_nearest, to_rgb
from core.results.predictions import PredictionComparison

# Which images to list: key -> label. "disagree" needs two trials or more.
SHOWN: dict[str, str] = {
    "wrong": "Misclassified (by any chosen trial)",
    "disagree": "Where the trials disagree",
    "all": "All validation images",
}
THUMBNAIL_PX = 256  # thumbnails are upscaled (nearest) to this before the browser fits them to a card


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], title: str) -> go.Figure:
    """Counts as a heatmap: rows = true class (top to bottom in class order), columns = predicted;
    each cell shows its count, the hover its share of the true class."""
    matrix = np.asarray(matrix, dtype=np.int64)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    names = list(classes) or [str(i) for i in range(len(matrix))]
    figure = go.Figure(
        go.Heatmap(
            z=matrix.tolist(),
            x=names,
            y=names,
            text=matrix.tolist(),
            texttemplate="%{text}",
            customdata=shares.tolist(),
            colorscale="Blues",
            showscale=False,
            xgap=2,
            ygap=2,
            hovertemplate="true %{y} · predicted %{x}<br>%{z} image(s), %{customdata:.0%} of the true "
            "class<extra></extra>",
        )
    )
    figure.update_layout(
        title=title,
        xaxis_title="Predicted",
        yaxis_title="True",
        height=300 + 20 * len(names),
        margin={"t": 50, "b": 40, "l": 60, "r": 10},
    )
    figure.update_xaxes(type="category", side="bottom")
    figure.update_yaxes(type="category", autorange="reversed")  # first class on top, as the matrix reads
    return figure


def accuracy_text(matrix: np.ndarray) -> str:
    """ "10 of 12 right (83 %)" from a confusion matrix."""
    matrix = np.asarray(matrix)
    right, total = int(np.trace(matrix)), int(matrix.sum())
    return f"{right} of {total} right ({right / total:.0%})" if total else "no images"


def shown_images(comparison: PredictionComparison, order: str, shown: str) -> list[int]:
    """Image indices of ``comparison`` in ``order`` (a key of core.results.predictions.ORDERINGS),
    kept by ``shown`` (a key of :data:`SHOWN`)."""
    ordered = comparison.order(order)
    if shown == "wrong":
        wrong = (
            np.any([~p.correct for p in comparison.trials.values()], axis=0) if comparison.trials else np.zeros(0, bool)
        )
        return [i for i in ordered if wrong[i]]
    if shown == "disagree":
        disagreement = comparison.disagreement()
        return [i for i in ordered if disagreement[i] > 0]
    return ordered


def prediction_lines(comparison: PredictionComparison, index: int) -> list[str]:
    """Markdown lines under a thumbnail: the true class, then per trial its prediction and confidence."""
    lines = [f"true **{comparison.classes[comparison.labels[index]]}**"]
    for number, predictions in comparison.trials.items():
        predicted = comparison.classes[predictions.predicted[index]]
        confidence = float(predictions.confidence[index])
        if predictions.correct[index]:
            lines.append(f":green[:material/check: #{number} {predicted} · {confidence:.2f}]")
        else:
            lines.append(f":red[:material/close: #{number} {predicted} · {confidence:.2f}]")
    return lines


def image_cards(comparison: PredictionComparison, indices: Sequence[int], images: np.ndarray, per_row: int) -> None:
    """One card per image, ``per_row`` a row: thumbnail captioned with its name, then :func:`prediction_lines`."""
    for start in range(0, len(indices), per_row):
        for column, (index, image) in zip(
            st.columns(per_row), zip(indices[start : start + per_row], images[start : start + per_row])
        ):
            with column.container(border=True):
                st.image(
                    resize_nearest(to_rgb(image), THUMBNAIL_PX),
                    caption=comparison.stems[index],
                    width="stretch",
                    output_format="PNG",
                )
                st.markdown("  \n".join(prediction_lines(comparison, index)))
