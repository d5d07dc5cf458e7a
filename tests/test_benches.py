"""The benchmark scripts run end to end at a tiny scale (their figures go to bench/RESULTS.md, never into tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers.machine import shared_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_gpu_throughput_runs_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gpu_throughput

    result = gpu_throughput.main(
        [
            "--device",
            "cpu",
            "--size",
            "32",
            "--batch",
            "2",
            "--steps",
            "1",
            "--packing",
            "1,2",
            "--matmul",
            "128",
            "--threads",
            "1",
            "--json",
            str(tmp_path / "out.json"),
        ]
    )
    rows = result["rows"]
    assert [row["packed"] for row in rows] == [1, 2]
    assert all(row["images_per_s"] > 0 and row["achieved"] > 0 and row["p5_hours"] > 0 for row in rows)
    assert all(
        row["mode"] == "off" and row["compile_s"] == 0 and row["warning"] is None for row in rows
    )  # eager by default on the CPU
    flops = result["flops_per_image"]
    assert flops["resnet18"] < flops["resnet34"] < flops["resnet50"] < flops["resnet152"]
    assert (tmp_path / "out.json").is_file()
    assert "| 2 |" in capsys.readouterr().out


def test_results_scale_runs_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import results_scale

    results = results_scale.main(
        ["--trials", "12", "--epochs", "3", "--rounds", "2", "--no-postgres", "--db", str(tmp_path / "scale.db")]
    )
    figures = results["SQLite"]
    assert {"fresh", "cache first", "cache after", "cache while adding"} <= set(figures)
    assert all(value > 0 for value in figures.values())
    assert "| SQLite |" in capsys.readouterr().out
    again = results_scale.main(
        ["--trials", "12", "--epochs", "3", "--rounds", "1", "--no-postgres", "--db", str(tmp_path / "scale.db")]
    )
    assert "built" not in capsys.readouterr().out and again["SQLite"]  # the study is reused, not rebuilt


def test_search_efficiency_summary_counts_compute_to_reach_random_best() -> None:
    import search_efficiency as bench

    def ledger(steps: list[tuple[float, float]]) -> bench.Ledger:
        result = bench.Ledger(budget_s=10)
        previous = 0.0
        for used, dice in steps:
            result.add(used - previous, dice)
            previous = used
        return result

    runs = {
        "random": [ledger([(2, 0.5), (9, 0.7)]), ledger([(5, 0.6)])],
        "tpe": [ledger([(1, 0.66), (3, 0.8)]), ledger([(4, 0.5)])],
    }
    rows = {row["method"]: row for row in bench.summarise(runs, budget_s=10)}
    assert rows["random"]["target"] == pytest.approx(0.65)  # median of random's final bests
    assert rows["tpe"]["reached"] == 1 and rows["random"]["reached"] == 1
    assert (
        rows["random"]["reach_fraction_median"] is None
    )  # one seed of two never reached it: the median is "not reached"
    runs["tpe"].append(ledger([(2, 0.9)]))
    rows = {row["method"]: row for row in bench.summarise(runs, budget_s=10)}
    assert rows["tpe"]["reach_fraction_median"] == pytest.approx(0.2) and rows["tpe"]["best_median"] == pytest.approx(
        0.8
    )
    assert "| tpe | 0.800" in bench.table(list(rows.values()), 10)


def test_classification_p4_compares_default_and_tuned_heads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import classification_p4

    shared_dataset("ct_liver_msd")  # skips (fails in CI) without the shared datasets
    result = classification_p4.main(
        [
            "--volumes",
            "4",
            "--trials",
            "1",
            "--epochs",
            "1",
            "--batch",
            "8",
            "--home",
            str(tmp_path / "home"),
            "--json",
            str(tmp_path / "p4.json"),
        ]
    )
    configurations = [row["configuration"] for row in result["rows"]]
    assert configurations[:2] == ["default MobileNetV2", "default VGG19"] and len(configurations) == 3
    assert result["rows"][0]["head"] == {
        "head_kernel_size": 3,
        "head_filters": 64,
        "head_dense_units": 128,
        "head_dropout": 0.5,
    }
    assert all(0.0 <= row["balanced_accuracy"] <= 1.0 and row["balanced_accuracy_sd"] >= 0 for row in result["rows"])
    assert result["baseline"] == pytest.approx(0.5) and (tmp_path / "p4.json").is_file()
    assert "| default VGG19 | VGG19 | 3, 64, 128, 0.5 |" in capsys.readouterr().out


def test_compile_study_runs_eager_on_the_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end-to-end study bench at its smallest (eager only: inductor takes minutes on a small CPU)."""
    import compile_study

    for name in ("SEGTUNE_HOME", "SEGTUNE_DB", "SEGTUNE_ARTIFACTS"):
        monkeypatch.setenv(name, "restored after the test")  # the bench points them at its workspace
    result = compile_study.main(
        [
            "--device",
            "cpu",
            "--modes",
            "off",
            "--trials",
            "1",
            "--epochs",
            "1",
            "--images",
            "12",
            "--size",
            "32",
            "--batch",
            "4",
            "--tiny",
            "--home",
            str(tmp_path / "home"),
            "--json",
            str(tmp_path / "study.json"),
        ]
    )
    row = result["rows"][0]
    assert (
        row["mode"] == "off"
        and row["complete"] == 1
        and row["wall_s"] > 0
        and len(row["epoch_s"]) == 1
        and row["warnings"] == []
    )
    assert "| off |" in capsys.readouterr().out and (tmp_path / "study.json").is_file()


