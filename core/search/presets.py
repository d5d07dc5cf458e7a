"""Paper presets: the search spaces of the seed papers (see ``presets/README.md`` and PAPERS.md)."""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import SegTuneError, unknown_option
from core.search.spec import StudySpec
from core.search.validation import spec_from_dict

PRESETS_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.json"))


def load_preset(name: str, dataset: str, study_name: str | None = None) -> StudySpec:
    """A paper preset as a validated spec for ``dataset``."""
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        raise SegTuneError(unknown_option("preset", name, preset_names()))
    data = json.loads(path.read_text(encoding="utf-8"))
    data["dataset"] = dataset
    data["name"] = study_name or f"{name}-{dataset}"
    return spec_from_dict(data)


