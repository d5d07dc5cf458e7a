"""Compressed variants of a trained model: int8 quantization (static, dynamic, QAT) and pruning.

Paper P3 showed a tuned U-Net survives int8 or 50-90 % sparsity with < 1 % accuracy loss; this
module derives such variants and measures the trade-off on the study's own splits.

Quantization tooling: the installed torch (2.14) no longer ships the PT2E quantizers (they moved
to torchao, which is not a dependency), while FX graph mode (``prepare_fx`` / ``convert_fx``)
still runs and traces every CNN here (smp encoders/decoders, ClassicUNet, FCN-32), producing
models for the x86 (fbgemm/onednn) or ARM (qnnpack) CPU backends. Transformer encoders (mit_b*,
ViTs) have data-dependent control flow FX cannot trace; for them ``dynamic`` quantizes the Linear
layers instead. Quantized variants run on the CPU only and are stored as TorchScript; pruned ones
are ordinary float models and are stored as bundles.
"""

from __future__ import annotations

import copy
import io
import math
import platform
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from core.bundle import CONFIG_FILE, WEIGHTS_FILE, BundleConfig, load_bundle, save_bundle
from core.data import TensorSet, iterate_batches
from core.errors import SegTuneError
from core.export import TORCHSCRIPT_FILE, save_torchscript
from core.losses import build_loss
from core.train import evaluate

if TYPE_CHECKING:
    import optuna

METHODS: tuple[str, ...] = ("ptq", "dynamic", "qat", "prune")
PRUNE_SCOPES: tuple[str, ...] = ("global", "layer")
SPARSITY_RANGE = (0.5, 0.9)  # paper P3's range; beyond it accuracy collapses, below it little is won
REPORT_METRICS: tuple[str, ...] = ("dice", "iou", "f1")
StepCallback = Callable[[int, int], None]  # (steps done, steps in all) of a fine-tune
ProgressCallback = Callable[[float, str], None]  # (fraction done 0..1, what is happening)
_PRUNABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


class CompressionError(SegTuneError):
    """A compression method cannot be applied as asked; the message says what would work."""


@contextmanager
def _quiet_quantization() -> Iterator[None]:
    # torch.ao.quantization warns that it will move to torchao; it is still the tool that runs here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def quantized_backend() -> str:
    """The CPU int8 backend for this machine: x86 (fbgemm/onednn kernels) or qnnpack on ARM."""
    arm = platform.machine().lower() in ("arm64", "aarch64")
    backend = "qnnpack" if arm else "x86"
    if backend not in torch.backends.quantized.supported_engines:
        raise CompressionError(f"this torch build has no {backend!r} int8 engine; available: {torch.backends.quantized.supported_engines}")
    return backend


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompressionConfig:
    """One variant to derive. Steps count optimizer steps (batches) of the fine-tune."""

    method: str  # one of METHODS
    sparsity: float = 0.7  # prune: fraction of prunable weights set to zero (0.5-0.9)
    structured: bool = False  # prune: whole output channels (L2 norm) instead of single weights
    scope: str | None = None  # prune: "global" (one threshold) or "layer"; None = global, or layer if structured
    finetune_steps: int = 100  # qat/prune: recovery fine-tune length; 0 = one-shot (channel pruning needs it)
    ramp_every: int = 10  # prune: raise sparsity every N steps over the first half of the fine-tune (P3)
    lr: float = 5e-4  # fine-tune learning rate (Adam); below training rates, the model is already trained
    batch_size: int = 8
    calibration_batches: int = 8  # ptq: training batches the observers see
    loss: str = "dice_bce"  # fine-tune loss (the trial's own loss is a good choice)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CompressionError(f"unknown compression method {self.method!r}; valid: {list(METHODS)}")
        low, high = SPARSITY_RANGE
        if self.method == "prune" and not low <= self.sparsity <= high:
            raise CompressionError(f"sparsity must be between {low} and {high}, got {self.sparsity}")
        if self.scope is not None and self.scope not in PRUNE_SCOPES:
            raise CompressionError(f"unknown pruning scope {self.scope!r}; valid: {list(PRUNE_SCOPES)}")
        if self.structured and self.scope == "global":
            raise CompressionError("channel-structured pruning is per layer (torch prunes channels layer by layer); use scope 'layer'")
        for name in ("finetune_steps", "calibration_batches"):
            if getattr(self, name) < 0:
                raise CompressionError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("ramp_every", "batch_size"):
            if getattr(self, name) < 1:
                raise CompressionError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def prune_scope(self) -> str:
        return self.scope or ("layer" if self.structured else "global")

    @property
    def label(self) -> str:
        """A short name for tables: "int8 static", "pruned 70% global", ..."""
        if self.method != "prune":
            return {"ptq": "int8 static", "dynamic": "int8 dynamic", "qat": "int8 QAT"}[self.method]
        kind = "channels" if self.structured else self.prune_scope
        return f"pruned {self.sparsity:.0%} {kind}"

    def params(self) -> dict[str, Any]:
        """The settings that matter for this method (stored with the variant)."""
        data = asdict(self)
        keep = {
            "ptq": ("calibration_batches",),
            "dynamic": (),
            "qat": ("finetune_steps", "lr", "batch_size", "loss", "seed"),
            "prune": ("sparsity", "structured", "scope", "finetune_steps", "ramp_every", "lr", "batch_size", "loss", "seed"),
        }[self.method]
        return {name: (self.prune_scope if name == "scope" else data[name]) for name in keep}


