"""Kept for inference snippets copied before core/ was split into subpackages (``from core.predict import ...``)."""

from core.deploy.predict import mask_png, predict_folder, predict_image

__all__ = ["mask_png", "predict_folder", "predict_image"]
