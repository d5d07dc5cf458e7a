"""Learning curves as a Plotly figure: one colour per trial, val solid, train dashed, pruned marked.

The learning rate is its own curve ("lr"): one schedule per trial, drawn solid. Per-fold curves of a
cross-validated trial ("val · fold 1") keep their split's dash and the trial's colour.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from core.metrics.catalogue import label

PALETTE = qualitative.Safe  # colour-blind-safe, 11 colours
DASHES = {"val": "solid", "train": "dash", "lr": "solid", "objective": "dot"}


def curves_figure(curves: pd.DataFrame, metric: str, reference: tuple[str, float] | None = None) -> go.Figure:
    """``curves`` is ``core.results.curves.learning_curves`` output; pruned trials end in a labelled ×.

    ``reference`` (label, value): the best constant predictor's validation score, drawn dashed.
    """
    figure = go.Figure()
    for index, (number, trial_curves) in enumerate(curves.groupby("trial", sort=False)):
        color = PALETTE[index % len(PALETTE)]
        for split, points in trial_curves.groupby("split", sort=False):
            figure.add_trace(
                go.Scatter(
                    x=points["epoch"],
                    y=points["value"],
                    mode="lines+markers",
                    name=f"#{number} {split}",
                    legendgroup=f"#{number}",
                    line={"color": color, "dash": DASHES[split.split(" ")[0]], "width": 2},
                    marker={"size": 5},
                    hovertemplate=f"trial #{number} {split}<br>epoch %{{x}}<br>%{{y:.4f}}<extra></extra>",
                )
            )
        if trial_curves["state"].iloc[0] == "pruned":
            _mark_pruned(figure, trial_curves, int(number), color)
    if reference is not None:
        figure.add_hline(
            y=reference[1],
            line={"dash": "dash", "color": "#7B8794", "width": 1.5},
            annotation_text=f"{reference[0]} (val) {reference[1]:.3f}",
            annotation_position="bottom right",
        )
    figure.update_layout(
        xaxis_title="Epoch",
        yaxis_title=label(metric),
        hovermode="closest",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        margin={"t": 40, "b": 40, "l": 50, "r": 20},
        height=460,
    )
    figure.update_xaxes(dtick=1 if curves["epoch"].max() <= 20 else None)
    return figure


def _mark_pruned(figure: go.Figure, trial_curves: pd.DataFrame, number: int, color: str) -> None:
    # Where the pruner stopped the trial: the last point of its main (val, else any) curve.
    main = trial_curves[trial_curves["split"] != "train"]
    last = (main if not main.empty else trial_curves).sort_values("epoch").iloc[-1]
    figure.add_trace(
        go.Scatter(
            x=[last["epoch"]],
            y=[last["value"]],
            mode="markers",
            showlegend=False,
            legendgroup=f"#{number}",
            marker={"symbol": "x", "size": 14, "color": color, "line": {"width": 2, "color": "#1F2933"}},
            hovertemplate=f"trial #{number} pruned after epoch %{{x}}<extra></extra>",
        )
    )
    figure.add_annotation(
        x=last["epoch"],
        y=last["value"],
        text=f"#{number} pruned",
        showarrow=True,
        arrowhead=2,
        ax=0,
        ay=-30,
        font={"size": 11, "color": color},
    )
