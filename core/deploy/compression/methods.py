"""The compression methods: FX-graph int8 (static, QAT), dynamic int8 and magnitude pruning."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from core.data.tensors import DataSet, iterate_batches
from core.deploy.compression.config import (
    CompressedVariant,
    CompressionConfig,
    CompressionData,
    CompressionError,
    StepCallback,
    quantized_backend,
    quiet_quantization,
)
from core.training.loop import task_loss

_PRUNABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


# --- helpers ------------------------------------------------------------------------------------


def _batches(data: DataSet, config: CompressionConfig, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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
    loss_fn = task_loss(config.loss, data.train, data.mode)
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
        "use method 'dynamic' (Linear layers) or 'prune' for it"
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
    except Exception as exc:
        raise _fx_error(exc) from exc


def _post_training_static(model: nn.Module, data: CompressionData, config: CompressionConfig, steps: StepCallback | None = None) -> nn.Module:
    """FX graph mode PTQ: insert observers, run training batches through them, convert to int8."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with quiet_quantization():
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
    with quiet_quantization():
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8).eval()


def _quantization_aware(model: nn.Module, data: CompressionData, config: CompressionConfig, steps: StepCallback | None = None) -> nn.Module:
    """Fake-quant fine-tune (FX prepare_qat_fx), then conversion to a real int8 model."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with quiet_quantization():
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
    """Gradual magnitude pruning (as in the cell-segmentation optimizer x loss study): sparsity rises every ``ramp_every`` steps, then recovers."""
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


IMPLEMENTATIONS: dict[str, Callable[[nn.Module, CompressionData, CompressionConfig, StepCallback | None], nn.Module]] = {
    "ptq": _post_training_static,
    "dynamic": _dynamic,
    "qat": _quantization_aware,
    "prune": _magnitude_pruning,
}


def compress(config: CompressionConfig, model: nn.Module, data: CompressionData, steps: StepCallback | None = None) -> CompressedVariant:
    """Derive one variant of ``model`` (left untouched) on the CPU; ``steps`` hears fine-tune steps."""
    started = time.perf_counter()
    variant = IMPLEMENTATIONS[config.method](copy.deepcopy(model).cpu().eval(), data, config, steps)
    return CompressedVariant(config, variant, config.method != "prune", time.perf_counter() - started)


