"""Compress & deploy: derive int8 / pruned variants of a trial in the background, compare them with
the original (scores, size, speed, masks — or, for a classifier, predicted labels), and download a
variant or the trial's ONNX / TorchScript. Scores are the study task's report metrics."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import cache, study_cache
from app.nav import page_path
from app.widgets.axes import metric_axis_range
from app.widgets.errors import user_errors
from app.widgets.mask_grid import image_stepper, mask_row, view_controls, zoom_button
from app.widgets.reliability import flag_warning, trial_choices
from core.contract import Task
from core.data.visual import to_rgb
from core.deploy.compression.config import (
    METHODS,
    PRUNE_SCOPES,
    SPARSITY_RANGE,
    TASK_KIND,
    CompressionConfig,
    start_compression,
)
from core.deploy.compression.variants import ExportDownload, export_downloads, trade_off_rows, variant_name, variant_zip
from core.metrics.catalogue import METRICS, label, report_metrics
from core.runtime.tasks import BackgroundTask, TaskState, get_task, list_tasks, read_log_tail

REFRESH = "2s"  # task progress while a compression runs
MASKS = "compress.masks"  # key prefix of the masks view's controls
MAX_IMAGES = 6  # a classifier variant's preview rows
LOG_LINES = 30
EXPORTS = "compress.exports"  # session: the last built ONNX / TorchScript downloads
METHOD_LABELS = {
    "ptq": "int8 static (post-training, calibrated)",
    "dynamic": "int8 dynamic (Linear layers: transformer encoders)",
    "qat": "int8 quantization-aware training",
    "prune": "magnitude pruning",
}
assert set(METHOD_LABELS) == set(METHODS), "every method needs a label"
_DEFAULTS = CompressionConfig(method="prune")


# --- cached reads -------------------------------------------------------------------------------


@st.cache_data(ttl=1.5, show_spinner=False)
def compress_tasks(home: str) -> list[BackgroundTask]:
    return list_tasks(cache.settings(), TASK_KIND)


def latest_task(name: str, number: int) -> BackgroundTask | None:
    """The newest compression task of this study's trial (by its recorded subject)."""
    tasks = compress_tasks(str(cache.settings().home))
    return next((task for task in tasks if task.subject.is_about(name, number)), None)


# --- choosing and starting ----------------------------------------------------------------------


def pick_trial(name: str) -> int | None:
    frame = study_cache.trials_frame(name)
    complete = frame[frame["state"] == "complete"].sort_values(["rank", "number"])
    if complete.empty:
        st.info(
            "No finished trials yet — a model can be compressed once a trial completes. Follow the study on **Jobs**.",
            icon=":material/hourglass_empty:",
        )
        return None
    labels = trial_choices(complete)
    number = st.selectbox(
        "Trial",
        list(labels),
        format_func=labels.__getitem__,
        key="compress.trial",
        help="The best trial is chosen by default (validation only; test metrics are never used to choose).",
    )
    if number is not None:
        flag_warning(complete[complete["number"] == number].iloc[0], "compressed and deployed", study_cache.task(name))
    return number


def method_config() -> CompressionConfig:
    method = (
        st.segmented_control(
            "Method", list(METHOD_LABELS), format_func=METHOD_LABELS.__getitem__, default="ptq", key="compress.method"
        )
        or "ptq"
    )
    if method == "prune":
        left, middle, right = st.columns(3)
        low, high = SPARSITY_RANGE
        sparsity = left.slider(
            "Target sparsity",
            low,
            high,
            _DEFAULTS.sparsity,
            0.05,
            format="%.2f",
            key="compress.sparsity",
            help="Fraction of the prunable weights removed (the cell-segmentation study: 50–90 % costs < 1 % Dice "
            "after a fine-tune).",
        )
        structured = middle.toggle(
            "Whole channels",
            key="compress.structured",
            help="Remove whole channels from every layer: the stored model is smaller and runs faster "
            "(single weights only leave zeros, which shrink the file once zipped).",
        )
        scope = right.radio(
            "Scope",
            PRUNE_SCOPES,
            index=1 if structured else 0,
            key="compress.scope",
            horizontal=True,
            disabled=structured,
            help="One global magnitude threshold, or the same sparsity in every layer.",
        )
        config = CompressionConfig(
            "prune", sparsity=sparsity, structured=structured, scope="layer" if structured else scope
        )
        return replace(config, finetune_epochs=finetune_epochs(config))
    if method == "qat":
        config = CompressionConfig("qat")
        return replace(config, finetune_epochs=finetune_epochs(config))
    return CompressionConfig(method)


