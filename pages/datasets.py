"""Datasets: add image/mask or labelled-image sets (zip, server folder, demo), look at them, choose their split."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from app import cache, state
from app.widgets.errors import user_errors
from app.widgets.labelled import class_count_chart, class_gallery, hex_color, split_class_table
from app.widgets.mask_grid import channel_picker
from app.widgets.spec_form import split_editor
from core.data.archives import volume_limits
from core.data.demo import DEMO_NAME, create_demo_dataset
from core.data.images import channels_label, read_image, read_mask
from core.data.ingest import ingest_dataset
from core.data.intensity import WINDOW_PRESETS, IntensityConfig, intensity_from_options
from core.data.manifest import DatasetManifest, Task, dataset_path, dataset_stats, spacing_summary, volume_rows
from core.data.mask_presence import mask_presence_dataset, presence_classes, presence_labels
from core.data.splits import file_split, make_split
from core.data.visual import class_colors, overlay_mask, shrink, to_rgb
from core.data.volume_ingest import VolumeIngestOptions, ingest_volumes
from core.data.volumes import slice_caption
from core.naming import is_valid_name
from core.runtime.dataset_guard import delete_dataset_safely

GALLERY_COLUMNS = 4
THUMBNAIL_PX = 256
SPLIT_PREFIX = "ds.split."
DATASET_PICKER = "ds.choice"
AXES = {2: "2 · axial", 1: "1 · coronal", 0: "0 · sagittal"}
INTENSITY_LABELS = {"percentile": "MRI: percentile 0.5–99.5 %", "custom": "CT window: level / width"}
TASKS: dict[str | None, str] = {
    None: "Detect from the layout",
    Task.SEGMENTATION: "Segmentation (images + masks)",
    Task.CLASSIFICATION: "Classification (class folders or labels.csv)",
}


@st.cache_data(max_entries=256, show_spinner=False)
def thumbnail(
    image_path: str, mask_path: str, num_classes: int, alpha: float, channel: int | None = None
) -> np.ndarray:
    """``channel``: for images of more than 3 channels (sequences), the one shown as grey (None: the first 3 as RGB)."""
    picture = to_rgb(read_image(Path(image_path)), channel)
    overlay = overlay_mask(picture, read_mask(Path(mask_path)), class_colors(num_classes), alpha)
    return shrink(overlay, THUMBNAIL_PX)


def ingest(
    source: Path,
    name: str,
    classes_text: str,
    volumes: VolumeIngestOptions | None = None,
    *,
    confine: bool = False,
    task: str | None = None,
    source_name: str | None = None,
) -> None:
    """Ingest inside a status box: unpacking first (no per-pair progress yet), then a bar over the pairs.

    ``confine``: a path typed by the user, read only under the server's import roots. ``task``:
    None detects segmentation or classification from the layout. ``source_name``: the uploaded
    file's own name, recorded as the source instead of the temporary copy's path.
    """
    classes = [c.strip() for c in classes_text.split(",") if c.strip()] or None
    roots = cache.settings().server_import_roots if confine else None
    first_step = "Extracting and checking the zip…" if source.suffix.lower() == ".zip" else "Reading the folder…"
    manifest: DatasetManifest | None = None
    with st.status(first_step, expanded=True) as status:
        bar = st.progress(0.0, text=first_step)

        def progress(done: int, total: int) -> None:
            what = "volumes" if volumes else "pairs"
            if done == 1:
                status.update(label=f"Checking {total} {'image/label volumes' if volumes else 'image/mask pairs'}…")
            bar.progress(done / max(total, 1), text=f"Checked {done} of {total} {what}")

        with user_errors("Adding the dataset"):
            datasets_dir = cache.settings().datasets_dir
            if volumes is not None:
                manifest = ingest_volumes(
                    source,
                    name,
                    datasets_dir,
                    classes=classes,
                    options=volumes,
                    progress=progress,
                    confine_to=roots,
                    limits=volume_limits(cache.settings().max_volume_mb),
                )
            else:
                manifest = ingest_dataset(
                    source,
                    name,
                    datasets_dir,
                    classes=classes,
                    progress=progress,
                    confine_to=roots,
                    task=task,
                    source_name=source_name,
                )
        bar.empty()
        status.update(
            label="Dataset added" if manifest else "The dataset was not added",
            state="complete" if manifest else "error",
            expanded=manifest is None,
        )
    if manifest:
        cache.clear_reads()
        state.DATASET.set(manifest.name)
        st.success(f"Added **{manifest.name}**: {contents(manifest)}.", icon=":material/check_circle:")


def contents(manifest: DatasetManifest) -> str:
    if manifest.is_classification:
        return (
            f"{len(manifest.pairs)} labelled images in {manifest.num_classes} classes ({', '.join(manifest.classes)})"
        )
    extra = f" from {len(manifest.volumes)} volumes" if manifest.is_volume else ""
    return f"{len(manifest.pairs)} image/mask pairs{extra}"


def default_name(filename: str) -> str:
    stem = Path(filename).stem.replace(" ", "-")
    return stem if is_valid_name(stem) else "my-dataset"


def add_dataset_section(has_datasets: bool) -> None:
    with st.expander("Add a dataset", expanded=not has_datasets, icon=":material/add_photo_alternate:"):
        st.caption(
            "Segmentation: a folder (or zip) with `images/` and `masks/`; a mask has its image's file name (PNG, 0 = "
            "background). Classification: one sub-folder of images per class (`normal/`, `tumour/`), or the images "
            "with a `labels.csv` (`name,label[,group]`). Every problem is listed and nothing is stored until all are "
            "valid."
        )
        upload_tab, folder_tab, volume_tab, demo_tab = st.tabs(
            ["Upload a .zip", "Folder on the server", "Medical volumes", "Demo dataset"]
        )
        with volume_tab:
            volume_section()
        with upload_tab:
            upload = st.file_uploader("Zip file", type=["zip"], key="ds.upload")
            suggested = default_name(upload.name) if upload else ""
            name = (
                st.text_input("Dataset name", key="ds.upload_name", placeholder=suggested or "my-dataset").strip()
                or suggested
            )
            task = task_picker("ds.upload_task")
            classes = st.text_input(
                "Class names (optional)", key="ds.upload_classes", placeholder="background, tumour", help=CLASSES_HELP
            )
            if st.button("Add dataset", disabled=upload is None or not name, type="primary", key="ds.upload_go"):
                with tempfile.TemporaryDirectory(prefix="segtune-upload-") as tmp:
                    archive = Path(tmp) / "upload.zip"
                    archive.write_bytes(upload.getvalue())
                    ingest(
                        archive, name, classes, task=task, source_name=upload.name
                    )  # provenance: the user's file, not the copy
        with folder_tab:
            roots = cache.settings().server_import_roots
            st.caption(
                "Only folders (or .zip files) inside these server folders can be read: "
                + ", ".join(f"`{root}`" for root in roots)
                + ". Give a path inside one of them, or a name relative to it. The administrator sets them with "
                "`SEGTUNE_IMPORT_ROOTS`."
            )
            folder = st.text_input("Folder path", key="ds.folder", placeholder=f"{roots[0]}/my-images")
            suggested = default_name(folder.rstrip("/")) if folder else ""
            name = (
                st.text_input("Dataset name", key="ds.folder_name", placeholder=suggested or "my-dataset").strip()
                or suggested
            )
            task = task_picker("ds.folder_task")
            classes = st.text_input(
                "Class names (optional)",
                key="ds.folder_classes",
                placeholder="background, foreground",
                help=CLASSES_HELP,
            )
            if st.button("Add dataset", disabled=not folder or not name, type="primary", key="ds.folder_go"):
                ingest(Path(folder.strip()), name, classes, confine=True, task=task)
        with demo_tab:
            st.write(
                "Sixty 128 px images of cell-like shapes with their masks, generated here — enough for a first study "
                "in minutes."
            )
            demo_button("tab")


CLASSES_HELP = (
    "Comma-separated. Segmentation: background first (default: background, foreground). Classification: the labels in "
    "class-index order (default: the class folders' or labels.csv's labels, sorted)."
)


def task_picker(key: str) -> str | None:
    return st.selectbox(
        "Task",
        list(TASKS),
        key=key,
        format_func=TASKS.get,
        help="What the dataset is for; detected from the layout unless you choose: images/ + masks/ is segmentation, "
        "class sub-folders or labels.csv classification.",
    )


def volume_section() -> None:
    st.caption(
        "NIfTI in the MSD / nnU-Net layout (`imagesTr/` + `labelsTr/`; several sequences `case_0000`, `case_0001` … "
        "become channels) or DICOM series folders in `imagesTr/<case>/` with NIfTI labels. Stored as 2D slices; each "
        "volume stays in one split."
    )
    roots = cache.settings().server_import_roots
    folder = st.text_input(
        "Folder or .zip path on the server",
        key="ds.vol_path",
        placeholder="Task03_Liver",
        help="A path under the import folders (SEGTUNE_IMPORT_ROOTS), absolute or relative to one of them.",
    )
    st.caption("Readable import folders: " + ", ".join(f"`{root}`" for root in roots))
    suggested = default_name(folder.rstrip("/")) if folder else ""
    name = st.text_input("Dataset name", key="ds.vol_name", placeholder=suggested or "my-volumes").strip() or suggested
    cols = st.columns(3)
    axis = cols[0].selectbox("Slicing axis", [2, 1, 0], key="ds.vol_axis", format_func=AXES.get)
    intensity_name = cols[1].selectbox(
        "Intensity",
        ["percentile", *WINDOW_PRESETS.names, "custom"],
        key="ds.vol_intensity",
        format_func=lambda n: INTENSITY_LABELS.get(n, f"CT window: {n}"),
    )
    empty = cols[2].slider(
        "Share of empty slices kept", 0.0, 1.0, 1.0, 0.05, key="ds.vol_empty", help="Slices without any foreground"
    )
    level = width = None
    if intensity_name == "custom":
        lw = st.columns(2)
        level = lw[0].number_input("Window level (HU)", value=40.0, key="ds.vol_level")
        width = lw[1].number_input("Window width (HU)", value=400.0, min_value=1.0, key="ds.vol_width")
    resample = st.checkbox(
        "Resample unevenly spaced DICOM series",
        key="ds.vol_resample",
        help="A DICOM series with a missing slice or mixed spacings is refused unless this is on: then it is "
        "resampled along the slice normal onto an even grid at its median step (intensities interpolated "
        "linearly) and its DICOM-SEG label follows (nearest slice); a NIfTI label cannot, so it is refused.",
    )
    classes = st.text_input(
        "Class names (optional)",
        key="ds.vol_classes",
        placeholder="background, liver, tumour",
        help="Default: from the folder's dataset.json, else background, foreground.",
    )
    if st.button("Add volumes", disabled=not folder or not name, type="primary", key="ds.vol_go"):
        window = intensity_name if intensity_name in WINDOW_PRESETS else None
        with user_errors("Reading the options"):
            options = VolumeIngestOptions(
                axis=axis,
                intensity=intensity_from_options(window, level, width, None),
                empty_fraction=empty,
                resample_uneven=resample,
            )
            ingest(Path(folder.strip()), name, classes, volumes=options, confine=True)


def demo_button(where: str) -> None:
    exists = DEMO_NAME in cache.datasets()
    if st.button(
        "Create demo dataset",
        disabled=exists,
        icon=":material/auto_awesome:",
        key=f"ds.demo_{where}",
        type="primary" if where == "empty" else "secondary",
    ):
        with st.spinner("Generating images…"), user_errors("Creating the demo dataset"):
            create_demo_dataset(cache.settings().datasets_dir)
            cache.clear_reads()
            state.DATASET.set(DEMO_NAME)
            st.rerun()
    if exists:
        st.caption(f"The demo dataset **{DEMO_NAME}** is already here.")


def overview(manifest: DatasetManifest) -> None:
    stats = dataset_stats(manifest)
    columns = st.columns(5)
    if manifest.is_classification:
        smallest = min(stats.class_counts, key=lambda name: stats.class_counts[name])
        columns[0].metric(
            "Labelled images",
            stats.count,
            help=f"from {len(set(manifest.groups.values()))} groups" if manifest.groups else None,
        )
        columns[1].metric("Most common size", next(iter(stats.sizes), "–"), help=f"{len(stats.sizes)} distinct size(s)")
        columns[2].metric("Channels", channels_label(stats.channels))
        columns[3].metric("Classes", manifest.num_classes, help=", ".join(manifest.classes))
        columns[4].metric("Smallest class", stats.class_counts[smallest], help=smallest)
        return
    columns[0].metric(
        "Image/mask pairs", stats.count, help=f"slices of {stats.volumes} volumes" if stats.volumes else None
    )
    columns[1].metric("Most common size", next(iter(stats.sizes), "–"), help=f"{len(stats.sizes)} distinct size(s)")
    columns[2].metric("Channels", channels_label(stats.channels))
    columns[3].metric("Classes", manifest.num_classes, help=", ".join(manifest.classes))
    columns[4].metric("Empty masks", stats.empty_masks, help="Masks without any foreground pixel")


def volume_gallery(manifest: DatasetManifest) -> None:
    """Volume datasets: pick a volume, step through its stored slices."""
    slices = manifest.volume_slices()
    controls = st.columns([2, 2, 3], vertical_alignment="bottom")
    volume = controls[0].selectbox(
        "Volume", list(slices), key="ds.volume", format_func=lambda v: f"{v} ({len(slices[v])} slices)"
    )
    alpha = controls[1].slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="ds.alpha")
    channel = channel_picker(manifest.channels, "ds.channel")
    colors = class_colors(manifest.num_classes)
    legend = " · ".join(
        f"<span style='color:{hex_color(c)}'>■</span> {name}" for c, name in zip(colors[1:], manifest.classes[1:])
    )
    controls[2].markdown(legend, unsafe_allow_html=True)
    pairs = slices[volume]
    position = (
        st.slider(
            "Slice",
            0,
            len(pairs) - 1,
            0,
            key=f"ds.slice.{volume}",
            format="%d",
            help="Position among the stored slices (empty slices may have been left out at ingest)",
        )
        if len(pairs) > 1
        else 0
    )
    pair = pairs[position]
    folder = dataset_path(cache.settings().datasets_dir, manifest.name)
    picture = thumbnail(str(folder / pair.image), str(folder / pair.mask), manifest.num_classes, alpha, channel)
    info = next(v for v in manifest.volumes if v.volume == volume)
    left, right = st.columns([2, 1])
    left.image(
        picture,
        caption=f"{slice_caption(pair.stem)} of {info.total_slices} · {sum(pair.foreground):.0%} foreground",
        width="stretch",
    )
    right.markdown(f"**{volume}**")
    right.caption(
        f"{'x'.join(map(str, info.shape))} voxels · {' x '.join(f'{s:.3g}' for s in info.spacing)} mm · "
        f"{info.orientation}"
    )
    right.caption(f"Source: `{', '.join(info.images)}` + `{info.label}`")
    slicing = manifest.slicing
    if slicing is not None:
        right.caption(f"Axis {slicing.axis} · {IntensityConfig.from_dict(slicing.intensity).description}")


def gallery(manifest: DatasetManifest) -> None:
    if manifest.is_classification:
        class_gallery(manifest, dataset_path(cache.settings().datasets_dir, manifest.name))
        return
    if manifest.is_volume:
        volume_gallery(manifest)
        return
    controls = st.columns([2, 2, 3], vertical_alignment="bottom")
    alpha = controls[0].slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="ds.alpha")
    per_page = GALLERY_COLUMNS * 3
    pages = max(1, -(-len(manifest.pairs) // per_page))
    page = controls[1].number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key="ds.page")
    colors = class_colors(manifest.num_classes)
    legend = " · ".join(
        f"<span style='color:{hex_color(c)}'>■</span> {name}" for c, name in zip(colors[1:], manifest.classes[1:])
    )
    controls[2].markdown(legend, unsafe_allow_html=True)
    folder = dataset_path(cache.settings().datasets_dir, manifest.name)
    shown = manifest.pairs[(page - 1) * per_page : page * per_page]
    columns = st.columns(GALLERY_COLUMNS)
    for index, pair in enumerate(shown):
        picture = thumbnail(str(folder / pair.image), str(folder / pair.mask), manifest.num_classes, alpha)
        fraction = sum(pair.foreground)
        columns[index % GALLERY_COLUMNS].image(
            picture, caption=f"{pair.stem} · {fraction:.0%} foreground", width="stretch"
        )


def statistics(manifest: DatasetManifest) -> None:
    stats = dataset_stats(manifest)
    chart, sizes = st.columns([3, 1])
    if manifest.is_classification:
        with chart:
            class_count_chart(manifest)
    else:
        rows = [
            {"class": name, "foreground fraction": value}
            for name, values in stats.foreground.items()
            for value in values
        ]
        figure = px.histogram(
            pd.DataFrame(rows),
            x="foreground fraction",
            color="class",
            nbins=30,
            barmode="overlay",
            color_discrete_sequence=[hex_color(c) for c in class_colors(manifest.num_classes)[1:]],
        )
        figure.update_layout(
            title="Foreground fraction per image",
            yaxis_title="images",
            margin={"t": 40, "b": 0, "l": 0, "r": 0},
            height=320,
        )
        chart.plotly_chart(figure, width="stretch")
    sizes.markdown("**Image sizes**")
    sizes.dataframe(
        pd.DataFrame({"size (W×H)": list(stats.sizes), "images": list(stats.sizes.values())}),
        hide_index=True,
        width="stretch",
    )
    sizes.caption(f"{stats.bit_depth}-bit images · source `{Path(manifest.source).name}`")
    if manifest.is_volume:
        counts = list(stats.slices_per_volume.values())
        st.markdown(
            f"**{stats.volumes} volumes** · {min(counts)}–{max(counts)} slices per volume (mean "
            f"{np.mean(counts):.1f}) stored · spacing {spacing_summary(stats.spacing)}"
        )
        st.dataframe(pd.DataFrame(volume_rows(manifest)), hide_index=True, width="stretch")


def split_settings(manifest: DatasetManifest) -> None:
    st.caption(
        "How new studies divide this dataset. The split is frozen per dataset and seed, and stored with every study."
    )
    settings_col, preview_col = st.columns([3, 2])
    with settings_col:
        split = split_editor(SPLIT_PREFIX, state.SPLIT.get())
    with preview_col, user_errors("Previewing the split"):
        if split.from_file:
            folder = dataset_path(cache.settings().datasets_dir, manifest.name)
            made = file_split(folder, manifest.stems, split, manifest.labels)
            st.caption("From the dataset's own split.csv")
        else:
            made = make_split(manifest.stems, split, manifest.groups, manifest.labels)
        cols = st.columns(3)
        cols[0].metric("Train", len(made.train))
        cols[1].metric("Validation", len(made.val))
        cols[2].metric("Test", len(made.test))
        if manifest.is_classification:
            split_class_table(made, manifest)
        state.SPLIT.set(split)
        st.caption("New studies use this split (you can still change it on **New study**).")


def presence_section(manifest: DatasetManifest) -> None:
    """Make a 'mask empty / not empty' classification dataset from this segmentation one."""
    st.markdown("**Classify by mask: empty / not empty**")
    positives = sum(presence_labels(manifest).values())
    negative, positive = presence_classes(manifest)
    st.caption(
        f"A new classification dataset of the same images: **{positive}** when the mask holds any foreground "
        f"({positives} images), **{negative}** when it is empty ({len(manifest.pairs) - positives}). "
        + ("Slices keep their volume, so each volume stays in one split." if manifest.groups else "")
    )
    left, right = st.columns(2)
    name = (
        left.text_input("New dataset name", key="ds.presence_name", placeholder=f"{manifest.name}-presence").strip()
        or f"{manifest.name}-presence"
    )
    classes = right.text_input(
        "Class names (optional)",
        key="ds.presence_classes",
        placeholder=f"{negative}, {positive}",
        help="Two names: empty masks first.",
    )
    both = 0 < positives < len(manifest.pairs)
    if not both:
        st.caption("Every mask is " + ("empty" if not positives else "non-empty") + ": one class would have no images.")
    if st.button("Create classification dataset", key="ds.presence_go", icon=":material/category:", disabled=not both):
        with user_errors("Creating the classification dataset"):
            names = [c.strip() for c in classes.split(",") if c.strip()] or None
            created = mask_presence_dataset(cache.settings().datasets_dir, manifest.name, name, classes=names)
            cache.clear_reads()
            state.DATASET.set(created.name)
            st.success(f"Created **{created.name}**: {contents(created)}.", icon=":material/check_circle:")


def manage(manifest: DatasetManifest) -> None:
    if not manifest.is_classification:
        presence_section(manifest)
        st.divider()
    st.caption(
        f"Added {manifest.created[:19].replace('T', ' ')} UTC from `{manifest.source}` · checksum "
        f"`{manifest.checksum[:12]}`"
    )
    confirm = st.text_input(f"Type **{manifest.name}** to delete this dataset", key="ds.delete_confirm")
    if st.button(
        "Delete dataset", type="secondary", disabled=confirm != manifest.name, icon=":material/delete:", key="ds.delete"
    ):
        with user_errors("Deleting the dataset"):
            delete_dataset_safely(cache.settings(), manifest.name)  # refused while a job trains on it
            cache.clear_reads()
            state.DATASET.clear()
            st.session_state.pop("ds.delete_confirm", None)
            st.rerun()


def _pick_dataset() -> None:
    state.DATASET.set(st.session_state[DATASET_PICKER])


def dataset_view(names: list[str]) -> None:
    # Follow a choice made elsewhere (a new upload, New study) before the picker is drawn.
    st.session_state[DATASET_PICKER] = state.DATASET.get() if state.DATASET.get() in names else names[0]
    chosen = st.selectbox("Dataset", names, key=DATASET_PICKER, on_change=_pick_dataset)
    state.DATASET.set(chosen)
    manifest: Any = None
    with user_errors("Reading the dataset"):
        manifest = cache.manifest(chosen)
    if manifest is None:
        return
    overview(manifest)
    gallery_tab, stats_tab, split_tab, manage_tab = st.tabs(["Gallery", "Statistics", "Split", "Manage"])
    with gallery_tab:
        gallery(manifest)
    with stats_tab:
        statistics(manifest)
    with split_tab:
        split_settings(manifest)
    with manage_tab:
        manage(manifest)


st.title("Datasets")
st.caption("Images with their masks or their classes: add them, check them, and choose how studies split them.")
add_dataset_section(bool(cache.datasets()))
names = cache.datasets()  # again: the section above may just have added one
if not names:
    st.info("No datasets yet — create the demo dataset or upload a zip.", icon=":material/info:")
    demo_button("empty")
else:
    dataset_view(names)
