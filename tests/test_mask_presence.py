"""A segmentation dataset turned into a 'mask empty / not empty' classification dataset (core.data.mask_presence)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.data.demo import create_demo_dataset
from core.data.images import read_mask
from core.data.ingest import ingest_dataset
from core.data.intensity import IntensityConfig
from core.data.manifest import DatasetError, DatasetNotFound, dataset_names, load_manifest
from core.data.mask_presence import mask_presence_dataset, presence_classes
from core.data.splits import SplitConfig, class_counts, make_split
from core.data.tensors import clear_tensor_cache, load_tensor_set
from core.data.volume_ingest import VolumeIngestOptions, ingest_volumes
from core.settings import Settings
from tests.helpers.classification_data import LIVER_GROUPS, liver_tiles
from tests.helpers.volume_data import msd_folder


@pytest.fixture
def volumes(tmp_path: Path) -> Path:
    """A volume dataset of 6 synthetic CT cases: the organ fills the middle slices, the end slices are empty."""
    store = tmp_path / "store"
    ingest_volumes(
        msd_folder(tmp_path / "src", 6),
        "ct",
        store,
        options=VolumeIngestOptions(intensity=IntensityConfig.window("abdomen")),
    )
    return store


def test_slices_are_labelled_by_their_masks_and_keep_their_volumes(volumes: Path) -> None:
    origin = load_manifest(volumes, "ct")
    manifest = mask_presence_dataset(volumes, "ct", "ct-presence")
    assert manifest.is_classification and manifest.classes == presence_classes(origin) == (
        "no foreground",
        "foreground",
    )
    for pair in origin.pairs:
        has_foreground = bool(read_mask(volumes / "ct" / pair.mask).any())
        assert manifest.labels[pair.stem] == int(has_foreground)
        assert (volumes / "ct-presence" / pair.image).read_bytes() == (volumes / "ct" / pair.image).read_bytes()
    assert set(manifest.labels.values()) == {0, 1}
    assert manifest.groups == origin.groups and len(set(manifest.groups.values())) == 6
    assert not manifest.is_volume and load_manifest(volumes, "ct-presence") == manifest
    clear_tensor_cache()
    data = load_tensor_set(volumes / "ct-presence", manifest, manifest.stems[:5], 32, 1)
    assert data.targets.tolist() == [manifest.labels[s] for s in manifest.stems[:5]]


@pytest.mark.parametrize(
    "config", [SplitConfig(seed=s) for s in range(3)] + [SplitConfig(k_folds=3, fold=f, test=0.2) for f in range(3)]
)
def test_splits_of_the_new_dataset_keep_volumes_whole(volumes: Path, config: SplitConfig) -> None:
    manifest = mask_presence_dataset(volumes, "ct", "ct-presence")
    split = make_split(manifest.stems, config, manifest.groups, manifest.labels)
    owners = [{manifest.groups[s] for s in part} for part in (split.train, split.val, split.test)]
    assert all(owners) and not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])


def test_class_names_can_be_chosen(volumes: Path) -> None:
    manifest = mask_presence_dataset(volumes, "ct", "organ", classes=["absent", "present"])
    assert manifest.classes == ("absent", "present") and set(manifest.class_counts) == {"absent", "present"}


def test_refusals_list_every_problem_and_store_nothing(volumes: Path) -> None:
    create_demo_dataset(volumes, count=6, size=32)  # every demo mask holds cells: 'no foreground' would be empty
    with pytest.raises(DatasetError) as info:
        mask_presence_dataset(volumes, "demo-cells", "ct")
    assert "already exists" in info.value.problems["name"]
    assert (
        "no image would be in class 'no foreground': no mask is empty in 'demo-cells'" in info.value.problems["classes"]
    )
    mask_presence_dataset(volumes, "ct", "labelled")
    with pytest.raises(DatasetError) as info:
        mask_presence_dataset(volumes, "labelled", "again", classes=["same", "same"])
    assert (
        "already a classification dataset" in info.value.problems["source"]
        and "two distinct" in info.value.problems["classes"]
    )
    with pytest.raises(DatasetNotFound, match="available: 'ct', 'demo-cells', 'labelled'"):
        mask_presence_dataset(volumes, "nope", "new")
    assert dataset_names(volumes) == ["ct", "demo-cells", "labelled"] and not [
        p for p in volumes.iterdir() if p.name.startswith(".")
    ]


def test_cli_from_masks(tmp_path: Path, workspace: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    ingest_volumes(
        msd_folder(tmp_path / "src", 3),
        "ct",
        workspace.datasets_dir,
        options=VolumeIngestOptions(intensity=IntensityConfig.window("abdomen")),
    )
    assert main(["datasets", "from-masks", "ct", "--name", "ct-cls", "--classes", "empty,organ"]) == 0
    assert re.search(
        r"created ct-cls from ct: \d+ labelled images, 1 channel\(s\), classes empty \d+, organ \d+",
        capsys.readouterr().out,
    )
    assert load_manifest(workspace.datasets_dir, "ct-cls").classes == ("empty", "organ")
    assert main(["datasets", "from-masks", "ct"]) == 2  # the new name is missing
    assert main(["datasets", "from-masks", "nope", "--name", "x"]) == 2
    assert "no dataset named 'nope'" in capsys.readouterr().err


def test_liver_tiles_become_liver_and_no_liver_grouped_by_volume_and_stratified(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ingest_dataset(liver_tiles(tmp_path / "tiles"), "liver", store, classes=["background", "liver"])
    manifest = mask_presence_dataset(store, "liver", "liver-presence")
    assert manifest.classes == ("no liver", "liver")
    assert min(manifest.class_counts.values()) >= 40
    labels = manifest.labels
    overall = sum(labels.values()) / len(labels)

    def volume(stem: str) -> str:
        return re.match(LIVER_GROUPS, stem).group(1)

    splits = [
        make_split(
            manifest.stems, SplitConfig(k_folds=3, fold=f, test=0.2, seed=0, group_pattern=LIVER_GROUPS), labels=labels
        )
        for f in range(3)
    ]
    for split in splits:
        volumes = [{volume(s) for s in part} for part in (split.train, split.val, split.test)]
        assert not (volumes[0] & volumes[1] or volumes[0] & volumes[2] or volumes[1] & volumes[2])
        for counts in class_counts(split, labels).values():
            assert counts[1] / sum(counts.values()) == pytest.approx(overall, abs=0.12)
    assert np.mean([len(s.val) for s in splits]) == pytest.approx(
        len(set(manifest.stems) - set(splits[0].test)) / 3, abs=1
    )
