"""Static int8 (PTQ) and QAT for every architecture of the registry: Dice, file size, CPU latency, int8 ONNX.

    python bench/quantize_architectures.py [--architectures Unet,PSPNet]

The same small models as tests/test_quantize_architectures.py (tests/helpers/quantization_models.py: lungs
at 64 px for segmentation, PAN at 128 px, bars for classifiers, resnet18 / mit_b0 / ViT-tiny
encoders at full depth, trained from scratch on the CPU), each quantized by the product's
``compress`` with its defaults (QAT: 2 epochs, at least 20 steps) and measured by
``compare_variants``; the int8 model is then exported to ONNX and checked against PyTorch's masks.
Prints a Markdown table for bench/RESULTS.md ("Int8 for every architecture"): ~15 min on 2 shared cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.deploy.compression.config import CompressionConfig
from core.deploy.compression.measure import compare_variants
from core.deploy.compression.methods import compress
from core.deploy.export import export_onnx
from core.modeling.architectures import names
from tests.helpers.quantization_models import datasets, train_small


def _onnx(model: torch.nn.Module, sample: torch.Tensor) -> str:
    with tempfile.TemporaryDirectory() as folder:
        try:
            return f"{export_onnx(model, sample, Path(folder) / 'int8.onnx', int8=True).mask_agreement:.1%} agree"
        except Exception as exc:  # reported in the table, not raised: the sweep goes on
            return f"no ({str(exc).split(':')[1].strip()[:40]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", default=",".join(names()))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data_sets = datasets()
    print(
        "| architecture | method | val metric fp32 | int8 | change | file int8/fp32 | CPU latency fp32 → int8 (ms) | "
        "int8 ONNX | seconds |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|---:|")
    for architecture in args.architectures.split(","):
        model, data, loss = train_small(architecture, data_sets)
        metric = data.report_metrics[0]
        for method in ("ptq", "qat"):
            started = time.perf_counter()
            variant = compress(CompressionConfig(method, loss=loss), model, data)
            original, report = compare_variants(model, [variant], data, repeats=3)
            onnx = _onnx(variant.model, data.val.images[:4].float().div(255.0))
            print(
                f"| {architecture} | {method} | {metric} {original.val[metric]:.3f} | {report.val[metric]:.3f} | "
                f"{report.val[metric] - original.val[metric]:+.3f} | {report.size_mb / original.size_mb:.3f} | "
                f"{original.latency_ms:.1f} → {report.latency_ms:.1f} | {onnx} | {time.perf_counter() - started:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
