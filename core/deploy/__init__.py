"""Shipping models: bundles and model cards, ONNX/TorchScript export, prediction, compression."""