@dataclass(frozen=True)
class CompressionData:
    """What a variant is calibrated / fine-tuned on (train) and scored on (val, test), on the CPU."""

    train: TensorSet
    val: TensorSet
    test: TensorSet | None
    mode: str  # "binary" or "multiclass"
    num_classes: int


@dataclass
class CompressedVariant:
    config: CompressionConfig
    model: nn.Module  # on the CPU, eval mode
    quantized: bool  # int8: CPU only, saved as TorchScript
    seconds: float  # time the method took


# --- helpers ------------------------------------------------------------------------------------


def _batches(data: TensorSet, config: CompressionConfig, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled training batches (fine-tunes count steps, not epochs)."""
    drop_last = len(data) > config.batch_size
    while True:
        yielded = False
        for batch in iterate_batches(data, config.batch_size, shuffle=True, generator=generator, augment=None, drop_last=drop_last):
            yielded = True
            yield batch
        if not yielded:
            raise CompressionError("no training images to calibrate or fine-tune on")


def _finetune(
    model: nn.Module, data: CompressionData, config: CompressionConfig, on_step: Callable[[int], None] | None = None,
    steps: StepCallback | None = None,
) -> None:
    """``finetune_steps`` Adam steps on the training split; ``on_step(step)`` runs before each,
    ``steps(done, total)`` after each."""
    if config.finetune_steps == 0:
        if on_step is not None:
            on_step(0)
        return
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loss_fn = build_loss(config.loss, data.mode)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    model.train()
    for step, (images, masks) in zip(range(config.finetune_steps), _batches(data.train, config, generator)):
        if on_step is not None:
            on_step(step)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), masks).backward()
        optimizer.step()
        if steps is not None:
            steps(step + 1, config.finetune_steps)
    model.eval()


def _example(data: CompressionData) -> tuple[torch.Tensor]:
    return (data.train.images[:1].float().div(255.0),)


def _fx_error(exc: Exception) -> CompressionError:
    return CompressionError(
        f"static int8 quantization cannot trace this model ({type(exc).__name__}: {str(exc)[:200]}); "
        "transformer encoders have data-dependent control flow — use method 'dynamic' for them"
    )


def _qconfig_mapping(backend: str, qat: bool) -> Any:
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping

    mapping = (get_default_qat_qconfig_mapping if qat else get_default_qconfig_mapping)(backend)
    if backend != "qnnpack":
        # The x86/fbgemm int8 ConvTranspose2d kernel gives wrong outputs here (a trained U-Net fell
        # from 0.89 to 0.15 Dice, qnnpack keeps 0.89): transposed convolutions stay in float.
        mapping = mapping.set_object_type(nn.ConvTranspose2d, None)
    return mapping


# --- methods ------------------------------------------------------------------------------------


def _prepare_fx(model: nn.Module, data: CompressionData, *, qat: bool) -> nn.Module:
    """A copy of ``model`` with observers (PTQ) or fake-quant modules (QAT) inserted by FX."""
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    backend = quantized_backend()
    torch.backends.quantized.engine = backend
    prepare, mode = (prepare_qat_fx, "train") if qat else (prepare_fx, "eval")
    copied = getattr(copy.deepcopy(model), mode)()
    try:
        return prepare(copied, _qconfig_mapping(backend, qat=qat), example_inputs=_example(data))
    except Exception as exc:  # noqa: BLE001 - FX raises TraceError and others for untraceable code
        raise _fx_error(exc) from exc


def _post_training_static(model: nn.Module, data: CompressionData, config: CompressionConfig, steps: StepCallback | None = None) -> nn.Module:
    """FX graph mode PTQ: insert observers, run training batches through them, convert to int8."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet_quantization():
        prepared = _prepare_fx(model, data, qat=False)
        generator = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            for index, (images, _masks) in zip(range(config.calibration_batches), _batches(data.train, config, generator)):
                prepared(images)
                if steps is not None:
                    steps(index + 1, config.calibration_batches)
        return convert_fx(prepared).eval()


def _dynamic(model: nn.Module, data: CompressionData, config: CompressionConfig, steps: StepCallback | None = None) -> nn.Module:
    """Int8 weights for Linear layers, activations quantized on the fly (transformer encoders)."""
    from torch.ao.quantization import quantize_dynamic

    if not any(isinstance(module, nn.Linear) for module in model.modules()):
        raise CompressionError(
            "dynamic quantization only applies to Linear layers and this model has none "
            "(a pure CNN): use method 'ptq' (static int8) or 'qat'"
        )
    torch.backends.quantized.engine = quantized_backend()
    with _quiet_quantization():
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8).eval()


