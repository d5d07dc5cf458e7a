"""Ingest edge cases a careless user or an attacker sends: alpha-channel masks, stacks, empty or
folder-only zips, many-entry zip bombs, and the leftovers of killed ingests and deletes."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.archives import IngestLimits
from core.data.images import read_mask
from core.data.ingest import ingest_dataset
from core.data.manifest import DatasetError, delete_dataset, remove_stale_work


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def square(size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[: size // 2, : size // 2] = 255
    return mask


def with_images(root: Path, stems: tuple[str, ...] = ("a",)) -> Path:
    for i, stem in enumerate(stems):
        save(root / "images" / f"{stem}.png", np.random.default_rng(i).integers(0, 256, (16, 16), dtype=np.uint8))
    return root


def refused(source: Path, store: Path, **kwargs: object) -> dict[str, str]:
    with pytest.raises(DatasetError) as info:
        ingest_dataset(source, "ds", store, **kwargs)
    assert not store.exists() or list(store.iterdir()) == [], "a refused ingest left something behind"
    return info.value.problems


def test_a_mask_drawn_in_the_alpha_channel_is_read_from_it(tmp_path: Path) -> None:
    root = with_images(tmp_path / "src", ("rgba", "la", "opaque"))
    black = np.zeros((16, 16, 3), np.uint8)
    save(root / "masks" / "rgba.png", np.dstack([black, square()]))  # RGBA: colour constant, alpha = the mask
    save(root / "masks" / "la.png", np.dstack([np.full((16, 16), 255, np.uint8), square()]))  # LA, white ink
    save(
        root / "masks" / "opaque.png",
        np.dstack([np.repeat(square()[..., None], 3, 2), np.full((16, 16), 255, np.uint8)]),
    )
    manifest = ingest_dataset(root, "alpha", tmp_path / "store")
    for stem in ("rgba", "la", "opaque"):
        assert manifest.pair(stem).foreground == pytest.approx((0.25,)), stem
        assert read_mask(tmp_path / "store" / "alpha" / manifest.pair(stem).mask).sum() == 64


def test_an_alpha_mask_whose_grey_values_disagree_is_refused_not_guessed(tmp_path: Path) -> None:
    root = with_images(tmp_path / "src")
    grey = np.zeros((16, 16), np.uint8)
    grey[8:, 8:] = 255  # another square than the alpha one
    save(root / "masks" / "a.png", np.dstack([grey, grey, grey, square()]))
    problems = refused(root, tmp_path / "store")
    assert "transparency" in problems["masks/a.png"] and "single-channel" in problems["masks/a.png"]


def test_a_multi_frame_tiff_is_refused_with_a_message(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    frames = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (10, 20, 30)]
    frames[0].save(root / "images" / "a.tif", save_all=True, append_images=frames[1:])
    save(root / "masks" / "a.png", square())
    problems = refused(root, tmp_path / "store")
    assert "3 frames" in problems["images/a.tif"]


@pytest.mark.parametrize("entries", [[], ["images/", "masks/"]])
def test_an_empty_or_folder_only_zip_is_a_clear_error(tmp_path: Path, entries: list[str]) -> None:
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in entries:
            zf.writestr(name, "")
    problems = refused(archive, tmp_path / "store")
    assert problems["empty.zip"] == (
        "the zip holds no files"
        + (" (only folders)" if entries else "")
        + "; zip the images/ and masks/ folders with their files"
    )


def test_many_small_entries_that_add_up_to_a_bomb_are_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(80):  # each 900 KiB: under the per-entry ratio threshold of 1 MiB
            zf.writestr(f"images/{i}.png", bytes(900 << 10))
    written: list[Path] = []
    original = Path.mkdir
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: (written.append(self), original(self, *a, **k))[1])
    problems = refused(archive, tmp_path / "store")
    assert "expand" in problems["zip"] and "in all" in problems["zip"]
    assert not any("_source" in path.parts for path in written), "extraction started before the check"


def test_the_declared_total_is_checked_before_anything_is_written(tmp_path: Path) -> None:
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"images/{i}.png", os.urandom(4000))
    problems = refused(archive, tmp_path / "store", limits=IngestLimits(max_total_bytes=10_000))
    assert "12000 bytes" in problems["zip"]


def test_stale_ingest_and_delete_folders_are_cleaned_on_the_next_ingest(tmp_path: Path) -> None:
    store = tmp_path / "store"
    stale, fresh, doomed = store / ".ingest-killed", store / ".ingest-running", store / ".delete-killed"
    for folder in (stale / "_source" / "images", fresh / "images", doomed / "images"):
        folder.mkdir(parents=True)
    old = time.time() - 2 * 3600
    for folder in (stale, stale / "_source", stale / "_source" / "images"):
        os.utime(folder, (old, old))
    root = with_images(tmp_path / "src")
    save(root / "masks" / "a.png", square())
    ingest_dataset(root, "next", store)
    assert sorted(p.name for p in store.iterdir()) == [".ingest-running", "next"]  # a live ingest is left alone
    assert remove_stale_work(store, older_than_s=0) == [".ingest-running"]
    delete_dataset(store, "next")
    assert list(store.iterdir()) == []
