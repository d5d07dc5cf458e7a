"""Datasets: ingest and validation, the stored manifest, frozen splits, decoded tensors, overlays."""
