"""Classification ingest (core.data.label_ingest via ingest_dataset): class folders, labels.csv, every problem at
once."""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli import main
from core.data.ingest import ingest_dataset
from core.data.manifest import MANIFEST_FILE, DatasetError, Task, dataset_names, load_manifest
from core.data.splits import SplitConfig, class_counts, file_split, make_split
from core.data.tensors import clear_tensor_cache, load_tensor_set
from core.settings import Settings
from tests.helpers.classification_data import LIVER_GROUPS, blob_image, class_folders, liver_class_folders


def refused(source: Path, store: Path, **kwargs: object) -> dict[str, str]:
    with pytest.raises(DatasetError) as info:
        ingest_dataset(source, "ds", store, **kwargs)
    assert not store.exists() or list(store.iterdir()) == [], "a refused ingest left something behind"
    return info.value.problems


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def zip_folder(folder: Path, archive: Path, top: str = "set") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
    return archive


# --- layouts ----------------------------------------------------------------------------------------------


def test_class_folders_are_detected_stored_and_decoded(tmp_path: Path) -> None:
    source = class_folders(tmp_path / "src", {"tumour": 4, "normal": 6})
    manifest = ingest_dataset(source, "scans", tmp_path / "store")
    folder = tmp_path / "store" / "scans"
    assert manifest.is_classification and manifest.classes == ("normal", "tumour")  # sorted: index 0 normal
    assert manifest.class_counts == {"normal": 6, "tumour": 4}
    assert manifest.labels["tumour_000"] == 1 and manifest.labels["normal_005"] == 0
    assert all(pair.mask == "" and pair.foreground == () for pair in manifest.pairs)
    assert (folder / "images" / "tumour_002.png").read_bytes() == (source / "tumour" / "tumour_002.png").read_bytes()
    assert not (folder / "masks").exists() and load_manifest(tmp_path / "store", "scans") == manifest
    clear_tensor_cache()
    data = load_tensor_set(folder, manifest, manifest.stems, 16, 1)
    assert data.task == Task.CLASSIFICATION and Counter(data.targets.tolist()) == {0: 6, 1: 4}


def test_a_zip_of_class_folders_under_a_top_folder(tmp_path: Path) -> None:
    archive = zip_folder(class_folders(tmp_path / "src", {"benign": 3, "malignant": 3}), tmp_path / "cls.zip")
    manifest = ingest_dataset(archive, "zipped", tmp_path / "store")
    assert manifest.task == Task.CLASSIFICATION and manifest.class_counts == {"benign": 3, "malignant": 3}


def test_labels_csv_with_header_groups_extensions_and_numeric_classes(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(12):
        save(source / "images" / f"scan{i}.png", blob_image(i, vertical=i % 3 == 0))
    rows = ["Name,Label,Group"] + [
        f"{'scan' + str(i) + ('.png' if i % 2 else '')},{10 if i % 3 == 0 else 2},patient{i // 4}" for i in range(12)
    ]
    (source / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    manifest = ingest_dataset(source, "csv", tmp_path / "store")
    assert manifest.classes == ("2", "10")  # whole numbers sort as numbers
    assert manifest.labels["scan0"] == 1 and manifest.labels["scan1"] == 0
    assert manifest.groups == {f"scan{i}": f"patient{i // 4}" for i in range(12)}
    split = make_split(manifest.stems, SplitConfig(seed=1), manifest.groups, manifest.labels)
    owners = [{manifest.groups[s] for s in part} for part in (split.train, split.val, split.test)]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])