@pytest.mark.slow
def test_gpu_checks_script_runs_its_default_steps_on_the_cpu(tmp_path: Path) -> None:
    """bench/gpu_checks.sh's default steps (throughput, then the study) at the smallest sizes, eager only."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "SEGTUNE_HOME": str(tmp_path / "home"),
        "STUDY_MODES": "off",
        "THROUGHPUT_ARGS": "--device cpu --size 32 --batch 2 --steps 1 --packing 1 --matmul 128 --threads 1",
        "STUDY_ARGS": "--device cpu --trials 1 --epochs 1 --images 12 --size 32 --batch 4 --tiny",
    }
    done = subprocess.run(
        ["bash", str(root / "bench" / "gpu_checks.sh"), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert "== 1. packing and throughput" in done.stdout and "== 4. the same 8-trial study, eager vs" in done.stdout, (
        done.stdout + done.stderr
    )
    assert (tmp_path / "out" / "throughput.json").is_file() and (tmp_path / "out" / "compile_study.json").is_file(), (
        done.stdout + done.stderr
    )


@pytest.mark.slow
def test_plan_vs_default_runs_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import plan_vs_default

    from tests.helpers.machine import shared_dataset

    shared_dataset("ct_liver_msd")  # skips with the reason when the shared datasets are absent
    result = plan_vs_default.main(
        [
            "--datasets",
            "liver",
            "--count",
            "8",
            "--minutes",
            "0.3",
            "--trials",
            "1",
            "--threads",
            "1",
            "--probe-side",
            "64",
            "--home",
            str(tmp_path / "home"),
            "--json",
            str(tmp_path / "out.json"),
        ]
    )
    (row,) = result["rows"]
    # the side follows the measured speed of this machine: a multiple of 32 the 256-px slices allow
    assert row["side"] % 32 == 0 and 64 <= row["side"] <= 256
    assert row["plan"]["trials"] == 1 and row["default"]["trials"] == 1
    assert row["default"]["config"]["architecture"] == "Unet" and row["default"]["config"]["lr"] == 1e-3
    assert row["plan"]["config"]["lr"] == 1e-3  # the plan's first trial is the plain default
    assert (tmp_path / "out.json").is_file() and f"| liver | default | {row['side']} |" in capsys.readouterr().out
    # a re-run of one arm plans with the speed it is given instead of timing a probe: a slow one gets the smallest side
    again = plan_vs_default.main(
        ["--datasets", "liver", "--count", "8", "--minutes", "0.3", "--trials", "1", "--threads", "1"]
        + ["--speed", "0.0001", "--arms", "plan", "--home", str(tmp_path / "home2")]
    )
    (only,) = again["rows"]
    assert "default" not in only and only["plan"]["trials"] == 1 and only["side"] == 64


@pytest.mark.slow
def test_native_eval_runs_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/native_eval.py at its smallest on EM: every comparison is computed and written."""
    import native_eval

    from tests.helpers.machine import shared_dataset

    shared_dataset("em_membrane_isbi2012")  # skips with the reason when the shared datasets are absent
    monkeypatch.setenv("SEGTUNE_HOME", str(tmp_path / "home"))  # the bench points it at its own workspace
    out = tmp_path / "native.json"
    args = ["--datasets", "em", "--images", "10", "--epochs", "1", "--folds", "2", "--size", "32", "--native", "64"]
    assert native_eval.main([*args, "--threads", "1", "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    assert result["dataset"] == "em" and 0 <= result["training_vs_native"]["val_dice_native"] <= 1
    assert len(result["ensemble"]["fold_dice"]) == 2 and result["ensemble"]["test_cases"] >= 1
    assert {"resize_dice", "patch_dice", "patch_minus_resize"} <= set(result["resize_vs_patch"])