def finetune_epochs(config: CompressionConfig) -> float | None:
    """The recovery fine-tune's length; left empty, the method's default (which grows with the training split)."""
    defaults = config.defaults
    return st.number_input(
        "Fine-tune epochs",
        min_value=0.0,
        max_value=1000.0,
        value=None,
        step=1.0,
        key="compress.epochs",
        placeholder=f"default: {defaults.epochs:g} (at least {defaults.min_steps} steps)",
        help="Passes over the training split that let the model recover (0 = one-shot). Too short a fine-tune "
        f"loses Dice; the default runs at learning rate {defaults.lr:g}.",
    )


def start_view(name: str, number: int, task: BackgroundTask | None) -> None:
    with st.container(border=True):
        st.subheader("Derive a variant")
        with user_errors("Checking the settings"):
            config = method_config()
            busy = task is not None and task.is_active
            if st.button(
                "Start compression",
                type="primary",
                icon=":material/compress:",
                disabled=busy,
                key="compress.start",
                help="Runs in the background on the CPU: closing this page does not stop it.",
            ):
                start_compression(cache.settings(), name, number, config)
                compress_tasks.clear()
                st.rerun()


# --- the running task ---------------------------------------------------------------------------


def task_view(task_id: str, drawn_live: bool) -> None:
    # Errors are caught inside: a fragment's own reruns do not pass through the page's code.
    with user_errors("Reading the compression task"):
        task = get_task(cache.settings(), task_id)
        if task.is_active != drawn_live:
            compress_tasks.clear()
            study_cache.forget_variant_records()
            st.rerun()  # the whole page: the new variant appears and the view stops polling
        task_status(task)


def task_status(task: BackgroundTask) -> None:
    with st.container(border=True):
        if task.is_active:
            st.progress(task.fraction, text=f"{task.message} · {task.elapsed_s:.0f} s")
        elif task.status == TaskState.FINISHED:
            st.success(
                f"Stored **{task.result.get('label', 'the variant')}** as variant {task.result.get('variant', '?')} "
                f"in {task.elapsed_s:.0f} s.",
                icon=":material/check_circle:",
            )
        elif task.status == TaskState.FAILED:
            st.error(f"Compression failed: {task.error}", icon=":material/error:")
        elif task.status == TaskState.INTERRUPTED:
            st.warning(f"Compression was interrupted: {task.error}", icon=":material/warning:")
        with st.expander("Log (last lines)", expanded=task.status in (TaskState.FAILED, TaskState.INTERRUPTED)):
            tail = read_log_tail(task, LOG_LINES)
            if tail:
                st.code(tail, language=None)
            else:
                st.caption("Nothing logged yet.")


# --- comparing ----------------------------------------------------------------------------------


MEASURED = {
    "size_mb": st.column_config.NumberColumn("Size (MB)", format="%.3f"),
    "zipped_mb": st.column_config.NumberColumn("Zipped (MB)", format="%.3f"),
    "nonzero_params": st.column_config.NumberColumn("Non-zero params", format="localized"),
    "latency_ms": st.column_config.NumberColumn("CPU ms / image", format="%.1f"),
    "images_per_s": st.column_config.NumberColumn("CPU images / s", format="%.1f"),
}


def table_columns(task: Task) -> dict[str, Any]:
    """The trade-off table's columns: the task's report metrics (Dice, IoU, F1; accuracy, balanced
    accuracy, macro F1) on val and test, the measurements, and deltas of the first metric."""
    metrics = report_metrics(task)
    first = METRICS.get(metrics[0]).label
    scores = {
        f"{split}_{m}": st.column_config.NumberColumn(f"{title} {METRICS.get(m).label}", format="%.3f")
        for split, title in (("val", "Val"), ("test", "Test"))
        for m in metrics
    }
    return {
        "model": st.column_config.TextColumn("Model"),
        **scores,
        **MEASURED,
        f"delta_val_{metrics[0]}": st.column_config.NumberColumn(f"Δ val {first}", format="%+.3f"),
        f"delta_test_{metrics[0]}": st.column_config.NumberColumn(f"Δ test {first}", format="%+.3f"),
        "delta_size_mb": st.column_config.NumberColumn("Δ size (MB)", format="%+.3f"),
        "speedup": st.column_config.NumberColumn("Speed-up", format="%.2f×"),
    }


