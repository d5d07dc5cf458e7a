"""Physically channel-pruned models: the per-layer record that rebuilds them from their architecture.

A channel-pruned model has fewer channels than its architecture's constructor makes, so its
weights no longer load into ``build_model(config)``. The bundle stores, next to the weights, the
shape attributes of every layer that changed (``channel_record``); loading builds the architecture,
sets those attributes back and gives each parameter and buffer the stored shape
(``apply_channel_record``), so the safetensors file loads as usual and no pickled code is needed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Layer attributes that channel pruning changes and that forward passes or reprs read.
SHAPE_ATTRIBUTES: tuple[str, ...] = (
    "in_channels",
    "out_channels",
    "groups",
    "num_features",
    "num_channels",
    "num_groups",
    "in_features",
    "out_features",
    "normalized_shape",
)


def _shape_attributes(module: nn.Module) -> dict[str, Any]:
    return {
        name: getattr(module, name) for name in SHAPE_ATTRIBUTES if isinstance(getattr(module, name, None), int | tuple)
    }


def channel_record(pruned: nn.Module, reference: nn.Module) -> dict[str, dict[str, Any]]:
    """{module name: {attribute: value}} for every layer whose shape attributes differ from ``reference``'s."""
    original = dict(reference.named_modules())
    record = {}
    for name, module in pruned.named_modules():
        changed = {
            key: value
            for key, value in _shape_attributes(module).items()
            if name in original and getattr(original[name], key, None) != value
        }
        if changed:
            record[name] = {key: list(value) if isinstance(value, tuple) else value for key, value in changed.items()}
    return record


def apply_channel_record(
    model: nn.Module, record: dict[str, dict[str, Any]], shapes: dict[str, torch.Size]
) -> nn.Module:
    """Reshape ``model`` (freshly built) to the pruned structure: attributes from ``record``, every
    parameter and buffer to its shape in ``shapes`` (the weights file's), ready for loading them."""
    for name, attributes in record.items():
        module = model.get_submodule(name)
        for key, value in attributes.items():
            setattr(module, key, tuple(value) if isinstance(value, list) else value)
    for key, shape in shapes.items():
        owner_name, _, attribute = key.rpartition(".")
        owner = model.get_submodule(owner_name)
        current = getattr(owner, attribute)
        if isinstance(current, torch.Tensor) and current.shape != shape:
            empty = torch.empty(shape, dtype=current.dtype)
            if isinstance(current, nn.Parameter):
                setattr(owner, attribute, nn.Parameter(empty, requires_grad=current.requires_grad))
            else:
                owner.register_buffer(attribute, empty)
    return model
