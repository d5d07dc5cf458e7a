"""Kept for bundles exported before core/ was split into subpackages, whose model cards print
``core.bundle.load_bundle`` (it reads both bundle layouts: segtune.json, and the config.json of bundles exported before
it)."""

from core.modeling.bundle import BundleConfig, load_bundle, load_bundle_config, save_bundle

__all__ = ["BundleConfig", "load_bundle", "load_bundle_config", "save_bundle"]
