"""bench/vs_nnunet.py (issue 27): the export to nnU-Net's format, the budget arithmetic, a smoke run of the bench.

nnunetv2 is a benchmark dependency in its own venv (bench/requirements-nnunet.txt); the checks that
need it run it through that interpreter and skip where it is missing (failing under CI).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.machine import missing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import budget_curve
import nnunet_side
import vs_nnunet


def tiny_set(folder: Path, count: int = 16, side: int = 64) -> Path:
    """``count`` RGB images with a bright square as the mask, and a split.csv (train / valid / test)."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    for index in range(count):
        mask = np.zeros((side, side), dtype=np.uint8)
        top, left = rng.integers(4, side // 2, 2)
        mask[top : top + side // 3, left : left + side // 3] = 255
        image = rng.integers(0, 60, (side, side, 3)).astype(np.uint8)
        image[mask > 0] += 150
        stem = f"case{index:02d}"
        Image.fromarray(image).save(folder / "images" / f"{stem}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")
        rows.append(("train" if index < count // 2 else "valid" if index < 3 * count // 4 else "test", stem))
    with open(folder / "split.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return folder


def nnunet_python() -> str:
    """The bench's nnU-Net interpreter, or :func:`missing` where it cannot import nnunetv2."""
    python = vs_nnunet.default_nnunet_python()
    found = subprocess.run([python, "-c", "import nnunetv2"], capture_output=True, check=False)
    if found.returncode != 0:
        missing(
            f"nnunetv2 is not importable by {python}: install bench/requirements-nnunet.txt into .venv-nnunet "
            "beside the repository (see bench/vs_nnunet.py)"
        )
    return python


def test_export_round_trips_names_split_and_labels(tmp_path: Path, workspace) -> None:
    from core.data.ingest import ingest_dataset
    from core.data.manifest import dataset_path
    from core.search.study_source import study_source
    from core.search.validation import spec_from_dict

    manifest = ingest_dataset(tiny_set(tmp_path / "source"), "tiny", workspace.datasets_dir)
    split = study_source(spec_from_dict(vs_nnunet.default_spec("s", "tiny", 1, 64, True)), workspace).split
    raw, test = tmp_path / "raw" / "Dataset927_tiny", tmp_path / "test"
    fold0 = vs_nnunet.export_nnunet(dataset_path(workspace.datasets_dir, "tiny"), manifest, split, raw, test)

    assert fold0 == {"train": [f"case{i:02d}" for i in range(8)], "val": [f"case{i:02d}" for i in range(8, 12)]}
    assert sorted(p.name for p in (raw / "imagesTr").iterdir()) == [f"case{i:02d}_0000.png" for i in range(12)]
    assert sorted(p.name for p in (raw / "labelsTr").iterdir()) == [f"case{i:02d}.png" for i in range(12)]
    assert sorted(p.name for p in (raw / "imagesTs").iterdir()) == [f"case{i:02d}_0000.png" for i in range(12, 16)]
    assert sorted(p.name for p in (test / "masks").iterdir()) == [f"case{i:02d}.png" for i in range(12, 16)]
    assert not (raw / "labelsTs").exists()  # the truth of the test cases stays outside nnU-Net's folder
    for label in [*(raw / "labelsTr").iterdir(), *(test / "masks").iterdir()]:
        assert set(np.unique(np.asarray(Image.open(label)))) == {0, 1}
    original = np.asarray(Image.open(tmp_path / "source" / "images" / "case03.png"))
    assert np.array_equal(np.asarray(Image.open(raw / "imagesTr" / "case03_0000.png")), original)
    description = json.loads((raw / "dataset.json").read_text())
    assert description == {
        "channel_names": {"0": "R", "1": "G", "2": "B"},
        "labels": {"background": 0, "foreground": 1},
        "numTraining": 12,
        "file_ending": ".png",
        "name": "tiny",
    }

    python = nnunet_python()
    check = subprocess.run(
        [
            python,
            "-c",
            "import sys; from nnunetv2.experiment_planning.verify_dataset_integrity import "
            "verify_dataset_integrity; verify_dataset_integrity(sys.argv[1], num_processes=1)",
            str(raw),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_budget_arithmetic_on_fixed_iteration_costs() -> None:
    # nnU-Net: its 250-iteration epoch while 10 of them fit, shorter epochs below that, at most 1,000 epochs.
    assert nnunet_side.fit_schedule(80 * 2.0, 2.0) == (10, 8)  # the 10 x 8 on CPU
    assert nnunet_side.fit_schedule(3000 * 0.5, 0.5) == (12, 250)
    assert nnunet_side.fit_schedule(10**7, 0.01) == (1000, 250)
    assert nnunet_side.fit_schedule(5.0, 1.0) == (5, 1)
    assert nnunet_side.fit_schedule(160.0, 2.0, epoch_s=4.0) == (
        8,
        8,
    )  # each epoch's bookkeeping comes out of the budget
    assert nnunet_side.fit_schedule(0.5, 1.0) == (1, 1)  # a budget the probe already spent still trains one step
    assert nnunet_side.fit_schedule(-3.0, 1.0) == (1, 1)
    epochs, iterations = nnunet_side.fit_schedule(300.0, 0.7)
    assert epochs * iterations * 0.7 <= 300.0
    assert [nnunet_side.val_iterations(n) for n in (1, 8, 250)] == [1, 2, 50]
    with pytest.raises(ValueError, match="positive"):
        nnunet_side.fit_schedule(10.0, 0.0)
    # SegTune: the one-epoch probe's CPU stands for an epoch, and the probe comes out of the budget.
    assert vs_nnunet.segtune_epochs(300.0, 30.0) == 9
    assert vs_nnunet.segtune_epochs(300.0, 200.0) == 1


def test_paired_difference_and_curve_points() -> None:
    a = {"x": {"dice": 0.9}, "y": {"dice": 0.8}, "z": {"dice": float("nan")}}
    b = {"x": {"dice": 0.7}, "y": {"dice": 0.8}, "z": {"dice": 0.5}}
    paired = vs_nnunet.paired_difference(a, b, "dice")
    assert paired["n"] == 2 and paired["mean"] == pytest.approx(0.1)
    assert 0.0 <= paired["low"] <= paired["mean"] <= paired["high"] <= 0.2 + 1e-9
    runs = [
        {"dataset": "d", "budget_min": budget, "systems": {"SegTune": {"dice": dice}, "nnU-Net": {"dice": dice / 2}}}
        for budget, dice in ((15, 0.8), (5, 0.6))
    ]
    assert budget_curve.curve_points(runs) == {
        "d": {"SegTune": [(5.0, 0.6), (15.0, 0.8)], "nnU-Net": [(5.0, 0.3), (15.0, 0.4)]}
    }


@pytest.mark.slow
def test_bench_smoke_run_writes_the_score_table(tmp_path: Path) -> None:
    python = nnunet_python()
    out = tmp_path / "out"
    result = vs_nnunet.main(
        [
            "--dataset",
            str(tiny_set(tmp_path / "source")),
            "--budget-min",
            "1",
            "--out",
            str(out),
            "--image-size",
            "64",
            "--segtune-epochs",
            "1",
            "--nnunet-schedule",
            "1,2",
            "--nnunet-python",
            python,
        ]
    )
    table = (out / "vs_nnunet.md").read_text()
    assert "| SegTune |" in table and "| nnU-Net |" in table and "95 % bootstrap" in table
    stored = json.loads((out / "vs_nnunet.json").read_text())
    for system in ("SegTune", "nnU-Net"):
        row = stored["systems"][system]
        assert row["cases"] == 4 and not row["skipped"]
        assert 0.0 <= row["dice"] <= 1.0
        assert row["cpu_s"] > 0 and row["wall_s"] > 0 and row["training_cpu_s"] <= row["cpu_s"]
    assert (
        stored["systems"]["nnU-Net"]["details"]["epochs"] == 1
        and stored["systems"]["nnU-Net"]["details"]["iterations"] == 2
    )
    assert stored["paired"]["dice"]["n"] == 4
    assert result["versions"]["nnunetv2"] == "2.8.1"
    png = tmp_path / "curve.png"
    plotted = subprocess.run(
        [python, str(Path(budget_curve.__file__)), str(out / "vs_nnunet.json"), "--png", str(png)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plotted.returncode == 0, plotted.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_segtune_side_is_the_auto_plan_for_the_budget(tmp_path: Path) -> None:
    """The hook runs `python -m core plan` (#24) for the bench's budget and hands over its spec, its
    compute measured; a failing plan stops the bench with where to look."""
    import os

    from core.data.demo import create_demo_dataset
    from core.settings import load_settings

    env = {**os.environ, "SEGTUNE_HOME": str(tmp_path / "home")}
    os.environ["SEGTUNE_HOME"], previous = str(tmp_path / "home"), os.environ.get("SEGTUNE_HOME")
    try:
        create_demo_dataset(load_settings().datasets_dir, count=12, size=64)
    finally:
        if previous is None:
            del os.environ["SEGTUNE_HOME"]
        else:
            os.environ["SEGTUNE_HOME"] = previous
    spec, spent = vs_nnunet.planned_spec("demo-cells", 5.0, tmp_path, env, tmp_path / "log")
    assert spec is not None and spec["dataset"] == "demo-cells" and spec.get("search_space") and spent.cpu_s > 0
    with pytest.raises(vs_nnunet.BenchError, match="failed"):
        vs_nnunet.planned_spec("no-such-dataset", 5.0, tmp_path, env, tmp_path / "log")


def test_an_unknown_dataset_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(vs_nnunet.BenchError, match="shenzhen"):
        vs_nnunet.source_folder(str(tmp_path / "nowhere"), tmp_path)