def trade_off_figure(rows: pd.DataFrame, task: Task) -> go.Figure:
    """Size against the first validation report metric (Dice, accuracy), one point per model; the original is the star
    to beat."""
    metric = f"val_{report_metrics(task)[0]}"
    name = label(metric)
    figure = go.Figure()
    for is_original, group in rows.groupby(rows["variant"] == 0):
        figure.add_trace(
            go.Scatter(
                x=group["size_mb"],
                y=group[metric],
                mode="markers+text",
                text=group["model"],
                textposition="top center",
                name="original" if is_original else "variants",
                marker={"size": 16 if is_original else 11, "symbol": "star" if is_original else "circle"},
                customdata=group[["latency_ms", "nonzero_params"]],
                hovertemplate=f"%{{text}}<br>%{{x:.3f}} MB · {name.lower()} %{{y:.3f}}<br>%{{customdata[0]:.1f}} "
                "ms/image · %{customdata[1]:,} non-zero<extra></extra>",
            )
        )
    figure.update_layout(xaxis_title="Model file size (MB)", yaxis_title=name, height=380, margin={"t": 30})
    figure.update_yaxes(range=metric_axis_range(rows[metric]))  # a 0.0001 drop must not look like a cliff
    return figure


def key_columns(task: Task) -> list[str]:
    """The trade-off table's columns shown by default: the first report metric on val and test, size,
    weights left, speed and the deltas; few enough to fit a 1280 px window without scrolling."""
    first = report_metrics(task)[0]
    return [
        "variant",
        "model",
        f"val_{first}",
        f"test_{first}",
        "size_mb",
        "nonzero_params",
        "latency_ms",
        f"delta_val_{first}",
        "speedup",
    ]


def comparison_view(records: list[dict[str, Any]], task: Task) -> None:
    rows = pd.DataFrame(trade_off_rows(records))
    # variants measured before a metric existed (e.g. NSD, HD95) have no column for it
    columns = {name: config for name, config in table_columns(task).items() if name in rows}
    every = st.toggle(
        "All columns",
        key="compress.all_columns",
        help="Every report metric on val and test, zipped size, images per second and the test and size deltas",
    )
    st.dataframe(
        rows[["variant", *columns]],
        hide_index=True,
        width="stretch",
        key="compress.table",
        column_order=None if every else key_columns(task),
        column_config={"variant": st.column_config.NumberColumn("#", format="%d"), **columns},
    )
    st.caption(
        "Deltas are against the original measured in the same run; CPU timings are from the machine that ran it. "
        "int8 variants run on the CPU only."
    )
    st.plotly_chart(trade_off_figure(rows, task), key="compress.chart")


def masks_view(name: str, number: int, index: int, label: str) -> None:
    """One preview image at a time, large: image, ground truth, the original's and the variant's masks."""
    preview = study_cache.previews(name, (number,))
    if number not in preview.predictions:
        st.info(
            f"Trial #{number} stored no preview predictions to compare with.", icon=":material/image_not_supported:"
        )
        return
    variant = study_cache.variant_masks(name, number, index)
    compared = preview.with_masks(f"variant{index}", f"Variant {index} · {label}", variant, after=number)
    # two pictures a row: the original's and the variant's masks side by side, each half the page wide
    view, order, opacity, per_row, colours = view_controls(compared, key=MASKS, per_row=2)
    ordered = compared.order(order)
    shown = ordered[image_stepper(len(ordered), key=MASKS) - 1]
    changed = float((preview.predictions[number][shown] != variant[shown]).mean())
    st.caption(
        f"{preview.stems[shown]}: the variant's mask differs from the original's on {changed:.2%} of the pixels."
    )
    mask_row(compared, shown, view=view, opacity=opacity, per_row=per_row, colours=colours)
    zoom_button(compared, shown, view=view, opacity=opacity, key=MASKS, colours=colours)
    with st.expander(f"Per-image Dice of all {len(ordered)} preview images"):
        table = compared.dice_table(ordered)
        st.dataframe(
            table,
            hide_index=True,
            column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns if c != "image"},
        )
    st.page_link(
        page_path("compare.py"), label="Put variants next to other trials on Compare masks", icon=":material/compare:"
    )


