"""Kept for inference snippets copied before core/ was split into subpackages (``from core.datasets import
read_image``)."""

from core.data.images import read_image

__all__ = ["read_image"]
