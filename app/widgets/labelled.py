"""Classification datasets on a page: a gallery per class, class counts, class counts per split part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from core.data.images import read_image
from core.data.manifest import DatasetManifest
from core.data.splits import Split, class_counts
from core.data.visual import CLASS_PALETTE, shrink, to_rgb

GALLERY_COLUMNS = 4
GALLERY_ROWS = 3
THUMBNAIL_PX = 256


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def class_color(index: int) -> str:
    return hex_color(CLASS_PALETTE[index % len(CLASS_PALETTE)])


@st.cache_data(max_entries=256, show_spinner=False)
def thumbnail(image_path: str) -> np.ndarray:
    return shrink(to_rgb(read_image(Path(image_path))), THUMBNAIL_PX)


def class_gallery(manifest: DatasetManifest, folder: Path) -> None:
    """Pick a class, page through its images."""
    counts = manifest.class_counts
    controls = st.columns([3, 2], vertical_alignment="bottom")
    chosen = controls[0].selectbox(
        "Class", list(counts), key="ds.class", format_func=lambda name: f"{name} ({counts[name]} images)"
    )
    index = manifest.classes.index(chosen)
    pairs = [pair for pair in manifest.pairs if pair.label == index]
    per_page = GALLERY_COLUMNS * GALLERY_ROWS
    pages = max(1, -(-len(pairs) // per_page))
    page = controls[1].number_input(
        f"Page (of {pages})", min_value=1, max_value=pages, value=1, key=f"ds.class_page.{index}"
    )
    columns = st.columns(GALLERY_COLUMNS)
    for position, pair in enumerate(pairs[(page - 1) * per_page : page * per_page]):
        group = f" · {pair.volume}" if pair.volume else ""
        columns[position % GALLERY_COLUMNS].image(
            thumbnail(str(folder / pair.image)), caption=f"{pair.stem}{group}", width="stretch"
        )


def class_count_chart(manifest: DatasetManifest) -> None:
    """Images per class as bars, with each class's share and (when items carry one) its number of groups."""
    counts = manifest.class_counts
    total = max(sum(counts.values()), 1)
    figure = px.bar(
        pd.DataFrame({"class": list(counts), "images": list(counts.values())}),
        x="class",
        y="images",
        color="class",
        color_discrete_sequence=[class_color(i) for i in range(len(counts))],
        text="images",
    )
    figure.update_layout(
        title="Images per class", showlegend=False, margin={"t": 40, "b": 0, "l": 0, "r": 0}, height=320
    )
    st.plotly_chart(figure, width="stretch")
    groups = {
        name: len({p.volume for p in manifest.pairs if p.label == i and p.volume})
        for i, name in enumerate(manifest.classes)
    }
    rows = [
        {
            "class": name,
            "images": count,
            "share": f"{count / total:.0%}",
            **({"groups": groups[name]} if any(groups.values()) else {}),
        }
        for name, count in counts.items()
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    smallest, largest = min(counts.values()), max(counts.values())
    if smallest and largest / smallest >= 3:
        st.caption(
            f"The classes are imbalanced ({largest}:{smallest}): balanced accuracy and macro F1 say more than "
            "accuracy here."
        )


def split_class_table(split: Split, manifest: DatasetManifest) -> None:
    """Images of each class in train / val / test: stratification keeps the shares alike."""
    counts = class_counts(split, manifest.labels)
    rows = [
        {"class": name, **{part: counts[part][i] for part in ("train", "val", "test")}}
        for i, name in enumerate(manifest.classes)
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption("Stratified: each part holds every class in about the dataset's proportion (groups are never cut).")