def labels_view(name: str, number: int, index: int) -> None:
    """A classifier's variant against its original on the preview images: true class, both predictions."""
    stems = study_cache.preview_stems(name)[:MAX_IMAGES]
    original = study_cache.prediction_comparison(name, (number,))
    if number not in original.trials or not stems:
        st.info(
            f"Trial #{number} stored no validation predictions to compare with.", icon=":material/image_not_supported:"
        )
        return
    variant = study_cache.variant_masks(name, number, index)  # a classifier's: its labels
    images = study_cache.prediction_images(name, tuple(stems))
    rows = {stem: row for row, stem in enumerate(original.stems)}
    header = st.columns(4)
    for column, title in zip(header, ("Image", "True class", f"Original #{number}", f"Variant {index}")):
        column.markdown(f"**{title}**")
    for position, stem in enumerate(stems):
        cells = st.columns(4, vertical_alignment="center")
        cells[0].image(to_rgb(images[position]), caption=stem)
        row = rows.get(stem)
        if row is None:  # not among the trial's validation images (e.g. another fold's)
            cells[1].markdown("—")
            continue
        truth = int(original.labels[row])
        ours = original.trials[number]
        cells[1].markdown(original.classes[truth])
        cells[2].markdown(_label_text(original.classes, int(ours.predicted[row]), truth, float(ours.confidence[row])))
        cells[3].markdown(_label_text(original.classes, int(variant[position]), truth))


def _label_text(classes: tuple[str, ...], predicted: int, truth: int, confidence: float | None = None) -> str:
    text = classes[predicted] + (f" · {confidence:.2f}" if confidence is not None else "")
    return f":green[:material/check: {text}]" if predicted == truth else f":red[:material/close: {text}]"


# --- downloads ----------------------------------------------------------------------------------


def variant_download(name: str, number: int, index: int) -> None:
    current = study_cache.study(name)
    st.download_button(
        f"Download variant {index} (.zip)",
        lambda: variant_zip(current, number, index, cache.artifact_store()),
        file_name=f"{variant_name(current, number, index)}.zip",
        mime="application/zip",
        icon=":material/deployed_code_history:",
        key=f"compress.variant_zip.{index}",
        help="Its model file (safetensors, or TorchScript for int8) with segtune.json, "
        "model.onnx with predict.py (numpy + Pillow + onnxruntime only) and a model card.",
    )


def exports_view(name: str, number: int) -> None:
    st.subheader("ONNX and TorchScript")
    st.caption("The original trial's model in portable formats, each checked against PyTorch right after writing.")
    if st.button("Build ONNX + TorchScript", icon=":material/build:", key="compress.build_exports"):
        with user_errors("Exporting the model"), st.spinner("Exporting and checking…"):
            files, checked_on = export_downloads(study_cache.study(name), number, cache.artifact_store())
            st.session_state[EXPORTS] = (name, number, files, checked_on)
    built = st.session_state.get(EXPORTS)
    if not built or built[:2] != (name, number):
        return
    files: list[ExportDownload] = built[2]
    st.caption(f"Parity checked on {built[3]}.")
    for column, exported in zip(st.columns(len(files)), files):
        column.download_button(
            f"Download {exported.format} ({len(exported.data) / 2**20:.2f} MB)",
            exported.data,
            file_name=exported.file_name,
            key=f"compress.export.{exported.format}",
            width="stretch",
        )
        column.caption(f"max |Δ| vs PyTorch: {exported.max_abs_diff:.2e}" if exported.max_abs_diff is not None else "")


# --- page ---------------------------------------------------------------------------------------


def variants_view(name: str, number: int) -> None:
    records = study_cache.variant_records(name, number)
    if not records:
        st.info(f"Trial #{number} has no compressed variants yet — start one above.", icon=":material/compress:")
        return
    task = study_cache.task(name)
    st.subheader("Trade-off")
    comparison_view(records, task)
    st.subheader("Predicted labels and downloads" if task == Task.CLASSIFICATION else "Masks and downloads")
    labels = {i: f"{i} · {record['label']}" for i, record in enumerate(records, 1)}
    index = st.selectbox(
        "Variant", list(labels), index=len(labels) - 1, format_func=labels.__getitem__, key="compress.variant"
    )
    variant_download(name, number, index)
    with user_errors("Drawing the variant's predictions"):
        if task == Task.CLASSIFICATION:
            labels_view(name, number, index)
        else:
            masks_view(name, number, index, records[index - 1]["label"])


def page(name: str) -> None:
    number = pick_trial(name)
    if number is None:
        return
    task = latest_task(name, number)
    start_view(name, number, task)
    if task is not None:
        st.fragment(run_every=REFRESH if task.is_active else None)(task_view)(task.id, task.is_active)
    variants_view(name, number)
    exports_view(name, number)


st.title("Compress & deploy")
st.caption(
    "Quantize or prune a trained model in the background, see what it costs in accuracy and gains in size and "
    "speed, and download it — or the original as ONNX / TorchScript."
)
study = study_cache.require_study()
with user_errors("Preparing compression"):
    page(study)
