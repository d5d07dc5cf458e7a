"""Measuring variants against their original: val/test scores, file size, sparsity, CPU speed."""

from __future__ import annotations

import math
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.contract import Task
from core.data.tensors import ImageSet
from core.deploy.compression.config import CompressedVariant, CompressionData
from core.deploy.export import save_torchscript
from core.metrics.cases import BOUNDARY_METRICS
from core.modeling.bundle import TORCHSCRIPT_FILE, WEIGHTS_FILE
from core.training.loop import evaluate, predict, task_loss
from core.training.native import CaseScorer


@dataclass
class VariantReport:
    """One row of the trade-off table; deltas are variant minus original."""

    name: str  # "original" or the variant's label
    method: str  # "original" or one of METHODS
    params: dict[str, Any]
    val: dict[
        str, float
    ]  # the task's report metrics: dice, iou, f1 (classification: accuracy, balanced_accuracy, f1_macro)
    test: dict[str, float]  # empty without a test split
    size_mb: float  # the saved model file (safetensors, or TorchScript for int8)
    zipped_mb: float  # the same file deflated: what sparsity saves in transfer/storage
    nonzero_params: int
    total_params: int
    latency_ms: float  # CPU, one image
    images_per_s: float  # CPU, batches of ``batch_size``
    deltas: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Every weight as a float tensor, unpacking int8 modules' packed weights."""
    tensors = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if callable(weight):  # quantized modules expose weight() instead of a parameter
            weight = weight()
        if isinstance(weight, torch.Tensor):
            tensors.append(weight.dequantize() if weight.is_quantized else weight.detach())
        bias = getattr(module, "bias", None)
        bias = bias() if callable(bias) else bias
        if isinstance(bias, torch.Tensor):
            tensors.append(bias.detach())
    return tensors


def count_nonzero(model: nn.Module) -> tuple[int, int]:
    """(non-zero, total) weights and biases of conv/linear/norm layers."""
    tensors = _weights(model)
    return sum(int(t.count_nonzero()) for t in tensors), sum(t.numel() for t in tensors)


