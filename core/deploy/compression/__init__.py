"""Compression: compressed variants of a trained model: int8 quantization (static, dynamic, QAT) and pruning.

The cell-segmentation optimizer x loss study (core/search/presets/README.md) showed a tuned U-Net survives int8 or
50-90 % sparsity with < 1 % accuracy loss; this module derives such variants and measures the trade-off on the study's
own splits.

Quantization tooling: the installed torch (2.14) no longer ships the PT2E quantizers (they moved to torchao, which is
not a dependency), while FX graph mode (``prepare_fx`` / ``convert_fx``) still runs, producing models for the x86
(fbgemm/onednn) or ARM (qnnpack) CPU backends. Every architecture SegTune trains, transformer encoders included, is
first made traceable at its image size (traceable.py: the Python branches of smp, timm and torchvision models all test
fixed shapes). ``dynamic`` quantizes only the Linear layers, leaving the rest in float. Quantized variants run on the
CPU only and are stored as TorchScript; pruned ones are ordinary float models and are stored as bundles (channel-pruned
ones, which torch-pruning has made smaller than their architecture, with their layer shapes: core.modeling.pruned). QAT
and pruning fine-tune for a number of epochs of the training split with per-method defaults (config.FINETUNE_DEFAULTS;
qat.py and pruning.py say why each recipe looks as it does).
"""
