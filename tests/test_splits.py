"""Frozen seeded splits (core.data.splits): deterministic, disjoint, complete, group-aware."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from core.data.split_file import SPLIT_FILE, Assignment, write_split_file
from core.data.splits import (
    Split,
    SplitConfig,
    SplitError,
    config_problems,
    file_split,
    frozen_split,
    load_split,
    make_split,
    split_from_assignments,
    split_sizes,
)
from core.errors import SegTuneError
from tests.helpers.machine import shared_path

LIVER_GROUPS = r"^[^_]+_(\d+)"  # ct_liver_msd: the number after the first '_' is the volume id

STEMS = [f"img{i:03d}" for i in range(100)]


def parts(split: Split) -> tuple[tuple[str, ...], ...]:
    return split.train, split.val, split.test


def test_deterministic_and_independent_of_input_order() -> None:
    config = SplitConfig(seed=3)
    shuffled = STEMS[:]
    random.Random(1).shuffle(shuffled)
    first = make_split(STEMS, config)
    assert make_split(shuffled, config) == first
    assert first.hash == make_split(STEMS, SplitConfig(seed=3)).hash and len(first.hash) == 16
    other = make_split(STEMS, SplitConfig(seed=4))
    assert parts(other) != parts(first) and other.hash != first.hash


def test_disjoint_complete_and_close_to_fractions() -> None:
    split = make_split(STEMS, SplitConfig())
    train, val, test = (set(p) for p in parts(split))
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(STEMS)
    assert (len(train), len(val), len(test)) == (70, 16, 14)
    assert split_sizes(STEMS, SplitConfig()) == {"train": 70, "val": 16, "test": 14}
    assert all(list(p) == sorted(p) for p in parts(split))


def test_three_items_give_every_part_one() -> None:
    split = make_split(["a", "b", "c"], SplitConfig())
    assert [len(p) for p in parts(split)] == [1, 1, 1]


def test_no_test_fraction() -> None:
    split = make_split(STEMS[:10], SplitConfig(train=0.8, val=0.2, test=0.0))
    assert (len(split.train), len(split.val), len(split.test)) == (8, 2, 0)


@pytest.mark.parametrize("stems", [[], ["a"], ["a", "b"]])
def test_too_few_items(stems: list[str]) -> None:
    with pytest.raises(SplitError, match=f"at least 3 items .* got {len(stems)}"):
        make_split(stems, SplitConfig())


def test_too_few_groups() -> None:
    with pytest.raises(SplitError, match="got 2"):
        make_split(["p1_a", "p1_b", "p2_a", "p2_b"], SplitConfig(group_pattern=r"^(p\d)_"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (SplitConfig(train=0.5, val=0.2, test=0.2), "sum to 1"),
        (SplitConfig(train=1.0, val=0.0, test=0.0), "val > 0"),
        (SplitConfig(k_folds=1), "k_folds must be at least 2"),
        (SplitConfig(k_folds=3, fold=3), "0 <= fold < k_folds"),
        (SplitConfig(k_folds=3, test=1.0), "test fraction"),
        (SplitConfig(group_pattern="(unclosed"), "not a valid regular expression"),
    ],
)
def test_invalid_config(config: SplitConfig, message: str) -> None:
    with pytest.raises(SplitError, match=re.escape(message)) as info:
        make_split(STEMS, config)
    assert isinstance(info.value, SegTuneError)


def test_duplicate_stems() -> None:
    with pytest.raises(SplitError, match=r"duplicate stems \['a'\]"):
        make_split(["a", "a", "b", "c"], SplitConfig())


def test_groups_stay_together_and_unmatched_stems_are_their_own_group() -> None:
    stems = [f"patient{p}_slice{s}" for p in range(12) for s in range(p % 4 + 1)] + ["odd1", "odd2", "odd3"]
    split = make_split(stems, SplitConfig(group_pattern=r"^(patient\d+)_", seed=5))
    owner = {stem: name for name, part in zip(("train", "val", "test"), parts(split)) for stem in part}
    assert set(owner) == set(stems)
    for p in range(12):
        assert len({owner[s] for s in stems if s.startswith(f"patient{p}_")}) == 1
    whole_match = make_split(stems, SplitConfig(group_pattern=r"^patient\d+", seed=5))  # no capture group
    assert parts(whole_match) == parts(split)


def test_liver_volumes_never_straddle_splits() -> None:
    folder = shared_path("ct_liver_msd", "images")
    stems = [p.stem for p in folder.iterdir()]
    split = make_split(stems, SplitConfig(group_pattern=LIVER_GROUPS))
    volumes = [{re.match(LIVER_GROUPS, s).group(1) for s in part} for part in parts(split)]
    assert not (volumes[0] & volumes[1] or volumes[0] & volumes[2] or volumes[1] & volumes[2])
    assert len(volumes[0] | volumes[1] | volumes[2]) == 122
    sizes = [len(p) for p in parts(split)]
    assert sum(sizes) == len(stems)
    assert [round(n / len(stems), 2) for n in sizes] == pytest.approx([0.70, 0.16, 0.14], abs=0.03)


def test_k_folds_cover_every_item_once_and_share_one_test_set() -> None:
    stems = [f"g{g}_{i}" for g in range(20) for i in range(g % 3 + 1)]
    configs = [SplitConfig(k_folds=4, fold=f, group_pattern=r"^(g\d+)_", seed=2) for f in range(4)]
    splits = [make_split(stems, c) for c in configs]
    test = splits[0].test
    assert test and all(s.test == test for s in splits)
    rest = set(stems) - set(test)
    seen: dict[str, int] = {}
    for split in splits:
        assert set(split.train) | set(split.val) == rest and not set(split.train) & set(split.val)
        for stem in split.val:
            seen[stem] = seen.get(stem, 0) + 1
    assert seen == dict.fromkeys(rest, 1)
    assert len({s.hash for s in splits}) == 4


def test_k_folds_need_enough_groups() -> None:
    with pytest.raises(SplitError, match="5 folds need at least 5"):
        make_split(["a", "b", "c", "d"], SplitConfig(k_folds=5))


def test_frozen_split_is_stored_and_loaded(tmp_path: Path) -> None:
    dataset = tmp_path / "datasets" / "lungs"  # not there yet: frozen_split makes the folders it needs
    split = frozen_split(dataset, STEMS, SplitConfig(seed=1))
    path = dataset / "splits" / f"{split.hash}.json"
    assert path.is_file()
    assert load_split(dataset, split.hash) == split
    assert frozen_split(dataset, list(reversed(STEMS)), SplitConfig(seed=1)) == split
    assert [p.name for p in (dataset / "splits").iterdir()] == [path.name]  # no temp files left


def test_load_split_rejects_unknown_escaping_and_tampered(tmp_path: Path) -> None:
    split = frozen_split(tmp_path, STEMS, SplitConfig())
    with pytest.raises(SplitError, match=f"no split '0123456789abcdef'.*stored: \\['{split.hash}'\\]"):
        load_split(tmp_path, "0123456789abcdef")
    with pytest.raises(SplitError, match="no split"):
        load_split(tmp_path, "../../etc/passwd")
    path = tmp_path / "splits" / f"{split.hash}.json"
    data = json.loads(path.read_text())
    data["val"], data["test"] = data["test"], data["val"]
    path.write_text(json.dumps(data))
    with pytest.raises(SplitError, match="was modified"):
        load_split(tmp_path, split.hash)


# --- rules at their edges (each test below fails under a mutant that the ones above let through) ---


def test_hashes_of_splits_stored_by_earlier_versions_are_unchanged() -> None:
    """Studies store their split's hash; a split made with a version before ``from_file`` existed
    (these values) must still get the same hash, or stored splits read as 'modified'."""
    assert make_split(STEMS, SplitConfig()).hash == "d997e0570e9fd788"
    folds = SplitConfig(k_folds=5, fold=2, test=0.2, seed=3, group_pattern=r"^img(\d\d)")
    assert make_split(STEMS, folds).hash == "56b21af2c23c6309"
    assert "from_file" not in SplitConfig().to_dict() and SplitConfig(from_file=True).to_dict()["from_file"] is True


@pytest.mark.parametrize(
    ("config", "problems"),
    [
        (SplitConfig(train=float("nan")), {"fractions": "finite numbers"}),
        (SplitConfig(train="0.7"), {"fractions": "finite numbers"}),  # type: ignore[arg-type]  # JSON can hold anything
        (SplitConfig(train=0.5, val=0.2, test=0.2), {"fractions": "sum to 1"}),
        (SplitConfig(k_folds=1), {"k_folds": "at least 2"}),
        (SplitConfig(k_folds=2, fold=1), {}),
        (SplitConfig(k_folds=3, test=0.0), {}),  # k folds and no test set
        (SplitConfig(k_folds=3, test=1.0), {"test": "[0, 1)"}),
        (SplitConfig(from_file="yes"), {"from_file": "true or false"}),  # type: ignore[arg-type]
        (
            SplitConfig(group_pattern="(unclosed", k_folds=2, fold=2),
            {"group_pattern": "regular expression", "k_folds": "0 <= fold"},
        ),
    ],
)
def test_config_problems_are_named_by_field(config: SplitConfig, problems: dict[str, str]) -> None:
    """The spec form shows each problem beside its field (split.<key>): the keys are the contract."""
    found = config_problems(config)
    assert sorted(found) == sorted(problems)
    assert all(words in found[key] for key, words in problems.items())
    if len(problems) > 1:
        with pytest.raises(SplitError) as info:
            make_split(STEMS, config)
        assert str(info.value) == "; ".join(found.values())


def test_manifest_groups_keep_each_volume_in_one_part_everywhere(tmp_path: Path) -> None:
    """Groups from the manifest (slice -> volume), for stems no pattern would group."""
    stems = [f"slice{i:03d}" for i in range(40)]
    groups = {stem: f"volume{i % 8}" for i, stem in enumerate(stems)}
    split = make_split(stems, SplitConfig(seed=1), groups)
    owner = {stem: name for name, part in zip(("train", "val", "test"), parts(split)) for stem in part}
    for volume in range(8):
        assert len({owner[s] for s in stems if groups[s] == f"volume{volume}"}) == 1
    assert split_sizes(stems, SplitConfig(seed=1), groups) == {
        "train": len(split.train),
        "val": len(split.val),
        "test": len(split.test),
    }
    assert frozen_split(tmp_path, stems, SplitConfig(seed=1), groups) == split


def test_a_group_joins_a_part_when_its_middle_falls_within_the_share() -> None:
    # ten volumes of 4 slices, test share 5.5 slices: the second volume's middle (slice 6) is outside
    stems = [f"v{v}_s{s}" for v in range(10) for s in range(4)]
    split = make_split(stems, SplitConfig(train=0.6625, val=0.2, test=0.1375), {s: s[:2] for s in stems})
    assert len(split.test) == 4
    # ten volumes of 2 slices, test share 3 slices: the second volume's middle is exactly on it, and counts
    stems = [f"v{v}_s{s}" for v in range(10) for s in range(2)]
    split = make_split(stems, SplitConfig(train=0.65, val=0.2, test=0.15), {s: s[:2] for s in stems})
    assert len(split.test) == 4


@pytest.mark.parametrize(
    ("count", "config", "sizes"),
    [
        (10, SplitConfig(train=0.89, val=0.01, test=0.1), (8, 1, 1)),  # a tiny val share still gets one
        (10, SplitConfig(train=0.01, val=0.89, test=0.1), (1, 8, 1)),  # and train keeps one
        (10, SplitConfig(train=0.94, val=0.05, test=0.01), (8, 1, 1)),  # a tiny test share gets exactly one
        (5, SplitConfig(train=0.05, val=0.05, test=0.9), (1, 1, 3)),  # test never takes train's or val's last
    ],
)
def test_tiny_and_huge_shares_leave_every_part_something(
    count: int, config: SplitConfig, sizes: tuple[int, int, int]
) -> None:
    split = make_split([f"i{i}" for i in range(count)], config)
    assert (len(split.train), len(split.val), len(split.test)) == sizes


def test_k_folds_work_with_exactly_k_items_and_balance_their_sizes() -> None:
    split = make_split(["a", "b", "c", "d"], SplitConfig(k_folds=3, fold=2, test=0.25))  # 3 left for 3 folds
    assert (len(split.train), len(split.val), len(split.test)) == (2, 1, 1)
    stems = [f"i{i:02d}" for i in range(20)]  # 16 outside the test split: 4 in each of 4 folds
    assert [len(make_split(stems, SplitConfig(k_folds=4, fold=f, test=0.2)).val) for f in range(4)] == [4, 4, 4, 4]


def test_duplicate_stems_are_listed_ten_at_most() -> None:
    stems = [f"d{i:02d}" for i in range(12)]
    with pytest.raises(SplitError) as info:
        make_split(stems + stems, SplitConfig())
    assert str(info.value) == f"duplicate stems {stems[:10]}"


def test_several_splits_of_one_dataset_are_kept_side_by_side(tmp_path: Path) -> None:
    first, second = (frozen_split(tmp_path, STEMS, SplitConfig(seed=seed)) for seed in (1, 2))
    assert sorted(p.stem for p in (tmp_path / "splits").iterdir()) == sorted([first.hash, second.hash])
    assert load_split(tmp_path, first.hash) == first and load_split(tmp_path, second.hash) == second
    with pytest.raises(SplitError, match="stored: none"):
        load_split(tmp_path / "empty", first.hash)


# --- the dataset's own split file -------------------------------------------------------------------

OWN = {
    "x1": Assignment("train", "patientP"),
    "y1": Assignment("train", "patientP"),  # one patient, two names
    "c1": Assignment("train"),
    "c2": Assignment("val"),  # no group column: the pattern groups them
    "b1": Assignment("train", "patientB"),
    "e1": Assignment("val"),
    "e2": Assignment("train"),
    "t1": Assignment("test"),
    "t2": Assignment("test", "patientT"),
}


def test_a_split_file_is_used_as_it_is() -> None:
    config = SplitConfig(from_file=True)
    split = split_from_assignments(OWN, config)
    assert parts(split) == (("b1", "c1", "e2", "x1", "y1"), ("c2", "e1"), ("t1", "t2"))
    assert split.config == config


def test_a_split_file_cut_into_folds_keeps_its_test_part_and_its_groups() -> None:
    configs = [SplitConfig(from_file=True, k_folds=2, fold=f, group_pattern=r"^(c)\d") for f in range(2)]
    splits = [split_from_assignments(OWN, config) for config in configs]
    rest = {"x1", "y1", "c1", "c2", "b1", "e1", "e2"}
    assert sorted(splits[0].val + splits[1].val) == sorted(rest)  # each non-test pair validates once
    for split in splits:
        assert split.test == ("t1", "t2") and set(split.train) | set(split.val) == rest
        assert {"x1", "y1"} <= set(split.train) or {"x1", "y1"} <= set(split.val)  # the group column
        assert {"c1", "c2"} <= set(split.train) or {"c1", "c2"} <= set(split.val)  # the pattern
        assert abs(len(split.train) - len(split.val)) <= 2  # balanced up to the largest group
    assert [split_from_assignments(OWN, c) for c in configs] == splits  # seeded
    together = {"x1y1": set(), "e1e2": set()}  # over seeds: are the two in one part?
    for seed in range(8):
        split = split_from_assignments(OWN, SplitConfig(from_file=True, k_folds=2, seed=seed))
        for pair in together:
            together[pair].add(
                len({part for part in (split.train, split.val) if pair[:2] in part or pair[2:] in part}) == 1
            )
    assert together == {"x1y1": {True}, "e1e2": {True, False}}  # a group stays whole; ungrouped pairs go their own ways


def test_file_split_reads_the_kept_file_or_says_what_is_wrong(tmp_path: Path) -> None:
    config = SplitConfig(from_file=True)
    with pytest.raises(
        SplitError,
        match=re.escape(
            "this dataset has no split.csv: add one (columns split,name[,group]) to the folder or "
            "zip and ingest it again, or turn 'use the dataset's split file' off"
        ),
    ):
        frozen_split(tmp_path, sorted(OWN), config)
    write_split_file(tmp_path / SPLIT_FILE, OWN)
    split = frozen_split(tmp_path, sorted(OWN), config)
    assert split == split_from_assignments(OWN, config) and load_split(tmp_path, split.hash) == split
    with pytest.raises(SplitError, match="no longer lists exactly its pairs"):
        file_split(tmp_path, [*OWN, "new"], config)


def test_a_split_file_cut_into_folds_is_stratified_by_the_labels(tmp_path: Path) -> None:
    """With labels, the folds of the file's train + val pairs keep the class proportions (eight single
    pairs, four of each class, two folds: exactly two of each per fold, whatever the seed), through
    frozen_split too; a pair without a label is named."""
    own = {f"p{i}": Assignment("train" if i < 6 else "val") for i in range(8)} | {"t1": Assignment("test")}
    labels = {f"p{i}": int(i in (0, 2, 4, 5)) for i in range(8)} | {"t1": 0}
    write_split_file(tmp_path / SPLIT_FILE, own)
    for seed in range(4):
        for fold in range(2):
            split = frozen_split(
                tmp_path, sorted(own), SplitConfig(from_file=True, k_folds=2, fold=fold, seed=seed), labels=labels
            )
            assert split.test == ("t1",) and Counter(labels[stem] for stem in split.val) == {0: 2, 1: 2}
    with pytest.raises(
        SplitError,
        match=re.escape("8 item(s) have no class label, e.g. ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7']"),
    ):
        split_from_assignments(own, SplitConfig(from_file=True, k_folds=2), {"t1": 0})