def test_labels_csv_beside_the_images_and_declared_class_order(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(6):
        save(source / f"x{i}.jpg", np.dstack([blob_image(i)] * 3))
    (source / "labels.csv").write_text(
        "".join(f"x{i}.jpg,{'yes' if i < 2 else 'no'}\n" for i in range(6)), encoding="utf-8"
    )
    manifest = ingest_dataset(source, "rgb", tmp_path / "store", classes=["yes", "no"])
    assert manifest.classes == ("yes", "no") and manifest.class_counts == {"yes": 2, "no": 4} and manifest.channels == 3
    assert manifest.pair("x0").image == "images/x0.jpg"


def test_a_kept_split_file_comes_along(tmp_path: Path) -> None:
    source = class_folders(tmp_path / "src", {"a": 3, "b": 3})
    rows = [f"{'test' if i == 0 else 'val' if i == 1 else 'train'},{cls}_{i:03d}" for cls in "ab" for i in range(3)]
    (source / "split.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ingest_dataset(source, "kept", tmp_path / "store")
    assert (tmp_path / "store" / "kept" / "split.csv").is_file()


def test_a_split_file_with_cross_validation_folds_stratified_by_class(tmp_path: Path) -> None:
    source = class_folders(tmp_path / "src", {"a": 18, "b": 9})
    part = {"a_000": "test", "a_009": "test", "b_000": "test", "a_001": "val"}  # the rest: train
    rows = [
        f"{part.get(stem, 'train')},{stem}"
        for cls, count in (("a", 18), ("b", 9))
        for stem in (f"{cls}_{i:03d}" for i in range(count))
    ]
    (source / "split.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    manifest = ingest_dataset(source, "kept", tmp_path / "store")
    folder = tmp_path / "store" / "kept"
    folds = [
        file_split(folder, manifest.stems, SplitConfig(from_file=True, k_folds=3, fold=f), manifest.labels)
        for f in range(3)
    ]
    assert {s.test for s in folds} == {("a_000", "a_009", "b_000")}  # the file's test images, held out in every fold
    counts = [Counter(manifest.labels[s] for s in split.val) for split in folds]
    assert sum(counts, Counter()) == {0: 16, 1: 8}  # every train + val image validates once
    assert all(c[0] in (5, 6) and c[1] in (2, 3) for c in counts), counts  # 16 and 8 over 3 folds: stratified


def test_a_confined_ingest_refuses_a_class_folder_link_that_leaves_the_roots(tmp_path: Path) -> None:
    root = (tmp_path / "imports").resolve()
    source = class_folders(root / "scans", {"normal": 2, "tumour": 2})
    outside = class_folders(tmp_path / "private", {"secret": 1})
    (source / "tumour" / "leak.png").symlink_to(outside / "secret" / "secret_000.png")
    problems = refused(Path("scans"), tmp_path / "store", confine_to=[root])
    assert any("leak.png" in field for field in problems) and "secret" not in " ".join(problems.values())
    (source / "tumour" / "leak.png").unlink()
    assert ingest_dataset(Path("scans"), "scans", tmp_path / "store", confine_to=[root]).class_counts == {
        "normal": 2,
        "tumour": 2,
    }


# --- every problem at once -------------------------------------------------------------------------------


def test_every_class_folder_problem_is_listed_at_once(tmp_path: Path) -> None:
    source = class_folders(tmp_path / "src", {"normal": 3, "tumour": 3})
    (source / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (source / "normal" / "notes.docx").write_bytes(b"x")
    shutil.copy(
        source / "normal" / "normal_000.png", source / "tumour" / "copy_of_normal.png"
    )  # the same picture in two classes
    shutil.copy(source / "tumour" / "tumour_001.png", source / "tumour" / "again.png")  # twice in one class
    save(source / "tumour" / "normal_001.png", blob_image(99))  # a name used in two folders
    (source / "cyst").mkdir()  # an empty class
    save(source / "tumour" / "nested" / "deep.png", blob_image(98))
    save(source / "stray.png", blob_image(97))
    problems = refused(source, tmp_path / "store", task="classification")
    assert "unreadable or corrupt image" in problems["normal/broken.png"]
    assert "unsupported file type" in problems["normal/notes.docx"]
    assert (
        "labelled normal and tumour" in problems["normal/normal_000.png"]
        and "tumour/copy_of_normal.png" in problems["normal/normal_000.png"]
    )
    assert (
        "copies would leak between splits" in problems["tumour/again.png"]
        and "tumour/tumour_001.png" in problems["tumour/again.png"]
    )
    assert "duplicate name 'normal_001'" in problems["tumour/normal_001.png"]
    assert problems["1 empty class(es)"].startswith("cyst")
    assert "holds sub-folders (tumour/nested)" in problems["tumour/"]
    assert problems["1 file(s) outside the class folders"] == "stray.png"
    assert "task" not in problems  # asked for, not detected


def test_every_labels_csv_problem_is_listed_at_once(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(6):
        save(source / "images" / f"s{i}.png", blob_image(i))
    (source / "labels.csv").write_text(
        "name,label\ns0,normal\ns1,tumor\ns1,normal\nghost.png,normal\ns2,\nlonely\ns3,tumour\n", encoding="utf-8"
    )
    problems = refused(source, tmp_path / "store", classes=["normal", "tumour"])
    report = problems["labels.csv"]
    assert "unknown class 'tumor' (1 image(s)); declared classes: ['normal', 'tumour']" in report
    assert "name(s) listed twice: s1" in report and "name(s) with no image in images: ghost.png" in report
    assert "row(s) without a label: row 6 (s2)" in report and "row(s) 7 are not 'name,label'" in report
    assert problems["2 image(s) not in labels.csv"] == "images/s4.png, images/s5.png"
    assert problems["task"].startswith("detected a classification dataset (images + labels.csv)")


def test_declared_classes_without_images_and_folders_not_declared(tmp_path: Path) -> None:
    source = class_folders(tmp_path / "src", {"normal": 2, "tumour": 2})
    problems = refused(source, tmp_path / "store", classes=["normal", "cyst", "tumor"])
    assert "unknown class 'tumour' (2 image(s))" in problems["tumour/"]
    assert problems["2 empty class(es)"].startswith("cyst, tumor")


def test_one_class_is_not_a_classification_dataset(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(3):
        save(source / "images" / f"s{i}.png", blob_image(i))
    (source / "labels.csv").write_text("".join(f"s{i},normal\n" for i in range(3)), encoding="utf-8")
    assert "found 1 class (normal)" in refused(source, tmp_path / "store")["classes"]


def test_zip_path_escapes_are_refused_for_classification_zips(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    png = io.BytesIO()
    Image.fromarray(blob_image(1)).save(png, format="PNG")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("set/normal/a.png", png.getvalue())
        zf.writestr("set/tumour/../../../escape.png", png.getvalue())
    problems = refused(archive, tmp_path / "store")
    assert "would escape the target folder" in problems["set/tumour/../../../escape.png"]
    assert not (tmp_path / "escape.png").exists()


def test_the_task_can_be_forced_and_a_bad_one_is_named(tmp_path: Path) -> None:
    folders = class_folders(tmp_path / "cls", {"a": 2, "b": 2})
    problems = refused(folders, tmp_path / "store", task="segmentation")
    assert "A classification dataset has one sub-folder of images per class" in problems["layout"]
    pairs = tmp_path / "seg"
    save(pairs / "images" / "p.png", blob_image(1))
    save(pairs / "masks" / "p.png", np.zeros((32, 32), np.uint8))
    assert (
        "images/ + masks/ is a segmentation dataset"
        in refused(pairs, tmp_path / "store", task="classification")["layout"]
    )
    assert re.search(
        r"unknown task 'detection'; valid: \['segmentation', 'classification'\]",
        refused(pairs, tmp_path / "store", task="detection")["task"],
    )


def test_segmentation_sources_are_still_read_as_segmentation(tmp_path: Path) -> None:
    source = tmp_path / "seg"
    for i in range(3):
        save(source / f"c{i}.png", blob_image(i))
        save(source / f"c{i}_mask.png", (blob_image(i) > 200).astype(np.uint8) * 255)
    (source / "notes.csv").write_text("anything\n", encoding="utf-8")
    manifest = ingest_dataset(source, "seg", tmp_path / "store")
    assert not manifest.is_classification and "task" not in (tmp_path / "store" / "seg" / MANIFEST_FILE).read_text()


# --- the CLI ----------------------------------------------------------------------------------------------


def test_cli_ingests_a_classification_dataset_and_lists_it(
    tmp_path: Path, workspace: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    source = class_folders(tmp_path / "src", {"normal": 3, "tumour": 2})
    assert main(["ingest", str(source), "--name", "scans", "--task", "classification"]) == 0
    assert "ingested scans: 5 labelled images, 1 channel(s), classes normal 3, tumour 2" in capsys.readouterr().out
    assert main(["datasets", "list"]) == 0
    assert re.search(r"scans\s+classification\s+5 labelled images", capsys.readouterr().out)
    assert main(["ingest", str(source), "--name", "again", "--task", "classification", "--volumes"]) == 2
    assert "datasets from-masks" in capsys.readouterr().err
    assert dataset_names(workspace.datasets_dir) == ["scans"]


# --- real data: CT tiles with and without liver -----------------------------------------------------------


def test_liver_tiles_ingest_and_split_by_volume_and_class(tmp_path: Path) -> None:
    manifest = ingest_dataset(liver_class_folders(tmp_path / "src"), "liver-tiles", tmp_path / "store")
    assert manifest.classes == ("liver", "no liver") and min(manifest.class_counts.values()) >= 40
    labels, volume = manifest.labels, (lambda stem: re.match(LIVER_GROUPS, stem).group(1))
    overall = sum(labels.values()) / len(labels)
    for config in [SplitConfig(seed=s, group_pattern=LIVER_GROUPS) for s in range(3)] + [
        SplitConfig(k_folds=3, fold=f, test=0.2, group_pattern=LIVER_GROUPS) for f in range(3)
    ]:
        split = make_split(manifest.stems, config, labels=labels)
        volumes = [{volume(s) for s in part} for part in (split.train, split.val, split.test)]
        assert not (volumes[0] & volumes[1] or volumes[0] & volumes[2] or volumes[1] & volumes[2])
        for counts in class_counts(split, labels).values():
            assert counts[1] / sum(counts.values()) == pytest.approx(overall, abs=0.12)  # whole volumes limit how close
