"""Turning any trained model into a graph FX int8 quantization can work on.

FX graph mode quantization (``prepare_fx``) traces ``forward`` symbolically, and plain symbolic
tracing stops at the first Python ``if`` or loop over a traced value. Every architecture SegTune
trains has such branches, but they all test shapes that are fixed once the image size is: smp's
input-size check, Linknet's "skip has channels", SegFormer's decoder and mix-transformer layer norms
(``x.ndim == 4``), timm ViTs' patch grid. :class:`ShapeTracer` answers each such question by running
the graph traced so far on a real example image, so the branch the model would take at that size
is recorded. The graph is then specialised to that image size: quantized variants are traced at the
size the model was trained at, which is the size SegTune runs them at.

The x86 int8 kernel of ``ConvTranspose2d`` gives wrong results (measured: relative error > 1 on a
single layer, where qnnpack's is 0.02), so transposed convolutions stay in float there. The common
one, a kernel equal to its stride (U-Net's and DPT's up-sampling), is first rewritten as the exactly
equivalent 1x1 convolution + pixel shuffle (:class:`SubPixelUpsample`), which quantizes correctly;
the BatchNorm after one that stays (LinkNet) is folded into it.

Adaptive average pooling (PSPNet's pyramid, DeepLabV3's image pooling, classifier heads) becomes a
fixed pooling for the traced size: plain average pooling where the bins divide the map, else the
exact averaging-matrix products of core.deploy.onnx_ready, so the int8 model exports to ONNX.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as F

from core.deploy.onnx_ready import pool_matrix, portable_copy


class SubPixelUpsample(nn.Module):
    """A ``ConvTranspose2d`` whose kernel equals its stride, as a 1x1 convolution + pixel shuffle.

    Each input pixel of such a transposed convolution writes its own s x s output block, so output
    channel ``c`` at offset (i, j) in the block is the 1x1 convolution channel ``c*s*s + i*s + j``:
    exactly what ``PixelShuffle(s)`` reads.
    """

    def __init__(self, transposed: nn.ConvTranspose2d) -> None:
        super().__init__()
        stride = transposed.stride[0]
        in_channels, out_channels = transposed.in_channels, transposed.out_channels
        self.conv = nn.Conv2d(in_channels, out_channels * stride * stride, 1, bias=transposed.bias is not None)
        with torch.no_grad():
            # (in, out, s, s) -> (out, s, s, in) -> (out*s*s, in, 1, 1)
            weight = transposed.weight.permute(1, 2, 3, 0).reshape(-1, in_channels, 1, 1)
            self.conv.weight.copy_(weight)
            if transposed.bias is not None:
                self.conv.bias.copy_(transposed.bias.repeat_interleave(stride * stride))
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def _is_sub_pixel(module: nn.Module) -> bool:
    if type(module) is not nn.ConvTranspose2d:
        return False
    square = module.kernel_size[0] == module.kernel_size[1] and module.stride[0] == module.stride[1]
    return (
        square
        and module.kernel_size == module.stride
        and module.padding == (0, 0)
        and module.output_padding == (0, 0)
        and module.dilation == (1, 1)
        and module.groups == 1
    )


def replace_sub_pixel_transposes(model: nn.Module) -> int:
    """Swap, in place, every kernel-equals-stride ``ConvTranspose2d`` for a :class:`SubPixelUpsample`."""
    targets = [(name, module) for name, module in model.named_modules() if _is_sub_pixel(module)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, SubPixelUpsample(module))
    return len(targets)


def _bypass(module: fx.GraphModule, node: fx.Node, replacement: fx.Node) -> None:
    """Let ``replacement`` feed everything ``node`` fed, and drop ``node``."""
    node.replace_all_uses_with(replacement)
    module.graph.erase_node(node)


def _recompiled(module: fx.GraphModule, changes: int) -> int:
    module.graph.lint()
    module.recompile()
    return changes


def fold_batch_norms_into_transposes(module: fx.GraphModule) -> int:
    """Fold each BatchNorm that reads only a ``ConvTranspose2d`` into it (in place, eval mode).

    The transposed convolutions left in float would otherwise feed a stand-alone quantized
    BatchNorm, which has no ONNX export (LinkNet's decoder blocks).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    submodules = dict(module.named_modules())
    folded = 0
    for node in list(module.graph.nodes):
        source = node.args[0] if node.op == "call_module" and node.args else None
        if not (
            type(submodules.get(node.target)) is nn.BatchNorm2d
            and isinstance(source, fx.Node)
            and source.op == "call_module"
            and type(submodules.get(source.target)) is nn.ConvTranspose2d
            and len(source.users) == 1
        ):
            continue
        fused = fuse_conv_bn_eval(submodules[source.target], submodules[node.target], transpose=True)
        parent, _, child = source.target.rpartition(".")
        setattr(module.get_submodule(parent), child, fused)
        _bypass(module, node, source)
        folded += 1
    return _recompiled(module, folded)


class MatrixPool(nn.Module):
    """Adaptive average pooling of one input size into any bins: ``rows @ x @ columns`` (exact)."""

    def __init__(self, height: int, width: int, bins: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("rows", pool_matrix(height, bins[0]))
        self.register_buffer("columns", pool_matrix(width, bins[1]).T.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.columns)


def _adaptive_bins(node: fx.Node, submodules: dict[str, nn.Module]) -> Any:
    """The output size of an adaptive average pooling node, or None for any other node."""
    if node.op == "call_module" and type(submodules.get(node.target)) is nn.AdaptiveAvgPool2d:
        return submodules[node.target].output_size
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        return node.args[1] if len(node.args) > 1 else node.kwargs["output_size"]
    return None


def _fixed_pool(height: int, width: int, bins: Any) -> nn.Module:
    bins_h, bins_w = (bins, bins) if isinstance(bins, int) else bins
    bins_h, bins_w = bins_h or height, bins_w or width  # None keeps that side
    if height % bins_h == 0 and width % bins_w == 0:
        return nn.AvgPool2d((height // bins_h, width // bins_w))
    return MatrixPool(height, width, (bins_h, bins_w))


def fix_adaptive_pooling(module: fx.GraphModule, example: torch.Tensor) -> int:
    """Replace, in place, each adaptive average pooling by a fixed one for the sizes ``example`` gives."""
    ShapeProp(module).propagate(example)
    submodules = dict(module.named_modules())
    fixed = 0
    for node in list(module.graph.nodes):
        bins = _adaptive_bins(node, submodules)
        if bins is None:
            continue
        source = node.args[0]
        height, width = source.meta["tensor_meta"].shape[-2:]
        name = f"fixed_pool_{fixed}"
        module.add_submodule(name, _fixed_pool(height, width, bins))
        with module.graph.inserting_after(node):
            replacement = module.graph.call_module(name, (source,))
        _bypass(module, node, replacement)
        fixed += 1
    return _recompiled(module, fixed)


_SHAPE_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device"})
_SHAPE_METHODS = frozenset({"size", "dim"})
_STATIC_FUNCTIONS = frozenset(
    {
        *(
            getattr(operator, name)
            for name in (
                "getitem",
                "eq",
                "ne",
                "lt",
                "le",
                "gt",
                "ge",
                "not_",
                "add",
                "sub",
                "mul",
                "floordiv",
                "mod",
                "truediv",
                "neg",
                "and_",
                "or_",
            )
        ),
        len,
        int,
        bool,
    }
)


def _is_static(node: Any) -> bool:
    """Whether ``node`` (or a constant) depends only on tensor shapes, never on tensor values."""
    if not isinstance(node, fx.Node):
        return True
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] in _SHAPE_ATTRIBUTES or _is_static(node.args[0])
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target in _STATIC_FUNCTIONS:
        return all(_is_static(arg) for arg in (*node.args, *node.kwargs.values()))
    return False


class ShapeTracer(fx.Tracer):
    """An FX tracer that settles Python control flow on shapes by computing them on ``example``.

    Branching on tensor *values* (``if x.mean() > 0``) is refused: a fixed graph would take the
    example's branch for every input.
    """

    def __init__(self, example: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.example = example
        self.root_module: nn.Module | None = None

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        self.root_module = root
        return super().trace(root, concrete_args)

    def _value(self, proxy: fx.Proxy) -> Any:
        """The value ``proxy`` has on the example: the graph so far, run up to its node."""
        # FX's own helper for running real modules while a trace has nn.Module.__call__ patched
        from torch.fx._symbolic_trace import _maybe_revert_all_patches

        graph: fx.Graph = fx.Graph()
        copies: dict[fx.Node, fx.Node] = {}
        for node in self.graph.nodes:
            copies[node] = graph.node_copy(node, lambda n: copies[n])
            if node is proxy.node:
                break
        graph.output(copies[proxy.node])
        with torch.no_grad(), _maybe_revert_all_patches():
            return fx.GraphModule(self.root_module, graph)(*self.example)

    def _static_value(self, proxy: fx.Proxy) -> Any:
        if not _is_static(proxy.node):
            raise fx.proxy.TraceError(
                f"the model branches on tensor values ({proxy.node.format_node()}), which one fixed graph cannot hold"
            )
        return self._value(proxy)

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(self._static_value(obj))

    def iter(self, obj: fx.Proxy) -> Any:
        # unpacking a shape (``b, c, h, w = x.shape``) keeps each element symbolic
        return iter([obj[index] for index in range(len(self._static_value(obj)))])


def traceable(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """A copy of ``model`` as a graph without Python control flow, at ``example``'s size, in ``model``'s train/eval
    mode.

    Traced in eval mode, so computing a branch's value never updates BatchNorm statistics; branches on
    ``self.training`` (timm's stochastic depth) take their inference path.
    """
    # ViTs that resample their position embeddings on every call get the table for this size once
    copied = portable_copy(model, example.shape[-1])
    copied = copy.deepcopy(model) if copied is model else copied
    replace_sub_pixel_transposes(copied)
    if hasattr(copied, "check_input_shape"):
        # smp's size check raises for sizes the model cannot take; the graph is fixed at a valid one
        copied.check_input_shape = lambda x: None
    was_training = copied.training
    graph = ShapeTracer((example,)).trace(copied.eval())
    module = fx.GraphModule(copied, graph, class_name=type(model).__name__)
    fold_batch_norms_into_transposes(module)
    fix_adaptive_pooling(module, example)
    module.delete_all_unused_submodules()  # the replaced BatchNorms and pools
    return module.train(was_training)
