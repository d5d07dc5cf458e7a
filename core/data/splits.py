"""Frozen, seeded train/val/test (or k-fold) splits of a dataset's pairs.

A split is a pure function of the pair stems and a :class:`SplitConfig` (plus the groups and, for
classification, the labels the dataset records); its hash is stored with every study so a result
can always be traced back to exactly the images it was selected on.

Groups (patients, volumes) are never cut. With labels (stem -> class index) the split is also
stratified: groups are dealt out so that every part, and every cross-validation fold, holds each
class in about the dataset's proportion. Without labels the split is exactly what it always was.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.data.split_file import SPLIT_FILE, Assignment, read_kept_split
from core.errors import SegTuneError

SPLITS_DIR = "splits"
_HASH = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class SplitConfig:
    """How to divide a dataset. Defaults follow the liver DeepLabV3+ study (70% train / 16% val / 14% test)."""

    train: float = 0.70
    val: float = 0.16
    test: float = 0.14
    k_folds: int | None = None  # when set: test held out first, the rest cut into k folds
    fold: int = 0  # which fold is the validation split (0 <= fold < k_folds)
    seed: int = 0
    group_pattern: str | None = None  # regex on the file stem; first group (or match) = group id
    from_file: bool = False  # use the dataset's own split.csv (kept at ingest) instead of fractions

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.from_file:
            del data["from_file"]  # left out when unset: hashes of splits made before it existed stay valid
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitConfig:
        return cls(**data)


class SplitError(SegTuneError):
    """A split cannot be made or found; the message says why and what to change."""


@dataclass(frozen=True)
class Split:
    """Which stems train, validate and test; ``hash`` identifies membership + config."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    config: SplitConfig
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "config": self.config.to_dict(),
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Split:
        return cls(
            train=tuple(data["train"]),
            val=tuple(data["val"]),
            test=tuple(data["test"]),
            config=SplitConfig.from_dict(data["config"]),
            hash=data["hash"],
        )


def make_split(
    stems: Sequence[str],
    config: SplitConfig,
    groups: Mapping[str, str] | None = None,
    labels: Mapping[str, int] | None = None,
) -> Split:
    """Deterministic for ``config.seed`` and independent of the order of ``stems``.

    ``groups`` (stem -> group id, e.g. the volume / patient of each slice, from the manifest) keeps
    every group in one part; it wins over ``config.group_pattern`` for the stems it names.
    ``labels`` (stem -> class index, a classification dataset's ``manifest.labels``) stratifies
    the parts and folds by class; empty or None: no stratification.
    """
    _check_config(config)
    shuffled = _shuffled_groups(stems, config, groups or {})
    if len(shuffled) < 3:
        raise SplitError(
            f"a split needs at least 3 items (or groups of items) to give train, val and test; got {len(shuffled)}"
        )
    if labels:
        _check_labels(stems, labels)
        return _stratified(shuffled, config, labels)
    test, rest = _hold_out_test(shuffled, config)
    if config.k_folds is None:
        val, train = _cut_val(rest, config)
    else:
        val, train = _fold(rest, config)
    return _finish(train, val, test, config)


