"""Frozen seeded splits (core.splits): deterministic, disjoint, complete, group-aware."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from core.data.splits import Split, SplitConfig, SplitError, frozen_split, load_split, make_split, split_sizes
from core.errors import SegTuneError
from tests.conftest import shared_path

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
    split = frozen_split(tmp_path, STEMS, SplitConfig(seed=1))
    path = tmp_path / "splits" / f"{split.hash}.json"
    assert path.is_file()
    assert load_split(tmp_path, split.hash) == split
    assert frozen_split(tmp_path, list(reversed(STEMS)), SplitConfig(seed=1)) == split
    assert [p.name for p in (tmp_path / "splits").iterdir()] == [path.name]  # no temp files left


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
