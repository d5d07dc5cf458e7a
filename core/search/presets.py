"""Paper presets: the search spaces of the seed papers (see ``presets/README.md`` and PAPERS.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from core.contract import Task
from core.errors import SegTuneError, unknown_option
from core.search.auto import plan_for_manifest
from core.search.spec import StudySpec
from core.search.validation import spec_from_dict

if TYPE_CHECKING:
    from core.data.manifest import DatasetManifest

PRESETS_DIR = Path(__file__).parent / "presets"


AUTO = "auto"  # planned from the dataset's fingerprint (core.search.auto), not a file


def preset_names(task: str | None = None) -> list[str]:
    """The paper presets (files), optionally only those of one task; the form offers ``[AUTO, *preset_names()]``."""
    paths = sorted(PRESETS_DIR.glob("*.json"))
    if task is not None:
        paths = [
            path
            for path in paths
            if json.loads(path.read_text(encoding="utf-8")).get("task", Task.SEGMENTATION) == task
        ]
    return [path.stem for path in paths]


def load_preset(
    name: str,
    dataset: str,
    study_name: str | None = None,
    *,
    manifest: DatasetManifest | None = None,
    device: str = "cuda",
    hours: float | None = None,
) -> StudySpec:
    """A preset as a validated spec for ``dataset``; "auto" needs the dataset's ``manifest`` (either task)
    and plans for ``hours`` (the device's default budget when None)."""
    if name == AUTO:
        if manifest is None:
            raise SegTuneError("the auto preset is planned from the dataset's manifest: load the dataset first")
        return spec_from_dict(
            plan_for_manifest(manifest, name=study_name or f"auto-{dataset}", device=device, hours=hours).spec
        )
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        raise SegTuneError(unknown_option("preset", name, [AUTO, *preset_names()]))
    data = json.loads(path.read_text(encoding="utf-8"))
    data["dataset"] = dataset
    data["name"] = study_name or f"{name}-{dataset}"
    return spec_from_dict(data)