def saved_file(model: nn.Module, quantized: bool, sample: torch.Tensor, folder: Path) -> Path:
    """Write the file a variant ships as: TorchScript for int8, safetensors otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    if quantized:
        return save_torchscript(model, sample, folder / TORCHSCRIPT_FILE)
    from safetensors.torch import save_model

    path = folder / WEIGHTS_FILE
    save_model(model, str(path))
    return path


@torch.no_grad()
def cpu_speed(model: nn.Module, images: torch.Tensor, batch_size: int, repeats: int = 3) -> tuple[float, float]:
    """(latency ms for one image, images/s in batches), best of ``repeats`` after a warm-up pass."""
    model.eval()

    def best(batch: torch.Tensor, rounds: int) -> float:
        model(batch)  # warm-up: int8 kernels pack weights and allocate on their first call
        timings = []
        for _ in range(rounds):
            start = time.perf_counter()
            model(batch)
            timings.append(time.perf_counter() - start)
        return min(timings)

    latency = best(images[:1], repeats) * 1000
    batch = images[:batch_size]
    return latency, len(batch) / best(batch, repeats)


def _scores(model: nn.Module, split: ImageSet | None, data: CompressionData, batch_size: int) -> dict[str, float]:
    if split is None or len(split) == 0:
        return {}
    # the loss is not reported: any loss of the task will do
    loss = task_loss("cross_entropy" if data.task == Task.CLASSIFICATION else "bce", split, data.mode)
    result = evaluate(model, split, batch_size, loss_fn=loss, mode=data.mode, num_classes=data.num_classes)
    if data.task == Task.SEGMENTATION:  # the boundary metrics, per case at the variants' common (training) size
        result.update(_boundary_scores(model, split, data, batch_size))
    return {name: result[name] for name in data.report_metrics}


def _boundary_scores(model: nn.Module, split: ImageSet, data: CompressionData, batch_size: int) -> dict[str, float]:
    cases = CaseScorer(data.mode, data.num_classes)
    for stem, mask, truth in zip(split.stems, predict(model, split, batch_size), split.targets.cpu().numpy()):
        cases.add(stem, mask, truth)
    metrics = cases.metrics()
    return {name: metrics[name] for name in BOUNDARY_METRICS}


def measure(
    name: str,
    method: str,
    params: dict[str, Any],
    model: nn.Module,
    quantized: bool,
    data: CompressionData,
    *,
    batch_size: int = 8,
    repeats: int = 3,
) -> VariantReport:
    """Score and time one model (original or variant) on the CPU."""
    images = data.val.images[: max(batch_size, 1)].float().div(255.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = saved_file(model, quantized, images, Path(tmp))
        raw = path.read_bytes()
    nonzero, total = count_nonzero(model)
    latency, throughput = cpu_speed(model, images, batch_size, repeats)
    return VariantReport(
        name=name,
        method=method,
        params=params,
        val=_scores(model, data.val, data, batch_size),
        test=_scores(model, data.test, data, batch_size),
        size_mb=len(raw) / 2**20,
        zipped_mb=len(zlib.compress(raw, 6)) / 2**20,
        nonzero_params=nonzero,
        total_params=total,
        latency_ms=latency,
        images_per_s=throughput,
    )


def _deltas(report: VariantReport, original: VariantReport) -> dict[str, float]:
    deltas = {f"val_{k}": v - original.val[k] for k, v in report.val.items() if k in original.val}
    deltas.update({f"test_{k}": v - original.test[k] for k, v in report.test.items() if k in original.test})
    for name in ("size_mb", "zipped_mb", "nonzero_params", "latency_ms", "images_per_s"):
        deltas[name] = getattr(report, name) - getattr(original, name)
    deltas["speedup"] = report.images_per_s / original.images_per_s if original.images_per_s else math.nan
    return deltas


def compare_variants(
    original: nn.Module,
    variants: list[CompressedVariant],
    data: CompressionData,
    *,
    batch_size: int = 8,
    repeats: int = 3,
) -> list[VariantReport]:
    """The trade-off table: the original first, then every variant with its deltas against it."""
    base = measure(
        "original", "original", {}, original.cpu().eval(), False, data, batch_size=batch_size, repeats=repeats
    )
    reports = [base]
    for variant in variants:
        report = measure(
            variant.config.label,
            variant.config.method,
            variant.params,
            variant.model,
            variant.quantized,
            data,
            batch_size=batch_size,
            repeats=repeats,
        )
        report.deltas = _deltas(report, base)
        reports.append(report)
    return reports


def _delta(report: VariantReport, key: str) -> str:
    return f" ({report.deltas[key]:+.3f})" if key in report.deltas else ""


def trade_off_table(reports: list[VariantReport]) -> str:
    """Plain-text table: one row per model, deltas against the original in brackets. The score
    columns are the first two report metrics (segmentation: Dice, IoU; classification: accuracy,
    balanced accuracy)."""
    first, second = list(reports[0].val)[:2]
    header = (
        f"{'model':24} {'val ' + first:>16} {'test ' + first:>16} {'val ' + second:>8} {'size MB':>8} {'zip MB':>8} "
        f"{'non-zero':>11} {'ms/img':>8} {'img/s':>8}"
    )
    rows = [header, "-" * len(header)]
    for report in reports:
        test = f"{report.test[first]:.3f}{_delta(report, f'test_{first}')}" if report.test else "-"
        rows.append(
            f"{report.name:24} {report.val[first]:.3f}{_delta(report, f'val_{first}'):>10} {test:>16} "
            f"{report.val[second]:8.3f} {report.size_mb:8.2f} {report.zipped_mb:8.2f} {report.nonzero_params:11,} "
            f"{report.latency_ms:8.1f} {report.images_per_s:8.1f}"
        )
    return "\n".join(rows)
