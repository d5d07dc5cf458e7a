"""The classification data layer: manifest fields, decoded ImageSets of labels, batches, stratified group splits."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.data.manifest import (
    MANIFEST_FILE,
    DatasetError,
    DatasetManifest,
    PairInfo,
    Task,
    dataset_stats,
    folder_checksum,
    load_manifest,
)
from core.data.splits import SplitConfig, SplitError, class_counts, frozen_split, make_split, split_sizes
from core.data.tensors import (
    AugmentConfig,
    ImageSet,
    augment_batch,
    clear_tensor_cache,
    iterate_batches,
    load_tensor_set,
)

SIZE = 24
CLASSES = ("normal", "tumour")


def arrow(label: int, seed: int) -> np.ndarray:
    """Grey image whose bright bar is horizontal (class 0) or vertical (class 1), so flips and labels can be checked."""
    image = np.full((SIZE, SIZE), 20 + seed, np.uint8)
    if label:
        image[2:20, 4:8] = 230
    else:
        image[4:8, 2:20] = 230
    return image


def write_dataset(root: Path, labels: list[int], name: str = "cls") -> tuple[Path, DatasetManifest]:
    """A stored classification dataset written by hand (what ingest writes: images/ + dataset.json)."""
    folder = root / name
    (folder / "images").mkdir(parents=True)
    pairs = []
    for index, label in enumerate(labels):
        stem = f"img{index:02d}"
        Image.fromarray(arrow(label, index)).save(folder / "images" / f"{stem}.png")
        pairs.append(PairInfo(stem, f"images/{stem}.png", "", SIZE, SIZE, (), label=label))
    names = {pair.stem: CLASSES[pair.label] for pair in pairs}
    manifest = DatasetManifest(
        name=name,
        created="2025-01-01T00:00:00+00:00",
        source="test",
        channels=1,
        bit_depth=8,
        classes=CLASSES,
        pairs=tuple(pairs),
        checksum=folder_checksum(folder, names),
        task=Task.CLASSIFICATION,
    )
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict()), encoding="utf-8")
    clear_tensor_cache()
    return folder, manifest


# --- manifest -------------------------------------------------------------------------------------------


def test_classification_manifest_round_trips_with_labels_counts_and_stats(tmp_path: Path) -> None:
    folder, manifest = write_dataset(tmp_path, [0, 1, 1, 0, 1])
    loaded = load_manifest(tmp_path, "cls")
    assert loaded == manifest and loaded.is_classification and loaded.task == "classification"
    assert loaded.labels == {"img00": 0, "img01": 1, "img02": 1, "img03": 0, "img04": 1}
    assert loaded.class_counts == {"normal": 2, "tumour": 3}
    stored = json.loads((folder / MANIFEST_FILE).read_text())
    assert stored["task"] == "classification" and stored["pairs"][1]["label"] == 1 and stored["pairs"][1]["mask"] == ""
    stats = dataset_stats(loaded)
    assert stats.class_counts == {"normal": 2, "tumour": 3} and stats.foreground == {} and stats.empty_masks == 0


def test_segmentation_manifests_keep_their_bytes_and_have_no_labels() -> None:
    old = {
        "version": 1,
        "name": "cells",
        "created": "2024-01-01T00:00:00+00:00",
        "source": "x.zip",
        "channels": 1,
        "bit_depth": 8,
        "classes": ["background", "foreground"],
        "checksum": "abc",
        "pairs": [
            {"stem": "a", "image": "images/a.png", "mask": "masks/a.png", "height": 4, "width": 4, "foreground": [0.5]}
        ],
    }
    manifest = DatasetManifest.from_dict(old)
    assert manifest.task == Task.SEGMENTATION and not manifest.is_classification
    assert manifest.labels == {} and manifest.class_counts == {} and manifest.to_dict() == old


def test_an_unknown_task_is_refused_with_the_valid_ones() -> None:
    data = {
        "version": 1,
        "name": "x",
        "created": "",
        "source": "",
        "channels": 1,
        "bit_depth": 8,
        "classes": ["a", "b"],
        "checksum": "",
        "pairs": [],
        "task": "detection",
    }
    with pytest.raises(
        DatasetError, match=r"unknown dataset task 'detection'; valid: \['segmentation', 'classification'\]"
    ):
        DatasetManifest.from_dict(data)


def test_the_checksum_covers_the_labels(tmp_path: Path) -> None:
    folder, _ = write_dataset(tmp_path, [0, 1])
    assert folder_checksum(folder, {"img00": "normal", "img01": "tumour"}) != folder_checksum(
        folder, {"img00": "tumour", "img01": "tumour"}
    )
    assert folder_checksum(folder, {}) == folder_checksum(folder)


# --- tensors --------------------------------------------------------------------------------------------


def test_a_classification_dataset_decodes_to_a_label_set(tmp_path: Path) -> None:
    folder, manifest = write_dataset(tmp_path, [0, 1, 1, 0])
    data = load_tensor_set(folder, manifest, ["img02", "img00"], 16, 3)
    assert data.task == Task.CLASSIFICATION and data.stems == ("img02", "img00")
    assert data.images.shape == (2, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.targets.tolist() == [1, 0] and data.targets.dtype == torch.int64
    assert load_tensor_set(folder, manifest, ["img02", "img00"], 16, 3) is data  # cached
    part = data.subset([1])
    assert part.stems == ("img00",) and part.targets.tolist() == [0] and torch.equal(part.images[0], data.images[1])
    assert len(part.to("cpu")) == 1 and part.device.type == "cpu"
    with pytest.raises(ValueError, match="differ"):
        ImageSet(data.images, data.targets[:1], data.stems, Task.CLASSIFICATION)
    with pytest.raises(ValueError, match=r"classification targets have 1 dimension\(s\), got shape \(2, 16, 16\)"):
        ImageSet(data.images, torch.zeros(2, 16, 16), data.stems, Task.CLASSIFICATION)  # masks are not labels


def test_relabelled_images_are_not_served_from_the_cache(tmp_path: Path) -> None:
    folder, manifest = write_dataset(tmp_path, [0, 1])
    assert load_tensor_set(folder, manifest, manifest.stems, 16, 1).targets.tolist() == [0, 1]
    pairs = tuple(
        PairInfo(p.stem, p.image, "", p.height, p.width, (), label=1 - (p.label or 0)) for p in manifest.pairs
    )
    relabelled = DatasetManifest(
        **{
            **manifest.__dict__,
            "pairs": pairs,
            "checksum": folder_checksum(folder, {p.stem: CLASSES[p.label or 0] for p in pairs}),
        }
    )
    assert load_tensor_set(folder, relabelled, relabelled.stems, 16, 1).targets.tolist() == [1, 0]


def test_label_batches_and_image_only_augmentation() -> None:
    labels = [i % 2 for i in range(10)]
    data = ImageSet(
        torch.from_numpy(np.stack([arrow(label, i) for i, label in enumerate(labels)]))[:, None],
        torch.tensor(labels),
        tuple(f"s{i}" for i in range(10)),
        Task.CLASSIFICATION,
    )
    batches = list(iterate_batches(data, 4, shuffle=False, generator=None, augment=None))
    assert [targets.tolist() for _, targets in batches] == [labels[:4], labels[4:8], labels[8:]]
    assert batches[0][0].dtype == torch.float32 and batches[0][1].dtype == torch.long
    assert torch.allclose(batches[0][0], data.images[:4].float() / 255)
    shuffled = [
        t
        for _, targets in iterate_batches(
            data, 3, shuffle=True, generator=torch.Generator().manual_seed(0), augment=None
        )
        for t in targets.tolist()
    ]
    assert Counter(shuffled) == Counter(labels)
    config = AugmentConfig(hflip=True, rotate=20.0, shift_scale=0.1, brightness_contrast=0.2)
    images, targets = next(
        iterate_batches(data, 10, shuffle=False, generator=torch.Generator().manual_seed(1), augment=config)
    )
    assert targets.tolist() == labels and images.shape == (10, 1, SIZE, SIZE)
    assert not torch.allclose(images, data.images.float() / 255)  # geometry and photometry applied to images alone
    flipped, none = augment_batch(
        data.images.float() / 255, None, AugmentConfig(hflip=True), torch.Generator().manual_seed(0)
    )
    assert none is None
    changed = [i for i in range(10) if not torch.equal(flipped[i], data.images[i].float() / 255)]
    assert 0 < len(changed) < 10 and all(
        torch.equal(flipped[i], data.images[i].float().flip(-1) / 255) for i in changed
    )


def test_the_same_seed_augments_images_alike_with_or_without_masks() -> None:
    images = torch.rand(6, 1, SIZE, SIZE)
    config = AugmentConfig(hflip=True, vflip=True, rotate=30.0)
    alone, _ = augment_batch(images, None, config, torch.Generator().manual_seed(4))
    with_masks, _ = augment_batch(
        images, torch.zeros(6, SIZE, SIZE, dtype=torch.uint8), config, torch.Generator().manual_seed(4)
    )
    assert torch.equal(alone, with_masks)


# --- stratified, group-aware splits ---------------------------------------------------------------------


def labelled_stems(
    count: int, positive: float, seed: int = 0, group_size: int = 1
) -> tuple[list[str], dict[str, int], dict[str, str]]:
    rng = random.Random(seed)
    stems = [f"p{i // group_size:03d}_s{i % group_size}" for i in range(count)]
    groups = {stem: stem.split("_")[0] for stem in stems}
    by_group = {group: int(rng.random() < positive) for group in sorted(set(groups.values()))}
    return stems, {stem: by_group[groups[stem]] for stem in stems}, groups


def share(counter: Counter[int], label: int = 1) -> float:
    return counter[label] / max(sum(counter.values()), 1)


@pytest.mark.parametrize("seed", range(4))
def test_stratified_parts_keep_the_class_proportions(seed: int) -> None:
    stems, labels, _ = labelled_stems(300, 0.2, seed)
    split = make_split(stems, SplitConfig(seed=seed), labels=labels)
    counts = class_counts(split, labels)
    overall = sum(labels.values()) / len(labels)
    for part, counter in counts.items():
        expected = {"train": 0.70, "val": 0.16, "test": 0.14}[part] * len(stems)
        assert sum(counter.values()) == pytest.approx(expected, abs=2)
        for label, total in Counter(labels.values()).items():  # within one image of the exact proportion
            assert abs(counter[label] - total * sum(counter.values()) / len(stems)) <= 1.5, (part, counter)
        assert share(counter) == pytest.approx(overall, abs=0.04)


def test_stratification_beats_a_plain_split_on_a_rare_class() -> None:
    worst = {True: 0.0, False: 0.0}
    for seed in range(10):
        stems, labels, _ = labelled_stems(120, 0.1, seed)
        overall = sum(labels.values()) / len(labels)
        for stratify in (True, False):
            split = make_split(stems, SplitConfig(seed=seed), labels=labels if stratify else None)
            deviation = max(abs(share(c) - overall) for c in class_counts(split, labels).values())
            worst[stratify] = max(worst[stratify], deviation)
    assert worst[True] < 0.03 < worst[False]


@pytest.mark.parametrize(
    "config",
    [SplitConfig(seed=s) for s in range(3)] + [SplitConfig(k_folds=3, fold=f, test=0.2, seed=1) for f in range(3)],
)
def test_stratified_splits_never_cut_a_group(config: SplitConfig) -> None:
    stems, labels, groups = labelled_stems(240, 0.3, seed=2, group_size=4)
    split = make_split(stems, config, groups, labels)
    owners = [{groups[s] for s in part} for part in (split.train, split.val, split.test)]
    assert all(owners) and not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert sorted((*split.train, *split.val, *split.test)) == sorted(stems)
    overall = sum(labels.values()) / len(labels)
    assert all(share(c) == pytest.approx(overall, abs=0.07) for c in class_counts(split, labels).values())


def test_stratified_k_folds_cover_every_item_once_share_the_test_set_and_keep_proportions() -> None:
    stems, labels, groups = labelled_stems(150, 0.25, seed=3, group_size=3)
    splits = [make_split(stems, SplitConfig(k_folds=3, fold=f, test=0.2, seed=7), groups, labels) for f in range(3)]
    assert len({s.test for s in splits}) == 1 and splits[0].test
    rest = set(stems) - set(splits[0].test)
    vals = [set(s.val) for s in splits]
    assert set().union(*vals) == rest and sum(len(v) for v in vals) == len(rest)
    for split in splits:
        assert set(split.train) == rest - set(split.val)
    overall = sum(labels[s] for s in rest) / len(rest)
    assert all(abs(sum(labels[s] for s in val) / len(val) - overall) < 0.07 for val in vals)


def test_stratified_splits_are_seeded_and_order_free_and_segmentation_splits_unchanged() -> None:
    stems, labels, groups = labelled_stems(60, 0.4, seed=5, group_size=2)
    shuffled = stems[:]
    random.Random(9).shuffle(shuffled)
    first = make_split(stems, SplitConfig(seed=1), groups, labels)
    assert make_split(shuffled, SplitConfig(seed=1), groups, labels) == first
    assert make_split(stems, SplitConfig(seed=2), groups, labels).hash != first.hash
    assert make_split(stems, SplitConfig(seed=1), groups, {}) == make_split(
        stems, SplitConfig(seed=1), groups
    )  # no labels: as before
    assert split_sizes(stems, SplitConfig(seed=1), groups, labels) == {
        "train": len(first.train),
        "val": len(first.val),
        "test": len(first.test),
    }


def test_tiny_stratified_splits_still_fill_every_part() -> None:
    split = make_split(["a", "b", "c"], SplitConfig(), labels={"a": 0, "b": 0, "c": 1})
    assert [len(p) for p in (split.train, split.val, split.test)] == [1, 1, 1]
    no_test = make_split(
        ["a", "b", "c", "d"], SplitConfig(train=0.8, val=0.2, test=0.0), labels={"a": 0, "b": 1, "c": 0, "d": 1}
    )
    assert not no_test.test and no_test.val and no_test.train
    with pytest.raises(SplitError, match="4 folds need at least 4"):
        make_split(["a", "b", "c", "d"], SplitConfig(k_folds=4, test=0.2), labels={"a": 0, "b": 1, "c": 0, "d": 1})
    folds = [
        make_split(["a", "b", "c"], SplitConfig(k_folds=3, fold=f, test=0.0), labels={"a": 0, "b": 1, "c": 0})
        for f in range(3)
    ]
    assert sorted(split.val for split in folds) == [("a",), ("b",), ("c",)]  # exactly k items for k folds: one each


def test_unlabelled_items_are_named() -> None:
    with pytest.raises(SplitError, match=r"1 item\(s\) have no class label, e.g. \['c'\]"):
        make_split(["a", "b", "c", "d"], SplitConfig(), labels={"a": 0, "b": 1, "d": 0})
    stems = [f"u{i:02d}" for i in range(12)]
    with pytest.raises(SplitError) as info:
        make_split(stems, SplitConfig(), labels={"other": 0})
    assert (
        str(info.value)
        == f"12 item(s) have no class label, e.g. {stems[:10]}; a stratified split needs every item's class"
    )


def _volumes(sizes: Sequence[int], classes: str) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """Stems ``g<volume>_<slice>`` for volumes of ``sizes``, grouped by volume, labelled by ``classes`` (one digit a
    stem)."""
    stems = [f"g{volume}_{index}" for volume, size in enumerate(sizes) for index in range(size)]
    return (
        stems,
        {stem: stem.split("_")[0] for stem in stems},
        {stem: int(digit) for stem, digit in zip(stems, classes, strict=True)},
    )


@pytest.mark.parametrize(
    ("sizes", "classes", "config", "val", "test"),
    [
        # biggest volume first (the 2-slice one), then the singles; ties between equal sizes go by the seeded order
        ((1, 2, 1), "1120", SplitConfig(k_folds=2, fold=1, test=0.0, seed=5), ("g0_0",), ()),
        ((1, 1, 1), "102", SplitConfig(k_folds=2, fold=0, test=0.0, seed=2), ("g0_0", "g2_0"), ()),
        # a fold left empty by the deal gets the smallest volume of the fullest fold
        ((1, 1, 1, 1), "1001", SplitConfig(k_folds=3, fold=2, test=0.0, seed=2), ("g1_0",), ()),
        # each volume to the part whose squared distance from its class targets grows least
        (
            (3, 4, 1, 3, 3, 1, 2),
            "01201102200021200",
            SplitConfig(k_folds=3, fold=2, test=0.2, seed=3),
            ("g3_0", "g3_1", "g3_2"),
            ("g2_0", "g6_0", "g6_1"),
        ),
    ],
)
def test_the_stratified_deal_is_reproduced_exactly(
    sizes, classes: str, config: SplitConfig, val: tuple[str, ...], test: tuple[str, ...]
) -> None:
    """A study's stratified split is made again from its config (resume, extend): these outcomes of
    the dealing rule, worked out with it, must not drift between versions."""
    stems, groups, labels = _volumes(sizes, classes)
    split = make_split(stems, config, groups, labels)
    assert (split.val, split.test) == (val, test)
    assert split.train == tuple(sorted(set(stems) - set(val) - set(test)))


def test_frozen_stratified_split_is_stored(tmp_path: Path) -> None:
    stems, labels, _ = labelled_stems(50, 0.3)
    split = frozen_split(tmp_path, stems, SplitConfig(seed=3), labels=labels)
    assert (tmp_path / "splits" / f"{split.hash}.json").is_file()
    assert split == make_split(stems, SplitConfig(seed=3), labels=labels)
