"""'Folder on the server': only the import roots are readable, links may not lead out, and no
message tells anything about what lies outside the roots."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.ingest import ingest_dataset
from core.data.manifest import DatasetError, dataset_names
from core.data.server_folders import escaping_links, resolve_import_source
from core.settings import load_settings


def pairs(root: Path, count: int = 2) -> Path:
    for i in range(count):
        for sub, pixels in (
            ("images", np.full((16, 16), 40 * i, np.uint8)),
            ("masks", np.eye(16, dtype=np.uint8) * 255),
        ):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / sub / f"p{i}.png")
    return root


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """(import root, a folder outside it holding a valid dataset)."""
    return (tmp_path / "imports").resolve(), pairs(tmp_path / "private" / "other-lab")


def test_import_roots_come_from_settings_and_default_to_the_workspace_imports_folder(tmp_path: Path) -> None:
    default = load_settings({"SEGTUNE_HOME": str(tmp_path / "home")})
    assert default.server_import_roots == ((tmp_path / "home" / "imports").resolve(),)
    assert (tmp_path / "home" / "imports").is_dir()  # created on start
    both = load_settings(
        {
            "SEGTUNE_HOME": str(tmp_path / "home"),
            "SEGTUNE_IMPORT_ROOTS": f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}",
        }
    )
    assert both.server_import_roots == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())


def test_a_folder_inside_a_root_is_ingested_by_absolute_or_relative_path(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = roots
    pairs(root / "cells")
    store = tmp_path / "store"
    assert ingest_dataset(root / "cells", "abs", store, confine_to=[root]).stems == ("p0", "p1")
    assert ingest_dataset(Path("cells"), "rel", store, confine_to=[root]).stems == ("p0", "p1")


@pytest.mark.parametrize(
    "typed", ["/etc", "/proc/self", "../private/other-lab", "/definitely/not/there", "cells/../../private/other-lab"]
)
def test_paths_outside_the_roots_are_refused_without_telling_what_is_there(
    roots: tuple[Path, Path], tmp_path: Path, typed: str
) -> None:
    root, _ = roots
    (root / "cells").mkdir(parents=True)
    with pytest.raises(DatasetError) as info:
        ingest_dataset(Path(typed), "stolen", tmp_path / "store", confine_to=[root])
    message = str(info.value)
    assert "outside the folders the dashboard may read" in info.value.problems["source"]
    for leaked in ("passwd", "hosts", "status", "p0.png", "images", "not found"):
        assert leaked not in message
    assert dataset_names(tmp_path / "store") == []


def test_a_link_to_an_outside_folder_is_followed_to_nowhere(roots: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = roots
    root.mkdir(parents=True)
    (root / "shortcut").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DatasetError) as info:
        ingest_dataset(root / "shortcut", "stolen", tmp_path / "store", confine_to=[root])
    assert "outside" in info.value.problems["source"] and "p0" not in str(info.value)


def test_links_inside_the_source_that_leave_the_roots_are_refused_and_nothing_is_copied(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    root, outside = roots
    source = pairs(root / "cells")
    (source / "images" / "p9.png").symlink_to(outside / "images" / "p0.png")
    (source / "masks" / "p9.png").symlink_to(outside / "masks" / "p0.png")
    (source / "extra").symlink_to(outside, target_is_directory=True)
    (source / "inside").symlink_to(root / "cells" / "images", target_is_directory=True)  # stays inside: fine
    assert escaping_links(source, [root]) == ["extra", "images/p9.png", "masks/p9.png"]
    with pytest.raises(DatasetError) as info:
        ingest_dataset(source, "mixed", tmp_path / "store", confine_to=[root])
    assert set(info.value.problems) == {"extra", "images/p9.png", "masks/p9.png"}
    assert str(outside) not in str(info.value)
    assert not (tmp_path / "store").exists() or dataset_names(tmp_path / "store") == []
    # The CLI is the local user's own: not confined, the same folder is taken with its links.
    assert "p9" in ingest_dataset(source, "local", tmp_path / "store2").stems


def test_a_relative_name_that_exists_nowhere_says_not_found(roots: tuple[Path, Path]) -> None:
    root, _ = roots
    root.mkdir(parents=True)
    with pytest.raises(DatasetError, match="not found under the import folders: missing"):
        resolve_import_source("missing", [root])
