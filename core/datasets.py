"""Kept for the model cards of bundles exported before core/ was split into subpackages, whose Python
snippet imports ``from core.datasets import read_image`` (tests/test_legacy_workspace.py runs it)."""

from core.data.images import read_image

__all__ = ["read_image"]
