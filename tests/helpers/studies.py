"""Workspaces and real, fast studies for tests that need a trained trial to look at."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.settings import Settings, load_settings


@contextmanager
def module_workspace(folder: Path) -> Iterator[Settings]:
    """Like conftest's ``workspace`` fixture, for module- or session-scoped fixtures (no monkeypatch there)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGTUNE_HOME", str(folder))
        for name in ("SEGTUNE_DB", "SEGTUNE_ARTIFACTS", "SEGTUNE_PASSWORD", "SEGTUNE_IMPORT_ROOTS"):
            patch.delenv(name, raising=False)
        yield load_settings()


def copy_pairs(source: Path, target: Path, count: int, *, every: int = 1) -> Path:
    """Copy ``count`` image/mask pairs (images/ + masks/ layout, matched by stem) into ``target``."""
    images = sorted((source / "images").iterdir())[::every][:count]
    masks = {path.stem: path for path in (source / "masks").iterdir()}
    (target / "images").mkdir(parents=True)
    (target / "masks").mkdir(parents=True)
    for image in images:
        shutil.copy(image, target / "images" / image.name)
        shutil.copy(masks[image.stem], target / "masks" / masks[image.stem].name)
    return target


def tiny_study(
    settings: Settings,
    name: str,
    *,
    dataset: str = "demo-cells",
    trials: int = 1,
    previews: int = 3,
    lr: object = 3e-3,
    compile_mode: str = "off",
):
    """A real, fast study (tiny ClassicUNet, 64 px, 2 epochs) on ``dataset``; the demo cells are
    created when that dataset is asked for and missing."""
    from core.data.demo import create_demo_dataset
    from core.data.manifest import dataset_names
    from core.runtime.tuning import run_study
    from core.search.validation import spec_from_dict

    if dataset == "demo-cells" and dataset not in dataset_names(settings.datasets_dir):
        create_demo_dataset(settings.datasets_dir, count=24, size=64)
    spec = spec_from_dict(
        {
            "name": name,
            "dataset": dataset,
            "image_size": 64,
            "sampler": "random",
            "pruner": "none",
            "budget": {"n_trials": trials, "max_epochs": 2},
            "preview_count": previews,
            "compile": compile_mode,
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 4,
                "unet_depth": 2,
                "batch_size": 8,
                "epochs": 2,
                "lr": lr,
            },
        }
    )
    return run_study(spec, settings, device="cpu")
