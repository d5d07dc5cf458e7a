"""A trial's model compiled with ``torch.compile``, or eager when compiling is off or fails.

The spec's ``compile`` (:class:`~core.search.spec.CompileMode`) picks it. :func:`compile_model`
returns what the loop calls instead of the model: the same parameters and buffers (the model's
``state_dict`` and the saved bundle keep their keys), with forward and backward compiled by
inductor. ``reduce-overhead`` adds CUDA graphs: a step is replayed as one launch, which pays for a
small ConvNet's many small kernels; graphs need static shapes, so the loop drops a partial last
training batch (:func:`drops_partial_batch`; each validation batch size is one graph, captured
once). Shapes are compiled static (``dynamic=False``) for the same reason.

Compiling happens in :func:`compile_model`, in one warm-up step (forward and backward in train
mode, the model's state restored after), so its time counts in the trial's training time and in
the cost probe (core/training/estimate.py). A failure there, or later (the first eval-mode call
compiles again), never fails the trial: the model runs eager from then on and
:attr:`Compiled.warning` says why (the objective stores it as the trial's ``compile_warning``).
Packed trials are separate processes; inductor's on-disk cache is shared between them safely
(it locks), so a second trial of the same shapes compiles faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.search.spec import CompileMode


@dataclass
class Compiled:
    """The callable module the loop trains and evaluates, and how compiling went."""

    module: nn.Module  # the compiled model (or the model itself, eager); shares the model's parameters
    mode: CompileMode
    seconds: float = 0.0  # spent compiling (the warm-up step); 0 when eager
    warning: str | None = None  # why the model fell back to eager; None when compiled (or compile off)


def drops_partial_batch(mode: str) -> bool:
    """CUDA graphs replay fixed shapes: a partial last training batch would be captured again."""
    return mode == CompileMode.REDUCE_OVERHEAD


def compile_model(
    model: nn.Module,
    mode: str,
    sample: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    precision: Callable[[], AbstractContextManager[Any]],
) -> Compiled:
    """``model`` compiled in ``mode``, warmed up (compiled) on one training ``sample`` (images in the
    model's layout, target) under ``precision`` (the loop's autocast); eager on failure."""
    mode = CompileMode(mode)
    if mode == CompileMode.OFF:
        return Compiled(model, mode)
    started = time.perf_counter()
    compiled = Compiled(model, mode)
    try:
        candidate = _compile(model, mode)
        _warm_up(model, candidate, sample, loss_fn, precision)
    except torch.cuda.OutOfMemoryError:
        raise  # the objective's out-of-memory retry handles it, as for eager
    except Exception as exc:  # a compiler failure of any kind: train eager rather than lose the trial
        compiled.warning = _reason(exc)
    else:
        compiled.module = _EagerOnFailure(candidate, model, compiled)
    compiled.seconds = time.perf_counter() - started
    return compiled


def _compile(model: nn.Module, mode: CompileMode) -> nn.Module:
    # A worker runs trial after trial in one process: without a reset every new architecture is one
    # more recompile of the same forward code, and past Dynamo's recompile limit it silently runs
    # eager. The on-disk inductor cache survives the reset, so a repeated shape still compiles fast.
    torch.compiler.reset()
    return torch.compile(model, mode=str(mode), dynamic=False)  # type: ignore[return-value]


def _warm_up(
    model: nn.Module,
    candidate: nn.Module,
    sample: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    precision: Callable[[], AbstractContextManager[Any]],
) -> None:
    """One forward and backward pass: compiles both graphs now, not inside the first epoch.
    Batch-norm statistics and gradients are put back, so training starts as it would eager."""
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    images, target = sample
    model.train()
    try:
        with precision():
            loss = loss_fn(candidate(images), target)
        loss.backward()
    finally:
        model.load_state_dict(state)
        model.zero_grad(set_to_none=True)


class _EagerOnFailure(nn.Module):
    """Calls the compiled model; if a later compile fails (an eval-mode graph), the eager model
    from then on, with the reason kept in ``record.warning``."""

    def __init__(self, candidate: nn.Module, eager: nn.Module, record: Compiled) -> None:
        super().__init__()
        self.candidate = candidate  # a child, so train() / eval() reach the model inside it
        self._eager = (eager,)  # a tuple: not a second child (the parameters are the candidate's)
        self._record = record
        self._graphs = record.mode == CompileMode.REDUCE_OVERHEAD

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._record.warning is not None:
            return self._eager[0](images)
        if self._graphs:
            # A new step: graph outputs of the previous call may be overwritten (the loop has consumed them).
            torch.compiler.cudagraph_mark_step_begin()
        try:
            return self.candidate(images)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:
            self._record.warning = _reason(exc)
            return self._eager[0](images)


def _reason(exc: Exception) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"torch.compile failed, trained eager instead: {type(exc).__name__}: {first_line}"
