"""Variants stored with their trial (study user attrs + optuna.artifacts), and shipping them."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.contract import variants_attr
from core.deploy.compression.config import REPORT_METRICS, CompressedVariant, CompressionError
from core.deploy.compression.measure import VariantReport, saved_file
from core.deploy.export import add_onnx, export_trial, parity_sample, preview_images, zip_folder
from core.modeling.bundle import (
    SEGTUNE_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
    BundleConfig,
    is_int8_folder,
    load_bundle,
    load_bundle_config,
    load_model,
    save_bundle,
    trial_bundle,
    write_metadata,
)
from core.modeling.inference import predict_indices
from core.results.trials import get_trial

if TYPE_CHECKING:
    import optuna


# artifact kind -> file name; "config" is the bundle metadata (written as config.json before the smp layout)
VARIANT_FILES: dict[str, str] = {"weights": WEIGHTS_FILE, "torchscript": TORCHSCRIPT_FILE, "config": SEGTUNE_FILE}


def list_variants(study: optuna.Study, trial_number: int) -> list[dict[str, Any]]:
    """The variants stored for a trial: {method, label, params, artifacts, metrics}, oldest first."""
    return list(study.user_attrs.get(variants_attr(trial_number), []))


def save_variant(variant: CompressedVariant, bundle: BundleConfig, folder: Path, sample: torch.Tensor) -> Path:
    """A loadable model folder (see core.modeling.bundle.load_model): bundle (a channel-pruned one records
    its layer shapes in segtune.json), or TorchScript + segtune.json for int8."""
    source = {**bundle.source, "variant": {"method": variant.config.method, "params": variant.params}}
    config = replace(bundle, source=source, pruned_channels=variant.channels)
    if not variant.quantized:
        return save_bundle(variant.model, config, folder)
    saved_file(variant.model, True, sample, folder)
    (folder / SEGTUNE_FILE).write_text(config.to_json(), encoding="utf-8")
    return folder


def store_variant(
    study: optuna.Study,
    trial_number: int,
    variant: CompressedVariant,
    report: VariantReport,
    bundle: BundleConfig,
    artifact_store: Any,
    sample: torch.Tensor,
    original: VariantReport | None = None,
) -> dict[str, Any]:
    """Upload the variant through optuna.artifacts and append it to the trial's variant list.

    ``original`` is the original's report measured in the same run (its row in the trade-off table).
    """
    from optuna.artifacts import upload_artifact

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_variant(variant, bundle, Path(tmp) / "variant", sample)
        artifacts = {
            kind: upload_artifact(artifact_store=artifact_store, file_path=str(folder / name), study_or_trial=study)
            for kind, name in VARIANT_FILES.items()
            if (folder / name).is_file()
        }
    record = {
        "method": variant.config.method,
        "label": variant.config.label,
        "params": variant.params,
        "artifacts": artifacts,
        "metrics": report.to_dict(),
    }
    if original is not None:
        record["original"] = original.to_dict()
    study.set_user_attr(variants_attr(trial_number), [*list_variants(study, trial_number), record])
    return record


def download_variant(record: dict[str, Any], artifact_store: Any, folder: Path) -> Path:
    """Write a stored variant's files into ``folder`` in today's bundle layout (loadable with
    core.modeling.bundle.load_model; a float variant of an smp architecture is an smp folder too)."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, artifact_id in record["artifacts"].items():
        with artifact_store.open_reader(artifact_id) as reader:
            (folder / VARIANT_FILES[kind]).write_bytes(reader.read())
    if (folder / WEIGHTS_FILE).is_file():
        write_metadata(load_bundle_config(folder), folder)  # adds smp's config.json
    return folder


TABLE_FIELDS: tuple[str, ...] = ("size_mb", "zipped_mb", "nonzero_params", "total_params", "latency_ms", "images_per_s")


def get_variant(study: optuna.Study, trial_number: int, index: int) -> dict[str, Any]:
    """Variant ``index`` (1-based, as listed) of a trial."""
    records = list_variants(study, trial_number)
    if not 1 <= index <= len(records):
        valid = f"1..{len(records)}" if records else "none: compress the trial first"
        raise CompressionError(f"trial #{trial_number} has no variant {index}; valid: {valid}")
    return records[index - 1]


def original_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The original's report measured with ``record``; rebuilt from the deltas for records without one."""
    if "original" in record:
        return record["original"]
    metrics, deltas = record["metrics"], record["metrics"]["deltas"]
    rebuilt: dict[str, Any] = {"name": "original", "method": "original", "params": {}, "deltas": {}}
    for split in ("val", "test"):
        rebuilt[split] = {k: v - deltas[f"{split}_{k}"] for k, v in metrics[split].items() if f"{split}_{k}" in deltas}
    for name in TABLE_FIELDS:
        rebuilt[name] = metrics[name] - deltas.get(name, 0.0)
    return rebuilt


