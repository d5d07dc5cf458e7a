"""Kept for the model cards of bundles exported before core/ was split into subpackages, whose Python
snippet imports ``from core.predict import mask_png, predict_folder, predict_image``
(tests/test_legacy_workspace.py runs it)."""

from core.deploy.predict import mask_png, predict_folder, predict_image

__all__ = ["mask_png", "predict_folder", "predict_image"]