def split_sizes(
    stems: Sequence[str],
    config: SplitConfig,
    groups: Mapping[str, str] | None = None,
    labels: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Items per part, for the dashboard's preview."""
    split = make_split(stems, config, groups, labels)
    return {"train": len(split.train), "val": len(split.val), "test": len(split.test)}


def class_counts(split: Split, labels: Mapping[str, int]) -> dict[str, Counter[int]]:
    """Part name -> items per class index, to show (and test) that a split kept the proportions."""
    return {
        name: Counter(labels[stem] for stem in part)
        for name, part in zip(("train", "val", "test"), (split.train, split.val, split.test))
    }


def split_from_assignments(
    assignments: dict[str, Assignment], config: SplitConfig, labels: Mapping[str, int] | None = None
) -> Split:
    """The user's split (``split.csv``): its parts as they are, or with ``k_folds`` its test part
    and folds cut from its train + val pairs (grouped by the file's group column, else the pattern;
    stratified by ``labels`` when given)."""
    _check_config(config)
    test = [tuple(sorted(s for s, a in assignments.items() if a.part == "test"))]
    if config.k_folds is None:
        train = [tuple(sorted(s for s, a in assignments.items() if a.part == "train"))]
        val = [tuple(sorted(s for s, a in assignments.items() if a.part == "val"))]
        return _finish(train, val, test, config)
    members: dict[str, list[str]] = {}
    for stem in sorted(s for s, a in assignments.items() if a.part != "test"):
        group = assignments[stem].group
        members.setdefault(f"group:{group}" if group else _group_key(stem, config.group_pattern), []).append(stem)
    groups = [tuple(members[key]) for key in sorted(members)]
    random.Random(config.seed).shuffle(groups)
    if labels:
        _check_labels(list(assignments), labels)
        val, train = _stratified_folds(groups, config, labels)
    else:
        val, train = _fold(groups, config)
    return _finish(train, val, test, config)


def file_split(
    dataset_dir: Path, stems: Sequence[str], config: SplitConfig, labels: Mapping[str, int] | None = None
) -> Split:
    """The split of the dataset's kept ``split.csv``; a clear error when it has none or is stale."""
    assignments = read_kept_split(Path(dataset_dir))
    if assignments is None:
        raise SplitError(
            f"this dataset has no {SPLIT_FILE}: add one (columns split,name[,group]) to the folder or zip and "
            "ingest it again, or turn 'use the dataset's split file' off"
        )
    if set(assignments) != set(stems):
        raise SplitError(f"the dataset's {SPLIT_FILE} no longer lists exactly its pairs; ingest the dataset again")
    return split_from_assignments(assignments, config, labels)


def frozen_split(
    dataset_dir: Path,
    stems: Sequence[str],
    config: SplitConfig,
    groups: Mapping[str, str] | None = None,
    labels: Mapping[str, int] | None = None,
) -> Split:
    """Make the split and keep it at ``<dataset_dir>/splits/<hash>.json`` (written once, never changed)."""
    split = (
        file_split(dataset_dir, stems, config, labels)
        if config.from_file
        else make_split(stems, config, groups, labels)
    )
    path = Path(dataset_dir) / SPLITS_DIR / f"{split.hash}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        partial.write_text(json.dumps(split.to_dict(), indent=1), encoding="utf-8")
        os.replace(partial, path)  # atomic: concurrent workers write identical content
    return split


def load_split(dataset_dir: Path, split_hash: str) -> Split:
    """A split stored by :func:`frozen_split`; the file is checked against its hash."""
    folder = Path(dataset_dir) / SPLITS_DIR
    path = folder / f"{split_hash}.json"
    if not _HASH.match(split_hash) or not path.is_file():
        stored = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        raise SplitError(f"no split {split_hash!r} in {dataset_dir}; stored: {stored or 'none'}")
    split = Split.from_dict(json.loads(path.read_text(encoding="utf-8")))
    if _hash(split.train, split.val, split.test, split.config) != split_hash:
        raise SplitError(f"{path} was modified: its content no longer matches hash {split_hash}")
    return split


# --- the steps --------------------------------------------------------------------------------------

Group = tuple[str, ...]  # the stems of one patient / volume, sorted


def config_problems(config: SplitConfig) -> dict[str, str]:
    """Every rule ``config`` breaks, by field ("fractions" for train/val/test as a whole)."""
    problems: dict[str, str] = {}
    fractions = (config.train, config.val, config.test)
    if not all(isinstance(f, (int, float)) and math.isfinite(f) for f in fractions):
        problems["fractions"] = f"split fractions must be finite numbers; got {fractions}"
    elif config.k_folds is None and (
        any(f < 0 for f in fractions) or config.val <= 0 or abs(sum(fractions) - 1.0) > 1e-6
    ):
        problems["fractions"] = (
            f"split fractions train/val/test must be non-negative, val > 0, and sum to 1; got {fractions}"
        )
    if config.k_folds is not None and (config.k_folds < 2 or not 0 <= config.fold < config.k_folds):
        problems["k_folds"] = (
            f"k_folds must be at least 2 and 0 <= fold < k_folds; got k_folds={config.k_folds}, fold={config.fold}"
        )
    if config.k_folds is not None and not 0 <= config.test < 1:  # k folds use only the test fraction
        problems["test"] = f"the test fraction must be in [0, 1); got {config.test}"
    if not isinstance(config.from_file, bool):
        problems["from_file"] = f"from_file must be true or false; got {config.from_file!r}"
    if config.group_pattern:
        try:
            re.compile(config.group_pattern)
        except re.error as exc:
            problems["group_pattern"] = (
                f"group_pattern {config.group_pattern!r} is not a valid regular expression: {exc}"
            )
    return problems


def _check_config(config: SplitConfig) -> None:
    problems = config_problems(config)
    if problems:
        raise SplitError("; ".join(problems.values()))


def _shuffled_groups(stems: Sequence[str], config: SplitConfig, known: Mapping[str, str]) -> list[Group]:
    duplicates = sorted(stem for stem, count in Counter(stems).items() if count > 1)
    if duplicates:
        raise SplitError(f"duplicate stems {duplicates[:10]}")
    members: dict[str, list[str]] = {}
    for stem in sorted(stems):
        key = f"group:{known[stem]}" if stem in known else _group_key(stem, config.group_pattern)
        members.setdefault(key, []).append(stem)
    groups = [tuple(members[key]) for key in sorted(members)]
    random.Random(config.seed).shuffle(groups)  # sorted first, so input order never matters
    return groups


def _group_key(stem: str, pattern: str | None) -> str:
    match = re.search(pattern, stem) if pattern else None
    if match is None:
        return f"stem:{stem}"  # prefixed so a lone stem cannot collide with a group id
    group_id = match.group(1) if match.re.groups and match.group(1) is not None else match.group(0)
    return f"group:{group_id}"


def _items(groups: Sequence[Group]) -> int:
    return sum(len(group) for group in groups)


def _count_within(groups: Sequence[Group], target: float) -> int:
    """How many leading groups fill ``target`` items: a group counts when its middle falls inside."""
    filled, count = 0, 0
    for group in groups:
        if filled + len(group) / 2 > target:
            break
        filled += len(group)
        count += 1
    return count


def _hold_out_test(groups: list[Group], config: SplitConfig) -> tuple[list[Group], list[Group]]:
    """Test comes first and ignores the fold, so every fold of a k-fold study shares one test set."""
    count = _count_within(groups, config.test * _items(groups))
    if config.test > 0:
        count = max(count, 1)
    count = min(count, len(groups) - 2)  # leave at least one group each for train and val
    return groups[:count], groups[count:]


def _cut_val(rest: list[Group], config: SplitConfig) -> tuple[list[Group], list[Group]]:
    val_share = config.val / (config.train + config.val)
    count = min(max(_count_within(rest, val_share * _items(rest)), 1), len(rest) - 1)
    return rest[:count], rest[count:]


def _fold(rest: list[Group], config: SplitConfig) -> tuple[list[Group], list[Group]]:
    k = config.k_folds or 0
    if len(rest) < k:
        raise SplitError(f"{k} folds need at least {k} items (or groups) outside the test split; got {len(rest)}")
    folds: list[list[Group]] = [[] for _ in range(k)]
    for group in rest:  # greedy: the next group joins the fold with the fewest items, so folds balance
        min(folds, key=_items).append(group)
    val = folds[config.fold]
    return val, [group for i, fold in enumerate(folds) if i != config.fold for group in fold]


# --- stratified by class ------------------------------------------------------------------------------


def _check_labels(stems: Sequence[str], labels: Mapping[str, int]) -> None:
    unlabelled = sorted(set(stems) - set(labels))
    if unlabelled:
        raise SplitError(
            f"{len(unlabelled)} item(s) have no class label, e.g. {unlabelled[:10]}; a stratified split needs every "
            "item's class"
        )


def _stratified(groups: list[Group], config: SplitConfig, labels: Mapping[str, int]) -> Split:
    """Test first (shared by every fold), then val + train or the k folds, each dealt by class."""
    test, rest = _deal(groups, (config.test, 1.0 - config.test), (1 if config.test > 0 else 0, 2), labels)
    if config.k_folds is not None:
        val, train = _stratified_folds(rest, config, labels)
    else:
        val_share = config.val / (config.train + config.val)
        val, train = _deal(rest, (val_share, 1.0 - val_share), (1, 1), labels)
    return _finish(train, val, test, config)


def _stratified_folds(
    rest: list[Group], config: SplitConfig, labels: Mapping[str, int]
) -> tuple[list[Group], list[Group]]:
    k = config.k_folds or 0
    if len(rest) < k:
        raise SplitError(f"{k} folds need at least {k} items (or groups) outside the test split; got {len(rest)}")
    folds = _deal(rest, (1.0 / k,) * k, (1,) * k, labels)
    return folds[config.fold], [group for i, fold in enumerate(folds) if i != config.fold for group in fold]


def _deal(
    groups: list[Group], shares: Sequence[float], minimum: Sequence[int], labels: Mapping[str, int]
) -> list[list[Group]]:
    """Deal whole groups into parts so each part's class counts come closest to ``share`` x the class totals.

    Greedy: biggest groups first (the seeded shuffle orders equal sizes), each to the part whose
    squared distance from its class targets grows least; a part with share 0 gets nothing. Then
    every part is topped up to ``minimum`` groups from the part with the most.
    """
    counts = {group: Counter(labels[stem] for stem in group) for group in groups}
    totals: Counter[int] = sum(counts.values(), Counter())
    targets = [{c: share * n for c, n in totals.items()} for share in shares]
    assigned: list[Counter[int]] = [Counter() for _ in shares]
    parts: list[list[Group]] = [[] for _ in shares]
    for group in sorted(groups, key=len, reverse=True):  # sorted() is stable: the shuffle still decides among equals

        def growth(p: int, group: Group = group) -> float:
            return sum(n * (n + 2 * (assigned[p][c] - targets[p][c])) for c, n in counts[group].items())

        best = min((p for p, share in enumerate(shares) if share > 0), key=growth)
        parts[best].append(group)
        assigned[best].update(counts[group])
    _top_up(parts, minimum)
    return parts


def _top_up(parts: list[list[Group]], minimum: Sequence[int]) -> None:
    """Move the smallest group of the fullest part into each part below its minimum (len(groups) >= sum(minimum))."""
    for p, needed in enumerate(minimum):
        while len(parts[p]) < needed:
            donor = max(
                (q for q in range(len(parts)) if q != p and len(parts[q]) > minimum[q]), key=lambda q: len(parts[q])
            )
            smallest = min(parts[donor], key=len)
            parts[donor].remove(smallest)
            parts[p].append(smallest)


def _finish(train: list[Group], val: list[Group], test: list[Group], config: SplitConfig) -> Split:
    parts = [tuple(sorted(stem for group in part for stem in group)) for part in (train, val, test)]
    return Split(*parts, config=config, hash=_hash(*parts, config))


def _hash(train: Sequence[str], val: Sequence[str], test: Sequence[str], config: SplitConfig) -> str:
    content = {"train": sorted(train), "val": sorted(val), "test": sorted(test), "config": config.to_dict()}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
