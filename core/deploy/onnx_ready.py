"""What lets every architecture SegTune trains export to ONNX (opset 17, TorchScript-based exporter).

Two things stop the exporter, both fixed for the model's one input size (an exported model takes
``image_size`` x ``image_size`` images; only the batch axis is dynamic):

- adaptive average pooling to a size that does not divide its input (PSPNet's and UPerNet's
  pyramid pooling: bins 1, 2, 3, 6 over a 4x4 or 8x8 map). ONNX has no such operator, but for a
  known input size the pooling is two matrix products with constant averaging matrices, exact up
  to float rounding (``adaptive_pooling``);
- timm ViTs built with ``dynamic_img_size`` (DPT's encoder) resample their position embeddings on
  every call with antialiased bicubic interpolation, which ONNX opset 17 lacks. For one input size
  the resampled table is a constant: ``portable_copy`` resamples it once (timm's
  ``set_input_size``), and the forward pass then skips the resampling.

Every export is still checked against the original model's outputs (core.deploy.export).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def pool_matrix(size: int, bins: int) -> torch.Tensor:
    """(bins, size) averaging matrix of adaptive average pooling: bin i covers [floor(i*size/bins),
    ceil((i+1)*size/bins))."""
    matrix = torch.zeros(bins, size)
    for index in range(bins):
        start, end = (index * size) // bins, -(-(index + 1) * size // bins)
        matrix[index, start:end] = 1.0 / (end - start)
    return matrix


def _adaptive_avg_pool2d(g: Any, image: Any, output_size: Any) -> Any:
    from torch.onnx import symbolic_helper, symbolic_opset9

    height, width = symbolic_helper._get_tensor_sizes(image)[-2:]
    bins_h, bins_w = symbolic_helper._parse_arg(output_size, "is")
    if height is None or width is None or (height % bins_h == 0 and width % bins_w == 0):
        return symbolic_opset9.adaptive_avg_pool2d(g, image, output_size)  # ONNX's own pooling does these
    rows = g.op("Constant", value_t=pool_matrix(height, bins_h))
    columns = g.op("Constant", value_t=pool_matrix(width, bins_w).T.contiguous())
    return g.op("MatMul", g.op("MatMul", rows, image), columns)  # (bh, H) @ x @ (W, bw)


@contextmanager
def adaptive_pooling(opset: int) -> Iterator[None]:
    """While exporting: adaptive average pooling of any known size becomes constant matrix products."""
    torch.onnx.register_custom_op_symbolic("aten::adaptive_avg_pool2d", _adaptive_avg_pool2d, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::adaptive_avg_pool2d", opset)


def _resizable_vits(model: nn.Module) -> list[str]:
    """Names of timm ViTs that resample their position embeddings on every call."""
    return [
        name
        for name, module in model.named_modules()
        if getattr(module, "dynamic_img_size", False) and hasattr(module, "set_input_size")
    ]


def portable_copy(model: nn.Module, image_size: int) -> nn.Module:
    """``model`` itself when it exports as is, else a copy with its ViTs fixed at ``image_size``."""
    names = _resizable_vits(model)
    if not names:
        return model
    fixed = copy.deepcopy(model)
    for name in names:
        fixed.get_submodule(name).set_input_size(img_size=(image_size, image_size))
    return fixed
