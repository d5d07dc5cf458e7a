"""The compression methods: FX-graph int8 (static, QAT), dynamic int8 and magnitude pruning
(core.deploy.compression.pruning)."""

from __future__ import annotations

import copy
import operator
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from core.deploy.compression.config import (
    FINETUNE_METHODS,
    CompressedVariant,
    CompressionConfig,
    CompressionData,
    CompressionError,
    StepCallback,
    quantized_backend,
    quiet_quantization,
)
from core.deploy.compression.finetune import batches
from core.deploy.compression.pruning import channel_pruning, weight_pruning
from core.deploy.compression.qat import qat_finetune
from core.deploy.compression.traceable import traceable
from core.modeling.pruned import channel_record


def _example(data: CompressionData) -> tuple[torch.Tensor]:
    return (data.train.images[:1].float().div(255.0),)


def _fx_error(exc: Exception) -> CompressionError:
    return CompressionError(
        f"static int8 quantization cannot trace this model ({type(exc).__name__}: {str(exc)[:200]}); "
        "use method 'dynamic' (Linear layers) or 'prune' for it"
    )


_FLOAT_OPS = (
    torch.matmul,
    operator.matmul,
    nn.Softmax,
    F.softmax,
    torch.softmax,
    "softmax",
    torch.stack,
    nn.LayerNorm,
    F.layer_norm,
)
_RESHAPES = (
    "view",
    "reshape",
    "permute",
    "transpose",
    "flatten",
    "contiguous",
    torch.reshape,
    torch.permute,
    torch.transpose,
    torch.flatten,
    nn.PixelShuffle,
    F.pixel_shuffle,
)


def _qconfig_mapping(backend: str, qat: bool) -> Any:
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping

    mapping = (get_default_qat_qconfig_mapping if qat else get_default_qconfig_mapping)(backend)
    if backend != "qnnpack":
        # The x86/fbgemm int8 ConvTranspose2d kernel gives wrong outputs (a trained U-Net fell from
        # 0.89 to 0.15 Dice, qnnpack keeps 0.89): the transposed convolutions that traceable() could
        # not rewrite as sub-pixel convolutions stay in float.
        mapping = mapping.set_object_type(nn.ConvTranspose2d, None)
    # Ops whose int8 form has no ONNX export stay in float: products of two activations and softmax
    # (MAnet's attention; traceable.MatrixPool), stacking (FPN's merge), layer norms (UPerNet,
    # transformer encoders). So do reshapes (pixel shuffles included): FX quantizes a reshape
    # whenever its neighbours are quantized, and would carry int8 into the float ops through it.
    for op in (*_FLOAT_OPS, *_RESHAPES):
        mapping = mapping.set_object_type(op, None)
    return mapping


# --- methods ------------------------------------------------------------------------------------


def _prepare_fx(model: nn.Module, data: CompressionData, *, qat: bool) -> nn.Module:
    """A copy of ``model`` with observers (PTQ) or fake-quant modules (QAT) inserted by FX."""
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    backend = quantized_backend()
    torch.backends.quantized.engine = backend
    prepare, mode = (prepare_qat_fx, "train") if qat else (prepare_fx, "eval")
    example = _example(data)
    try:
        graph = getattr(traceable(model, example[0]), mode)()
        return prepare(graph, _qconfig_mapping(backend, qat=qat), example_inputs=example)
    except Exception as exc:
        raise _fx_error(exc) from exc


def _post_training_static(
    model: nn.Module, data: CompressionData, config: CompressionConfig, steps: StepCallback | None = None
) -> nn.Module:
    """FX graph mode PTQ: insert observers, run training batches through them, convert to int8."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with quiet_quantization():
        prepared = _prepare_fx(model, data, qat=False)
        generator = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            for index, (images, _masks) in zip(
                range(config.calibration_batches), batches(data.train, config, generator)
            ):
                prepared(images)
                if steps is not None:
                    steps(index + 1, config.calibration_batches)
        return convert_fx(prepared).eval()


def _dynamic(
    model: nn.Module, data: CompressionData, config: CompressionConfig, steps: StepCallback | None = None
) -> nn.Module:
    """Int8 weights for Linear layers, activations quantized on the fly (transformer encoders)."""
    from torch.ao.quantization import quantize_dynamic

    if not any(isinstance(module, nn.Linear) for module in model.modules()):
        raise CompressionError(
            "dynamic quantization only applies to Linear layers and this model has none "
            "(a pure CNN): use method 'ptq' (static int8) or 'qat'"
        )
    torch.backends.quantized.engine = quantized_backend()
    with quiet_quantization():
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8).eval()


def _quantization_aware(
    model: nn.Module, data: CompressionData, config: CompressionConfig, steps: StepCallback | None = None
) -> nn.Module:
    """Fake-quant fine-tune (FX prepare_qat_fx, the recipe in core.deploy.compression.qat), then conversion to a real
    int8 model."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with quiet_quantization():
        prepared = _prepare_fx(model, data, qat=True)
        qat_finetune(prepared, data, config, config.steps_for(len(data.train)), steps)
        return convert_fx(prepared.eval()).eval()


def _magnitude_pruning(
    model: nn.Module, data: CompressionData, config: CompressionConfig, steps: StepCallback | None = None
) -> nn.Module:
    """Gradual magnitude pruning of single weights or, ``structured``, of whole channels."""
    prune = channel_pruning if config.structured else weight_pruning
    return prune(model, data, config, config.steps_for(len(data.train)), steps)


IMPLEMENTATIONS: dict[
    str, Callable[[nn.Module, CompressionData, CompressionConfig, StepCallback | None], nn.Module]
] = {
    "ptq": _post_training_static,
    "dynamic": _dynamic,
    "qat": _quantization_aware,
    "prune": _magnitude_pruning,
}


def compress(
    config: CompressionConfig, model: nn.Module, data: CompressionData, steps: StepCallback | None = None
) -> CompressedVariant:
    """Derive one variant of ``model`` (left untouched) on the CPU; ``steps`` hears fine-tune steps."""
    started = time.perf_counter()
    original = copy.deepcopy(model).cpu().eval()
    variant = IMPLEMENTATIONS[config.method](original, data, config, steps)
    seconds = time.perf_counter() - started
    steps_run = config.steps_for(len(data.train)) if config.method in FINETUNE_METHODS else 0
    channels = channel_record(variant, original) if config.method == "prune" and config.structured else {}
    return CompressedVariant(config, variant, config.method != "prune", seconds, steps_run, channels)