def _row(variant: int, label: str, metrics: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"variant": variant, "model": label, "method": metrics["method"]}
    scores = tuple(metrics["val"]) or REPORT_METRICS  # the study task's report metrics, as measured
    for split in ("val", "test"):
        row.update({f"{split}_{k}": metrics[split].get(k, math.nan) for k in scores})
    row.update({name: metrics[name] for name in TABLE_FIELDS})
    deltas = metrics.get("deltas") or {}
    row.update(
        {
            f"delta_{k}": deltas.get(k, math.nan)
            for k in (f"val_{scores[0]}", f"test_{scores[0]}", "size_mb", "latency_ms")
        }
    )
    row["speedup"] = deltas.get("speedup", 1.0 if variant == 0 else math.nan)
    return row


def trade_off_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows for a table or chart: the original (variant 0, as measured with the newest variant),
    then every variant with its deltas against the original measured in the same run."""
    if not records:
        return []
    rows = [_row(0, "original", original_metrics(records[-1]))]
    rows += [_row(index, record["label"], record["metrics"]) for index, record in enumerate(records, 1)]
    return rows


def variant_predictions(study: optuna.Study, trial_number: int, index: int, artifact_store: Any) -> np.ndarray:
    """Variant ``index``'s masks (N, S, S) uint8 (a classifier's: labels (N,) uint8) for the study's
    preview images, in their stored order (the order of core.results.previews.load_previews, so they sit next
    to the original trial's predictions)."""
    record = get_variant(study, trial_number, index)
    images = preview_images(study, artifact_store)
    if images is None:
        raise CompressionError(
            f"study {study.study_name!r} stored no preview images (set preview_count > 0 in its spec)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        model, config = load_model(download_variant(record, artifact_store, Path(tmp)))
    # one image at a time: int8 variants are traced on a single image
    return (
        torch.cat([predict_indices(model, images[i : i + 1], threshold=config.threshold) for i in range(len(images))])
        .to(torch.uint8)
        .numpy()
    )


def variant_name(study: optuna.Study, trial_number: int, index: int) -> str:
    """Folder / file name of a variant download: ``<study>-trial<N>-variant<i>-<method>``."""
    return f"{study.study_name}-trial{trial_number}-variant{index}-{get_variant(study, trial_number, index)['method']}"


def variant_zip(study: optuna.Study, trial_number: int, index: int, artifact_store: Any) -> bytes:
    """A zip of the variant in one folder: its model files, ``model.onnx`` with ``predict.py``, and a card."""
    from core.deploy.model_card import variant_card

    name = variant_name(study, trial_number, index)
    record = get_variant(study, trial_number, index)
    with tempfile.TemporaryDirectory() as tmp:
        folder = download_variant(record, artifact_store, Path(tmp) / name)
        model, config = load_model(folder)
        sample, _ = parity_sample(study, artifact_store, config)
        original = None
        if (
            record["method"] == "dynamic"
        ):  # not traceable to ONNX: onnxruntime quantizes the original's Linear layers alike
            original, _ = load_bundle(
                trial_bundle(get_trial(study, trial_number), artifact_store, Path(tmp) / "original")
            )
        problem = add_onnx(model, folder, sample, int8=is_int8_folder(folder), dynamic_from=original)
        card = variant_card(
            study, get_trial(study, trial_number), name, record, frozenset(p.name for p in folder.iterdir()), problem
        )
        return zip_folder(folder, card)


@dataclass(frozen=True)
class ExportDownload:
    """One verified export file, read into memory for a download button."""

    format: str  # "onnx" or "torchscript"
    file_name: str
    data: bytes
    max_abs_diff: float | None  # parity against PyTorch on ``checked_on``


def export_downloads(
    study: optuna.Study, trial_number: int, artifact_store: Any, formats: tuple[str, ...] = ("onnx", "torchscript")
) -> tuple[list[ExportDownload], str]:
    """The trial's exports in ``formats``, parity-checked by core.deploy.export.export_trial: (files, checked on)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = export_trial(study, trial_number, artifact_store, Path(tmp), formats)
        files = [
            ExportDownload(
                f.format, f"{report.folder.name}{''.join(f.path.suffixes)}", f.path.read_bytes(), f.max_abs_diff
            )
            for f in report.files
            if f.format in formats
        ]
    return files, report.checked_on
