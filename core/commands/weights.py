"""``python -m core weights [list|fetch NAME...]``: ImageNet weights for pretrained encoders and classifiers.

Trials never download. ``fetch`` (on a machine that is online) puts the weights where trials look
for them: smp encoders (resnet18, resnet34, ...) in the Hugging Face cache ($HF_HUB_CACHE, default
~/.cache/huggingface/hub), classifiers (ResNet18, MobileNetV2, ...) in torch's ($TORCH_HOME/hub/checkpoints,
default ~/.cache/torch/hub/checkpoints). Copy those folders to an offline machine; ``list`` shows
what is cached here, and the auto plan proposes ``encoder_weights: imagenet`` for what is.
"""

from __future__ import annotations

import argparse

from core.modeling.classifiers import BACKBONES
from core.modeling.pretrained import cache_folder, fetch, is_cached

LISTED_ENCODERS = ("resnet18", "resnet34", "resnet50", "efficientnet-b2")  # the auto plan's encoders


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights", help="list cached ImageNet weights, or fetch them (on a machine that is online)"
    )
    parser.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    parser.add_argument("names", nargs="*", help="fetch: encoders (resnet18 ...) or classifiers (ResNet18 ...)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        if not args.names:
            print("error: name what to fetch, e.g. python -m core weights fetch resnet18")
            return 2
        for name in args.names:
            print(f"{name}: {fetch(name)}")
        return 0
    for name in (*LISTED_ENCODERS, *BACKBONES):
        print(f"{name:18s} {'cached' if is_cached(name) else 'missing':8s} {cache_folder(name)}")
    return 0
