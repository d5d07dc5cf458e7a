"""Ingest, validation and manifests (core.data.ingest, core.data.manifest): every bad input is named and
leaves nothing behind."""

from __future__ import annotations

import io
import json
import shutil
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.archives import IngestLimits, _extract, _zip_problems, unpack
from core.data.images import read_image, read_mask
from core.data.ingest import ingest_dataset
from core.data.manifest import (
    DatasetError,
    DatasetManifest,
    DatasetNotFound,
    dataset_names,
    dataset_path,
    dataset_stats,
    delete_dataset,
    list_datasets,
    load_manifest,
)
from core.errors import SegTuneError
from tests.helpers.machine import shared_path

# --- builders -------------------------------------------------------------------------------------


def grey(size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def square_mask(size: int = 16, value: int = 255) -> np.ndarray:
    """A quarter of the pixels set: the top-left square."""
    mask = np.zeros((size, size), np.uint8)
    mask[: size // 2, : size // 2] = value
    return mask


def save(path: Path, pixels: np.ndarray, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def folder_dataset(root: Path, count: int = 3, size: int = 16) -> Path:
    for i in range(count):
        save(root / "images" / f"img{i}.png", grey(size, i))
        save(root / "masks" / f"img{i}.png", square_mask(size))
    return root


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "datasets"


def rejected(source: Path, store: Path, name: str = "ds", existing: tuple[str, ...] = (), **kwargs: object) -> str:
    """Ingest expecting failure; check the store holds only the ``existing`` datasets; return the message."""
    with pytest.raises(DatasetError) as info:
        ingest_dataset(source, name, store, **kwargs)
    leftovers = sorted(p.name for p in store.iterdir()) if store.exists() else []
    assert leftovers == sorted(existing), f"left behind: {leftovers}"
    assert isinstance(info.value, SegTuneError) and isinstance(info.value, ValueError)
    assert info.value.problems and all(
        f"{field}: {problem}" in str(info.value) for field, problem in info.value.problems.items()
    )
    return str(info.value)


# --- happy paths ----------------------------------------------------------------------------------


def test_folder_layout_stores_files_masks_and_manifest(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    calls: list[tuple[int, int]] = []
    manifest = ingest_dataset(source, "cells", store, progress=lambda done, total: calls.append((done, total)))

    folder = store / "cells"
    assert sorted(p.name for p in store.iterdir()) == ["cells"]  # no temp folders left over
    assert manifest.stems == ("img0", "img1", "img2")
    assert manifest.classes == ("background", "foreground") and manifest.is_binary and manifest.num_classes == 2
    assert (manifest.channels, manifest.bit_depth, manifest.version) == (1, 8, 1)
    assert manifest.sizes == {"16x16": 3}
    assert manifest.source == str(source)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    pair = manifest.pairs[0]
    assert (pair.image, pair.mask, pair.height, pair.width) == ("images/img0.png", "masks/img0.png", 16, 16)
    assert pair.foreground == pytest.approx((0.25,))
    assert (folder / pair.image).read_bytes() == (source / "images" / "img0.png").read_bytes()
    stored_mask = read_mask(folder / pair.mask)
    assert stored_mask.dtype == np.uint8 and set(np.unique(stored_mask)) == {0, 1}  # 0/255 -> 0/1
    assert load_manifest(store, "cells") == manifest
    assert DatasetManifest.from_dict(json.loads((folder / "dataset.json").read_text())) == manifest
    assert len(manifest.checksum) == 64


def test_checksum_follows_content(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    first = ingest_dataset(source, "a", store)
    assert ingest_dataset(source, "b", store).checksum == first.checksum
    save(source / "masks" / "img0.png", square_mask(value=0))
    assert ingest_dataset(source, "c", store).checksum != first.checksum


@pytest.mark.parametrize("suffix", ["_mask", "-mask", "_seg", "_label"])
def test_suffix_layout_is_detected(tmp_path: Path, store: Path, suffix: str) -> None:
    for stem in ("a", "b"):
        save(tmp_path / "src" / f"{stem}.png", grey())
        save(tmp_path / "src" / f"{stem}{suffix}.png", square_mask())
    (tmp_path / "src" / "README.md").write_text("side files are skipped")
    manifest = ingest_dataset(tmp_path / "src", "ds", store)
    assert manifest.stems == ("a", "b")
    assert manifest.pairs[0].mask == "masks/a.png"


def test_explicit_mask_suffix(tmp_path: Path, store: Path) -> None:
    save(tmp_path / "src" / "a.png", grey())
    save(tmp_path / "src" / "a_gt.png", square_mask())
    assert ingest_dataset(tmp_path / "src", "ds", store, mask_suffix="_gt").stems == ("a",)


def test_zip_with_single_top_folder(tmp_path: Path, store: Path) -> None:
    archive = zip_folder(folder_dataset(tmp_path / "src"), tmp_path / "data.zip", prefix="my-data/")
    with zipfile.ZipFile(archive, "a") as zf:  # what macOS adds to every zip
        zf.writestr("__MACOSX/my-data/._img0.png", b"junk")
    manifest = ingest_dataset(archive, "zipped", store)
    assert manifest.stems == ("img0", "img1", "img2")
    assert sorted(p.name for p in (store / "zipped").iterdir()) == ["dataset.json", "images", "masks"]


def test_16_bit_tiff_is_scaled_by_min_max(tmp_path: Path, store: Path) -> None:
    scan = np.linspace(1000, 3000, 16 * 16).reshape(16, 16).astype(np.uint16)
    save(tmp_path / "src" / "images" / "scan.tif", scan)
    save(tmp_path / "src" / "masks" / "scan.tif", square_mask(value=1))
    manifest = ingest_dataset(tmp_path / "src", "ct", store)
    assert (manifest.channels, manifest.bit_depth) == (1, 16)
    assert manifest.pairs[0].image == "images/scan.tif"
    pixels = read_image(store / "ct" / "images" / "scan.tif")
    assert pixels.shape == (16, 16, 1) and pixels.dtype == np.uint8
    assert (pixels.min(), pixels.max()) == (0, 255)


def test_rgb_jpg_rgba_and_palette_images(tmp_path: Path, store: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    save(tmp_path / "src" / "images" / "photo.JPG", rgb, quality=95)
    save(tmp_path / "src" / "images" / "alpha.png", np.dstack([rgb, np.full((16, 16), 128, np.uint8)]))
    Image.fromarray(rgb).convert("P").save(tmp_path / "src" / "images" / "palette.bmp")
    for stem in ("photo", "alpha", "palette"):
        save(tmp_path / "src" / "masks" / f"{stem}.png", square_mask())
    manifest = ingest_dataset(tmp_path / "src", "rgb", store)
    assert manifest.channels == 3
    assert manifest.pair("photo").image == "images/photo.JPG"  # original extension kept
    for pair in manifest.pairs:
        assert read_image(store / "rgb" / pair.image).shape == (16, 16, 3)


def test_multi_class_with_declared_classes(tmp_path: Path, store: Path) -> None:
    mask = np.zeros((16, 16), np.uint8)
    mask[:4] = 1  # 25% liver
    mask[4:6] = 2  # 12.5% tumour
    save(tmp_path / "src" / "images" / "a.png", grey())
    save(tmp_path / "src" / "masks" / "a.png", mask)
    manifest = ingest_dataset(tmp_path / "src", "liver", store, classes=["background", "liver", "tumour"])
    assert manifest.classes == ("background", "liver", "tumour") and not manifest.is_binary
    assert manifest.pairs[0].foreground == pytest.approx((0.25, 0.125))
    assert np.array_equal(read_mask(store / "liver" / "masks" / "a.png"), mask)


def test_real_subset_of_brain_mri(tmp_path: Path, store: Path) -> None:
    real = shared_path("brain_mri_lgg_mini")
    stems = sorted(p.stem for p in (real / "images").iterdir())[:6]
    for stem in stems:
        for sub, ext in (("images", ".jpg"), ("masks", ".png")):
            (tmp_path / "src" / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(real / sub / f"{stem}{ext}", tmp_path / "src" / sub / f"{stem}{ext}")
    manifest = ingest_dataset(tmp_path / "src", "lgg", store)
    assert manifest.stems == tuple(stems)
    assert manifest.channels == 3 and manifest.sizes == {"512x512": 6}
    assert all(0.0 <= p.foreground[0] < 0.5 for p in manifest.pairs)


# --- bad input: every case names the problem and leaves nothing behind ----------------------------


def test_corrupt_png(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    (source / "images" / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    message = rejected(source, store)
    assert "corrupt" in message and "images/img1.png" in message


def test_truncated_png(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src", size=64)
    data = png_bytes(grey(64))
    (source / "masks" / "img2.png").write_bytes(data[: len(data) // 2])
    assert "masks/img2.png" in rejected(source, store)


def test_size_mismatch(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    save(source / "masks" / "img0.png", square_mask(size=20))
    message = rejected(source, store)
    assert "masks/img0.png: size mismatch: images/img0.png is 16x16 but the mask is 20x20" in message


def test_unmatched_files_are_named(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    save(source / "images" / "lonely.png", grey())
    save(source / "masks" / "orphan.png", square_mask())
    message = rejected(source, store)
    assert "1 image(s) without a mask: images/lonely.png" in message
    assert "mask(s) without an image: masks/orphan.png" in message


def test_binary_dataset_with_unexpected_values_asks_for_classes(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    mask = square_mask(value=1)
    mask[0, -1] = 2
    save(source / "masks" / "img2.png", mask)
    message = rejected(source, store)
    assert "masks/img2.png: unexpected mask values [0, 1, 2]" in message
    assert "declare the class names" in message


def test_declared_classes_reject_out_of_range_values(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")  # masks hold 0/255, which three classes cannot mean
    message = rejected(source, store, classes=["bg", "a", "b"])
    assert "masks/img0.png: unexpected mask values [0, 255]" in message and "expected 0..2" in message


def test_colour_mask_is_rejected(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[..., 0] = 255
    save(source / "masks" / "img0.png", colour)
    assert "masks/img0.png: colour mask" in rejected(source, store)


def test_duplicate_stems(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    save(source / "images" / "img0.jpg", grey())
    message = rejected(source, store)
    assert "duplicate stem 'img0'" in message and "images/img0.jpg" in message


def test_unsupported_file_type(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    Image.fromarray(grey()).save(source / "images" / "extra.gif")
    assert "images/extra.gif: unsupported file type" in rejected(source, store)


def test_empty_dataset(tmp_path: Path, store: Path) -> None:
    (tmp_path / "src" / "images").mkdir(parents=True)
    (tmp_path / "src" / "masks").mkdir()
    assert "empty dataset" in rejected(tmp_path / "src", store)


def test_folder_without_any_layout(tmp_path: Path, store: Path) -> None:
    save(tmp_path / "src" / "a.png", grey())
    assert "neither images/ + masks/ folders nor mask files" in rejected(tmp_path / "src", store)


def test_image_above_pixel_limit(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    message = rejected(source, store, limits=IngestLimits(max_image_pixels=100))
    assert "images/img0.png: 16x16 = 256 pixels, above the limit of 100" in message


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 65])
def test_invalid_name(tmp_path: Path, store: Path, name: str) -> None:
    assert "invalid dataset name" in rejected(folder_dataset(tmp_path / "src"), store, name=name)


def test_existing_name(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    ingest_dataset(source, "ds", store)
    (store / "ds" / "keep").write_text("the existing dataset stays untouched")
    assert "already exists" in rejected(source, store, existing=("ds",))
    assert load_manifest(store, "ds").stems == ("img0", "img1", "img2")


def test_missing_source_and_non_zip_file(tmp_path: Path, store: Path) -> None:
    assert "source: not found" in rejected(tmp_path / "nope", store)
    (tmp_path / "data.zip").write_bytes(b"not a zip at all")
    assert "neither a folder nor a .zip" in rejected(tmp_path / "data.zip", store)


def test_bad_class_declarations(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    assert "2 to 256 names" in rejected(source, store, classes=["only"])
    assert "duplicate class name(s) ['a']" in rejected(source, store, classes=["bg", "a", "a"])


def test_every_problem_is_reported_at_once(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src", count=4)
    (source / "images" / "img0.png").write_bytes(b"broken")
    save(source / "masks" / "img1.png", square_mask(size=8))
    save(source / "images" / "lonely.png", grey())
    with pytest.raises(DatasetError) as info:
        ingest_dataset(source, "bad/name", store)
    problems = "\n".join(f"{field}: {problem}" for field, problem in info.value.problems.items())
    assert len(info.value.problems) == 4
    for expected in ("invalid dataset name", "images/img0.png", "size mismatch", "images/lonely.png"):
        assert expected in problems


def test_interrupted_ingest_leaves_nothing(tmp_path: Path, store: Path) -> None:
    def stop(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_dataset(folder_dataset(tmp_path / "src"), "ds", store, progress=stop)
    assert list(store.iterdir()) == []


# --- zip archives ---------------------------------------------------------------------------------


def pair_zip(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/a.png", png_bytes(grey()))
        zf.writestr("masks/a.png", png_bytes(square_mask()))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def test_zip_slip_entry(tmp_path: Path, store: Path) -> None:
    archive = pair_zip(tmp_path / "slip.zip", {"../evil.png": png_bytes(grey())})
    assert "../evil.png: contains '..'" in rejected(archive, store)
    assert not (tmp_path / "evil.png").exists() and not (store.parent / "evil.png").exists()


@pytest.mark.parametrize(
    "entry",
    [
        "images/../../x.png",  # '..' below the first component
        "images/sub/../../../x.png",
        "images\\..\\..\\x.png",  # Windows separators
        "..\\x.png",
    ],
)
def test_nested_and_backslash_dot_dot_entries_are_refused(entry: str, tmp_path: Path, store: Path) -> None:
    archive = tmp_path / "slip.zip"
    pair_zip(archive)
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo("images/b.png")
        info.filename = entry  # ZipInfo() would normalise the name; an attacker's tool does not
        zf.writestr(info, png_bytes(grey()))
    assert f"{entry}: contains '..' and would escape the target folder" in rejected(archive, store)
    assert not (tmp_path / "x.png").exists() and not (store.parent / "x.png").exists()
    assert not list(tmp_path.rglob("x.png")) and not any("x.png" in p.name for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("entry", ["C:/x.png", "c:\\windows\\x.png", "D:x.png", "\\\\server\\share\\x.png", "\\x.png"])
def test_drive_letter_and_backslash_absolute_entries_are_refused(entry: str, tmp_path: Path, store: Path) -> None:
    archive = tmp_path / "abs.zip"
    pair_zip(archive)
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo("images/b.png")
        info.filename = entry
        zf.writestr(info, png_bytes(grey()))
    assert f"{entry}: has an absolute path and would escape the target folder" in rejected(archive, store)
    assert not any("x.png" in p.name for p in tmp_path.rglob("*"))


def test_absolute_path_entry(tmp_path: Path, store: Path) -> None:
    archive = tmp_path / "abs.zip"
    pair_zip(archive)
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo("images/b.png")
        info.filename = "/tmp/evil.png"  # ZipInfo() strips a leading '/', an attacker's tool does not
        zf.writestr(info, png_bytes(grey()))
    assert "/tmp/evil.png: has an absolute path" in rejected(archive, store)


def test_symlink_entry(tmp_path: Path, store: Path) -> None:
    archive = pair_zip(tmp_path / "link.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo("images/b.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    assert "images/b.png: is a symbolic link" in rejected(archive, store)


def test_zip_bomb_ratio(tmp_path: Path, store: Path) -> None:
    archive = pair_zip(tmp_path / "bomb.zip", {"images/big.bmp": bytes(4 << 20)})  # 4 MiB of zeros
    assert "images/big.bmp: expands" in rejected(archive, store)


def test_limits_are_inclusive_and_small_compressible_entries_pass(tmp_path: Path, store: Path) -> None:
    """Exactly max_files entries and exactly max_total_bytes pass; a highly compressible entry under
    1 MiB (a blank mask, a side file) is no bomb."""
    archive = pair_zip(tmp_path / "data.zip", {"README.txt": bytes(512 << 10)})  # 512 KiB of zeros: ratio > 200
    with zipfile.ZipFile(archive) as zf:
        total = sum(info.file_size for info in zf.infolist())
    manifest = ingest_dataset(archive, "ds", store, limits=IngestLimits(max_total_bytes=total, max_files=3))
    assert len(manifest.pairs) == 1


def test_zip_total_size_and_file_count_limits(tmp_path: Path, store: Path) -> None:
    archive = pair_zip(tmp_path / "data.zip")
    limits = IngestLimits(max_total_bytes=200, max_files=1)
    message = rejected(archive, store, limits=limits)
    assert "above the limit of 200" in message and "zip: 2 entries, above the limit of 1" in message


def test_corrupt_zip(tmp_path: Path, store: Path) -> None:
    data = pair_zip(tmp_path / "data.zip").read_bytes()
    (tmp_path / "data.zip").write_bytes(data[:40] + b"\0" * 40 + data[80:])
    message = rejected(tmp_path / "data.zip", store)
    assert "corrupt" in message


def lying_zip(path: Path, name: str, data: bytes, declared: int, crc: int) -> Path:
    """A pair zip plus ``name`` holding ``data`` (deflated) whose headers declare only ``declared``
    bytes and CRC ``crc``: what a hand-made bomb looks like (zipfile itself never writes one)."""
    pair_zip(path, {name: data})
    raw = bytearray(path.read_bytes())
    encoded = name.encode()
    # (signature, offset of CRC-32 / uncompressed size, offset of the name length, of the name)
    for signature, crc_at, size_at, length_at, name_at in (
        (b"PK\x03\x04", 14, 22, 26, 30),
        (b"PK\x01\x02", 16, 24, 28, 46),
    ):
        start = 0
        while (start := raw.find(signature, start)) >= 0:
            (length,) = struct.unpack_from("<H", raw, start + length_at)
            if raw[start + name_at : start + name_at + length] == encoded:
                struct.pack_into("<I", raw, start + crc_at, crc)
                struct.pack_into("<I", raw, start + size_at, declared)
            start += 4
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as archive:  # the lie is what the archive now says
        assert archive.getinfo(name).file_size == declared and archive.getinfo(name).compress_size > declared
    return path


LYING_DATA = np.random.default_rng(7).integers(0, 256, 64 << 10, dtype=np.uint8).tobytes()  # 64 KiB, incompressible


def test_an_entry_inflating_beyond_its_declared_size_writes_no_more_than_declared(tmp_path: Path) -> None:
    """Declared 1,000 bytes, 64 KiB inside, CRC of the declared part: extraction stops at the
    declared size (the pre-check's sums stay true), the rest is never written."""
    archive = lying_zip(tmp_path / "lie.zip", "notes.bin", LYING_DATA, 1000, zlib.crc32(LYING_DATA[:1000]))
    for _ in range(2):  # into a new nested folder, then into the same, existing one
        problems: dict[str, str] = {}
        folder = unpack(archive, tmp_path / "work" / "out", IngestLimits(), problems)
        assert problems == {} and folder == tmp_path / "work" / "out"
        assert (folder / "notes.bin").read_bytes() == LYING_DATA[:1000]


def test_an_entry_inflating_beyond_its_declared_size_with_the_real_crc_is_refused(tmp_path: Path, store: Path) -> None:
    archive = lying_zip(tmp_path / "lie.zip", "images/b.png", LYING_DATA, 1000, zlib.crc32(LYING_DATA))
    assert "corrupt zip archive: Bad CRC-32 for file 'images/b.png'" in rejected(archive, store)
    assert not any(p.stat().st_size > 1000 for p in tmp_path.rglob("*.png"))


def test_extraction_stops_at_the_running_size_limit_and_names_the_entry(tmp_path: Path) -> None:
    """The extractor's own running count (behind the pre-check on declared sizes): with a limit
    that the first entries fit and the next one passes mid-way, it writes at most the limit and
    names that entry. Entries of 600 + 600 + 600 bytes under a limit of 1,500."""
    archive = tmp_path / "three.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for index in range(3):
            zf.writestr(f"images/{index}.bin", LYING_DATA[index * 600 : (index + 1) * 600])
    problems: dict[str, str] = {}
    with zipfile.ZipFile(archive) as zf:
        _extract(zf, tmp_path / "out", IngestLimits(max_total_bytes=1500), problems)
    assert problems == {"images/2.bin": "inflates beyond its declared size or the size limit (zip bomb?)"}
    assert [(tmp_path / "out" / "images" / f"{i}.bin").read_bytes() for i in range(2)] == [
        LYING_DATA[:600],
        LYING_DATA[600:1200],
    ]
    assert (tmp_path / "out" / "images" / "2.bin").stat().st_size <= 300  # never past the limit
    problems = {}
    with zipfile.ZipFile(archive) as zf:  # exactly the limit is allowed
        _extract(zf, tmp_path / "all", IngestLimits(max_total_bytes=1800), problems)
    assert problems == {} and (tmp_path / "all" / "images" / "2.bin").read_bytes() == LYING_DATA[1200:1800]


def test_an_entry_is_streamed_out_a_chunk_at_a_time(tmp_path: Path) -> None:
    """Extraction holds one chunk in memory, never a whole entry: 32 MiB of zeros (a bomb's shape)
    go out with well under 8 MiB traced."""
    import tracemalloc

    archive = tmp_path / "zeros.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/zeros.bin", bytes(32 << 20))
    problems: dict[str, str] = {}
    tracemalloc.start()
    try:
        with zipfile.ZipFile(archive) as zf:
            _extract(zf, tmp_path / "out", IngestLimits(), problems)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == {} and (tmp_path / "out" / "images" / "zeros.bin").stat().st_size == 32 << 20
    assert peak < 8 << 20, peak


def test_the_running_count_adds_every_chunk_of_a_large_entry(tmp_path: Path) -> None:
    """A 1.5 MiB entry is read in two chunks; all of it counts against the limit, so a 0.75 MiB
    entry after it no longer fits in 2 MiB."""
    data = np.random.default_rng(3).integers(0, 256, (9 << 20) // 4, dtype=np.uint8).tobytes()
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("images/big.bin", data[: 3 << 19])
        zf.writestr("images/next.bin", data[3 << 19 :])
    problems: dict[str, str] = {}
    with zipfile.ZipFile(archive) as zf:
        _extract(zf, tmp_path / "out", IngestLimits(max_total_bytes=2 << 20), problems)
    assert list(problems) == ["images/next.bin"]
    assert (tmp_path / "out" / "images" / "big.bin").read_bytes() == data[: 3 << 19]


def test_folder_entries_and_macos_resource_forks_are_not_written(tmp_path: Path) -> None:
    archive = pair_zip(tmp_path / "mac.zip", {"__MACOSX/images/._a.png": b"resource fork", "images/sub/": b""})
    problems: dict[str, str] = {}
    folder = unpack(archive, tmp_path / "out", IngestLimits(), problems)
    assert problems == {} and folder is not None
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "images",
        "images/a.png",
        "masks",
        "masks/a.png",
    ]


def declared(name: str, size: int, packed: int) -> zipfile.ZipInfo:
    """An entry as a zip's central directory declares it (sizes need not be true)."""
    info = zipfile.ZipInfo(name)
    info.file_size, info.compress_size = size, packed
    return info


MIB = 1 << 20


def test_the_ratio_rules_on_declared_sizes_at_their_limits() -> None:
    limits = IngestLimits()  # ratio limit 200x, for entries from 1 MiB and archives from 64 MiB
    assert _zip_problems([declared("images/big.bmp", 2 * MIB, 2 * MIB - 100)], limits) == {}  # large but incompressible
    assert _zip_problems([declared("images/at.bmp", 200 * 10_000, 10_000)], limits) == {}  # exactly 200x
    assert _zip_problems([declared("images/a.bmp", MIB, 1024)], limits) == {
        "images/a.bmp": "expands 1024x, above the limit of 200x (zip bomb?)"
    }
    assert _zip_problems([declared("images/z.bmp", 2 * MIB, 1)], limits) == {
        "images/z.bmp": "expands 2097152x, above the limit of 200x (zip bomb?)"
    }

    def archive(total: int, packed: int, count: int = 65) -> list[zipfile.ZipInfo]:
        """``count`` entries, each under 1 MiB (no per-entry rule), declaring ``total`` bytes packed into ``packed``."""
        sizes = [total // count] * (count - 1) + [total - (count - 1) * (total // count)]
        packs = [packed // count] * (count - 1) + [packed - (count - 1) * (packed // count)]
        assert max(sizes) < MIB
        return [declared(f"images/{i}.png", size, pack) for i, (size, pack) in enumerate(zip(sizes, packs))]

    assert _zip_problems(archive(64 * MIB, 65_000), limits) == {
        "zip": "its 65 entries expand 1032x in all (65000 -> 67108864 bytes), above the limit of 200x (zip bomb?)"
    }
    assert _zip_problems(archive(64 * MIB, 1), limits)["zip"].startswith(
        "its 65 entries expand 67108864x in all (1 -> 67108864 bytes)"
    )
    assert _zip_problems(archive(64 * MIB - 1, 65_000), limits) == {}  # the whole-archive rule starts at 64 MiB
    assert _zip_problems(archive(67_200_000, 336_000), limits) == {}  # exactly 200x in all
    assert "zip" in _zip_problems(archive(67_200_000, 335_999), limits)


def test_a_full_disk_is_refused_before_anything_is_written(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("images/a.png", png_bytes(grey()))
        zf.writestr("masks/a.png", png_bytes(square_mask()))
        zf.writestr("notes.bin", bytes(3 * MIB))  # stored, so no ratio rule applies
    with zipfile.ZipFile(archive) as zf:
        needed = 2 * sum(info.file_size for info in zf.infolist())  # unpacked + the stored copy

    def disk_with(free: int):
        return lambda path: shutil._ntuple_diskusage(10 * needed, 10 * needed - free, free)

    monkeypatch.setattr(shutil, "disk_usage", disk_with(needed - 1))
    message = rejected(archive, store)
    assert (
        f"data.zip: needs about {needed >> 20} MiB to unpack and store, but only {(needed - 1) >> 20} MiB are free"
        in message
    )
    assert needed >> 20 == 6
    monkeypatch.setattr(shutil, "disk_usage", disk_with(needed))  # exactly enough
    problems: dict[str, str] = {}
    assert unpack(archive, tmp_path / "out", IngestLimits(), problems) == tmp_path / "out" and problems == {}


# --- the store ------------------------------------------------------------------------------------


def test_list_load_delete(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    ingest_dataset(source, "b", store)
    ingest_dataset(source, "a", store)
    (store / ".ingest-leftover").mkdir()  # temp folders are never listed
    assert dataset_names(store) == ["a", "b"]
    assert [m.name for m in list_datasets(store)] == ["a", "b"]
    delete_dataset(store, "a")
    assert dataset_names(store) == ["b"] and not (store / "a").exists()
    with pytest.raises(DatasetNotFound) as info:
        load_manifest(store, "a")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "no dataset named 'a'; available: 'b'"
    with pytest.raises(DatasetNotFound):
        delete_dataset(store, "../b")
    assert list_datasets(tmp_path / "missing") == []


def test_dataset_path_rejects_escapes(store: Path) -> None:
    assert dataset_path(store, "ok-name") == store / "ok-name"
    with pytest.raises(DatasetError, match="invalid dataset name"):
        dataset_path(store, "../etc")


def test_dataset_stats(tmp_path: Path, store: Path) -> None:
    source = folder_dataset(tmp_path / "src")
    save(source / "masks" / "img1.png", square_mask(value=0))
    stats = dataset_stats(ingest_dataset(source, "ds", store))
    assert (stats.count, stats.channels, stats.bit_depth, stats.empty_masks) == (3, 1, 8, 1)
    assert stats.sizes == {"16x16": 3}
    assert stats.foreground == {"foreground": pytest.approx((0.25, 0.0, 0.25))}