def _quantization_aware(model: nn.Module, data: CompressionData, config: CompressionConfig, steps: StepCallback | None = None) -> nn.Module:
    """Fake-quant fine-tune (FX prepare_qat_fx), then conversion to a real int8 model."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet_quantization():
        prepared = _prepare_fx(model, data, qat=True)
        _finetune(prepared, data, config, steps=steps)
        return convert_fx(prepared.eval()).eval()


def prunable_layers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Conv/Linear weights, except the output layer: pruning its channels would delete classes."""
    layers = [(module, "weight") for module in model.modules() if isinstance(module, _PRUNABLE)]
    return layers[:-1]  # modules() lists the head last for every architecture SegTune builds


def sparsity(model: nn.Module) -> float:
    """Fraction of zeros among the prunable weights."""
    weights = [getattr(module, name) for module, name in prunable_layers(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else 0.0


def _apply_pruning(layers: list[tuple[nn.Module, str]], amount: float, config: CompressionConfig) -> None:
    """Prune to ``amount`` in total, ranking the current (already masked) weights."""
    for module, name in layers:
        if prune.is_pruned(module):
            prune.remove(module, name)  # pruned weights are zero now, so they rank first again
    if config.structured:
        for module, name in layers:
            # dim 0 = output channels (Conv2d, Linear); ConvTranspose2d keeps them on dim 1
            dim = 1 if isinstance(module, nn.ConvTranspose2d) else 0
            prune.ln_structured(module, name, amount=amount, n=2, dim=dim)
    elif config.prune_scope == "global":
        prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for module, name in layers:
            prune.l1_unstructured(module, name, amount=amount)


def _magnitude_pruning(model: nn.Module, data: CompressionData, config: CompressionConfig, steps: StepCallback | None = None) -> nn.Module:
    """Gradual magnitude pruning (P3): sparsity rises every ``ramp_every`` steps, then recovers."""
    pruned = copy.deepcopy(model)
    layers = prunable_layers(pruned)
    if not layers:
        raise CompressionError("this model has no prunable Conv/Linear layers besides its output layer")
    # the ramp fills the first half of the fine-tune; the second half recovers at full sparsity
    stages = max(1, (config.finetune_steps // 2) // config.ramp_every)

    def on_step(step: int) -> None:
        if step % config.ramp_every == 0 and step // config.ramp_every < stages:
            _apply_pruning(layers, config.sparsity * (step // config.ramp_every + 1) / stages, config)

    _finetune(pruned, data, config, on_step, steps)
    for module, name in layers:
        prune.remove(module, name)  # make it permanent: plain weights with zeros, no masks
    return pruned.eval()


_METHODS: dict[str, Callable[[nn.Module, CompressionData, CompressionConfig, StepCallback | None], nn.Module]] = {
    "ptq": _post_training_static,
    "dynamic": _dynamic,
    "qat": _quantization_aware,
    "prune": _magnitude_pruning,
}
assert set(_METHODS) == set(METHODS), "every method name needs an implementation"


def compress(config: CompressionConfig, model: nn.Module, data: CompressionData, steps: StepCallback | None = None) -> CompressedVariant:
    """Derive one variant of ``model`` (left untouched) on the CPU; ``steps`` hears fine-tune steps."""
    started = time.perf_counter()
    variant = _METHODS[config.method](copy.deepcopy(model).cpu().eval(), data, config, steps)
    return CompressedVariant(config, variant, config.method != "prune", time.perf_counter() - started)


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class VariantReport:
    """One row of the trade-off table; deltas are variant minus original."""

    name: str  # "original" or the variant's label
    method: str  # "original" or one of METHODS
    params: dict[str, Any]
    val: dict[str, float]  # dice, iou, f1
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


def _scores(model: nn.Module, data: TensorSet | None, mode: str, num_classes: int, batch_size: int) -> dict[str, float]:
    if data is None or len(data) == 0:
        return {}
    result = evaluate(model, data, batch_size, loss_fn=build_loss("bce", mode), mode=mode, num_classes=num_classes)
    return {name: result[name] for name in REPORT_METRICS}


def measure(
    name: str, method: str, params: dict[str, Any], model: nn.Module, quantized: bool, data: CompressionData, *, batch_size: int = 8, repeats: int = 3
) -> VariantReport:
    """Score and time one model (original or variant) on the CPU."""
    images = data.val.images[: max(batch_size, 1)].float().div(255.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = saved_file(model, quantized, images, Path(tmp))
        raw = path.read_bytes()
    nonzero, total = count_nonzero(model)
    latency, throughput = cpu_speed(model, images, batch_size, repeats)
    return VariantReport(
        name=name, method=method, params=params,
        val=_scores(model, data.val, data.mode, data.num_classes, batch_size),
        test=_scores(model, data.test, data.mode, data.num_classes, batch_size),
        size_mb=len(raw) / 2**20, zipped_mb=len(zlib.compress(raw, 6)) / 2**20,
        nonzero_params=nonzero, total_params=total, latency_ms=latency, images_per_s=throughput,
    )


def _deltas(report: VariantReport, original: VariantReport) -> dict[str, float]:
    deltas = {f"val_{k}": v - original.val[k] for k, v in report.val.items() if k in original.val}
    deltas.update({f"test_{k}": v - original.test[k] for k, v in report.test.items() if k in original.test})
    for name in ("size_mb", "zipped_mb", "nonzero_params", "latency_ms", "images_per_s"):
        deltas[name] = getattr(report, name) - getattr(original, name)
    deltas["speedup"] = report.images_per_s / original.images_per_s if original.images_per_s else math.nan
    return deltas


def compare_variants(
    original: nn.Module, variants: list[CompressedVariant], data: CompressionData, *, batch_size: int = 8, repeats: int = 3
) -> list[VariantReport]:
    """The trade-off table: the original first, then every variant with its deltas against it."""
    base = measure("original", "original", {}, original.cpu().eval(), False, data, batch_size=batch_size, repeats=repeats)
    reports = [base]
    for variant in variants:
        report = measure(variant.config.label, variant.config.method, variant.config.params(), variant.model,
                         variant.quantized, data, batch_size=batch_size, repeats=repeats)
        report.deltas = _deltas(report, base)
        reports.append(report)
    return reports


def trade_off_table(reports: list[VariantReport]) -> str:
    """Plain-text table: one row per model, deltas against the original in brackets."""
    header = f"{'model':24} {'val dice':>16} {'test dice':>16} {'val iou':>8} {'size MB':>8} {'zip MB':>8} {'non-zero':>11} {'ms/img':>8} {'img/s':>8}"
    rows = [header, "-" * len(header)]
    for report in reports:
        def delta(key: str) -> str:
            return f" ({report.deltas[key]:+.3f})" if key in report.deltas else ""

        test_dice = f"{report.test['dice']:.3f}{delta('test_dice')}" if report.test else "-"
        rows.append(
            f"{report.name:24} {report.val['dice']:.3f}{delta('val_dice'):>10} {test_dice:>16} {report.val['iou']:8.3f} "
            f"{report.size_mb:8.2f} {report.zipped_mb:8.2f} {report.nonzero_params:11,} {report.latency_ms:8.1f} {report.images_per_s:8.1f}"
        )
    return "\n".join(rows)


# --- storing variants with their trial ----------------------------------------------------------


VARIANT_FILES: dict[str, str] = {"weights": WEIGHTS_FILE, "torchscript": TORCHSCRIPT_FILE, "config": CONFIG_FILE}


def variants_key(trial_number: int) -> str:
    """Study user attr holding a trial's variants (Optuna freezes a finished trial's own attrs)."""
    return f"variants:{trial_number}"


def list_variants(study: optuna.Study, trial_number: int) -> list[dict[str, Any]]:
    """The variants stored for a trial: {method, label, params, artifacts, metrics}, oldest first."""
    return list(study.user_attrs.get(variants_key(trial_number), []))


def save_variant(variant: CompressedVariant, bundle: BundleConfig, folder: Path, sample: torch.Tensor) -> Path:
    """A loadable model folder (see core.export.load_model): bundle, or TorchScript + config.json."""
    source = {**bundle.source, "variant": {"method": variant.config.method, "params": variant.config.params()}}
    config = replace(bundle, source=source)
    if not variant.quantized:
        return save_bundle(variant.model, config, folder)
    saved_file(variant.model, True, sample, folder)
    (folder / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    return folder


def store_variant(
    study: optuna.Study, trial_number: int, variant: CompressedVariant, report: VariantReport, bundle: BundleConfig,
    artifact_store: Any, sample: torch.Tensor, original: VariantReport | None = None,
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
        "method": variant.config.method, "label": variant.config.label, "params": variant.config.params(),
        "artifacts": artifacts, "metrics": report.to_dict(),
    }
    if original is not None:
        record["original"] = original.to_dict()
    study.set_user_attr(variants_key(trial_number), [*list_variants(study, trial_number), record])
    return record


def download_variant(record: dict[str, Any], artifact_store: Any, folder: Path) -> Path:
    """Write a stored variant's files into ``folder`` (loadable with core.export.load_model)."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, artifact_id in record["artifacts"].items():
        with artifact_store.open_reader(artifact_id) as reader:
            (folder / VARIANT_FILES[kind]).write_bytes(reader.read())
    return folder


# --- one call for the CLI and the dashboard -----------------------------------------------------


def study_compression_data(spec: Any, settings: Any) -> CompressionData:
    """The study's frozen splits, decoded on the CPU (int8 kernels and latency figures are CPU ones)."""
    from core.objective import load_study_data

    data = load_study_data(spec, settings, torch.device("cpu"))
    return CompressionData(data.train, data.val, data.test, data.mode, data.num_classes)


def _step_reporter(config: CompressionConfig, progress: ProgressCallback, start: float, end: float) -> StepCallback:
    """Fine-tune / calibration steps as progress between ``start`` and ``end``, ~50 reports at most."""
    doing = "calibrating on training batch" if config.method == "ptq" else "fine-tuning step"

    def report(done: int, total: int) -> None:
        if done == total or done % max(1, total // 50) == 0:
            progress(start + (end - start) * done / max(1, total), f"{config.label}: {doing} {done}/{total}")

    return report


def compress_trial(
    study: optuna.Study, trial_number: int, config: CompressionConfig, data: CompressionData, artifact_store: Any,
    progress: ProgressCallback | None = None,
) -> tuple[list[VariantReport], dict[str, Any]]:
    """Derive, measure and store one variant of a trial: ([original, variant] reports, stored record).

    ``progress(fraction, message)`` hears each stage (loading, compressing step by step, measuring,
    storing), with fractions rising from 0 to 0.95; the caller says when it is done.
    """
    from core.export import trial_bundle

    report = progress or (lambda fraction, message: None)
    report(0.0, f"loading trial #{trial_number}'s model")
    with tempfile.TemporaryDirectory() as tmp:
        model, bundle = load_bundle(trial_bundle(study, trial_number, artifact_store, Path(tmp) / "bundle"))
    report(0.05, f"{config.label}: compressing")
    variant = compress(config, model, data, _step_reporter(config, report, 0.05, 0.7))
    report(0.7, "measuring the original and the variant: val/test scores, size, CPU speed")
    reports = compare_variants(model, [variant], data, batch_size=config.batch_size)
    report(0.95, "storing the variant with the trial")
    sample = data.val.images[:1].float().div(255.0)
    record = store_variant(study, trial_number, variant, reports[1], bundle, artifact_store, sample, original=reports[0])
    return reports, record


# --- comparing and shipping stored variants (the dashboard's Compress & deploy page) ------------


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
    for split in ("val", "test"):
        row.update({f"{split}_{k}": metrics[split].get(k, math.nan) for k in REPORT_METRICS})
    row.update({name: metrics[name] for name in TABLE_FIELDS})
    deltas = metrics.get("deltas") or {}
    row.update({f"delta_{k}": deltas.get(k, math.nan) for k in ("val_dice", "test_dice", "size_mb", "latency_ms")})
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
    """Variant ``index``'s masks (N, S, S) uint8 for the study's preview images, in their stored order
    (the order of core.results.load_previews, so they sit next to the original trial's predictions)."""
    from core.export import load_model, preview_images
    from core.metrics import predict_mask
    from core.models import task_mode

    record = get_variant(study, trial_number, index)
    images = preview_images(study, artifact_store)
    if images is None:
        raise CompressionError(f"study {study.study_name!r} stored no preview images (set preview_count > 0 in its spec)")
    with tempfile.TemporaryDirectory() as tmp:
        model, config = load_model(download_variant(record, artifact_store, Path(tmp)))
    with torch.no_grad():
        # one image at a time: int8 variants are traced on a single image
        logits = torch.cat([model.eval()(images[i : i + 1]).float() for i in range(len(images))])
    return predict_mask(logits, task_mode(len(config.classes)), config.threshold).to(torch.uint8).numpy()


def variant_name(study: optuna.Study, trial_number: int, index: int) -> str:
    """Folder / file name of a variant download: ``<study>-trial<N>-variant<i>-<method>``."""
    return f"{study.study_name}-trial{trial_number}-variant{index}-{get_variant(study, trial_number, index)['method']}"


def variant_zip(study: optuna.Study, trial_number: int, index: int, artifact_store: Any) -> bytes:
    """A zip of the variant's files in one folder (loadable with core.export.load_model once unzipped)."""
    name = variant_name(study, trial_number, index)
    with tempfile.TemporaryDirectory() as tmp:
        folder = download_variant(get_variant(study, trial_number, index), artifact_store, Path(tmp) / name)
        return _zip_folder(folder)


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{folder.name}/{path.name}")
    return buffer.getvalue()


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
    """The trial's exports in ``formats``, each parity-checked by core.export.export_trial: (files, checked on)."""
    from core.export import export_trial

    with tempfile.TemporaryDirectory() as tmp:
        report = export_trial(study, trial_number, artifact_store, Path(tmp), formats)
        files = [
            ExportDownload(f.format, f"{report.folder.name}{''.join(f.path.suffixes)}", f.path.read_bytes(), f.max_abs_diff)
            for f in report.files if f.format in formats
        ]
    return files, report.checked_on
