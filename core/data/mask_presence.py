"""A segmentation dataset turned into a classification one: is there any foreground on this image?

One step from "where is the lesion" to "is there a lesion on this slice": every image of a stored
segmentation dataset is stored again, byte for byte, as class 1 (the foreground, e.g. ``liver``)
when its mask holds a foreground pixel and as class 0 (``no liver``) when the mask is empty. Each
image keeps its split group (a volume dataset's slices keep their volume), so the slices of one
volume stay in one split; a kept ``split.csv`` comes along. The manifest's per-pair foreground
fractions decide, so no mask is read again.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from core.data.manifest import (
    MANIFEST_FILE,
    DatasetError,
    DatasetManifest,
    PairInfo,
    Task,
    building_dataset,
    dataset_path,
    folder_checksum,
    load_manifest,
    new_name_problem,
)
from core.data.split_file import SPLIT_FILE
from core.errors import add_problem


def presence_classes(manifest: DatasetManifest) -> tuple[str, str]:
    """Default class names: ``("no liver", "liver")`` for a binary dataset whose foreground is ``liver``."""
    positive = manifest.classes[1] if manifest.is_binary else "foreground"
    return f"no {positive}", positive


def presence_labels(manifest: DatasetManifest) -> dict[str, int]:
    """stem -> 1 when the pair's mask holds any foreground, else 0."""
    return {pair.stem: int(any(fraction > 0 for fraction in pair.foreground)) for pair in manifest.pairs}


def mask_presence_dataset(
    datasets_dir: Path, source: str, name: str, *, classes: Sequence[str] | None = None
) -> DatasetManifest:
    """Store segmentation dataset ``source`` as classification dataset ``name`` (mask empty: class 0, else 1).

    ``classes``: the two class names, empty first (default :func:`presence_classes`). Raises
    :class:`DatasetError` with every problem (name taken or invalid, source not segmentation, bad
    class names, a class without images) and stores nothing then.
    """
    origin = load_manifest(datasets_dir, source)  # DatasetNotFound names the datasets there are
    names = tuple(classes) if classes is not None else presence_classes(origin)
    labels = presence_labels(origin)
    problems = _problems(datasets_dir, origin, name, names, labels)
    if problems:
        raise DatasetError(problems)
    with building_dataset(datasets_dir, name) as work:
        return _store(dataset_path(datasets_dir, source), origin, work, name, names, labels)


def _problems(
    datasets_dir: Path, origin: DatasetManifest, name: str, classes: tuple[str, ...], labels: dict[str, int]
) -> dict[str, str]:
    problems: dict[str, str] = {}
    taken = new_name_problem(datasets_dir, name)
    if taken:
        problems["name"] = taken
    if origin.is_classification:
        problems["source"] = f"{origin.name!r} is already a classification dataset; pick a segmentation dataset"
    if len(classes) != 2 or len(set(classes)) != 2 or not all(isinstance(c, str) and c.strip() for c in classes):
        problems["classes"] = f"must be two distinct non-empty names, empty masks first; got {list(classes)!r}"
    elif not origin.is_classification:
        for index, what in ((0, "no mask is empty"), (1, "every mask is empty")):
            if index not in labels.values():
                add_problem(
                    problems, "classes", f"no image would be in class {classes[index]!r}: {what} in {origin.name!r}"
                )
    return problems


def _store(
    folder: Path, origin: DatasetManifest, work: Path, name: str, classes: tuple[str, ...], labels: dict[str, int]
) -> DatasetManifest:
    (work / "images").mkdir()
    for pair in origin.pairs:
        shutil.copyfile(folder / pair.image, work / pair.image)
    if (folder / SPLIT_FILE).is_file():
        shutil.copyfile(folder / SPLIT_FILE, work / SPLIT_FILE)
    pairs = tuple(
        PairInfo(
            p.stem, p.image, "", p.height, p.width, (), volume=p.volume, slice_index=p.slice_index, label=labels[p.stem]
        )
        for p in origin.pairs
    )
    manifest = DatasetManifest(
        name=name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source=f"dataset {origin.name} (masks: {classes[0]} = empty, {classes[1]} = any foreground)",
        channels=origin.channels,
        bit_depth=origin.bit_depth,
        classes=classes,
        pairs=pairs,
        checksum=folder_checksum(work, {stem: classes[label] for stem, label in labels.items()}),
        task=Task.CLASSIFICATION,
    )
    (work / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    return manifest
