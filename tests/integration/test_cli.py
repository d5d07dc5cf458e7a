"""The README's headless promises, through the real CLI (``python -m core ...`` in a subprocess):
``datasets demo``, ``ingest``, ``tune``, ``submit`` + ``jobs list/show/cancel/resume/extend`` and
``worker --wait --db``; results in a separate ``SEGTUNE_ARTIFACTS`` folder; SQLite in WAL mode.

Tiny throughout: 64 px demo cells, ClassicUNet with 4 filters, 2 epochs, 2-3 trials.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from core.data.demo import create_demo_dataset
from core.runtime.job_model import JobState, pid_alive
from core.runtime.job_table import get_job, job_workers
from core.runtime.storage import open_storage
from core.settings import load_settings
from tests.helpers.cli import cli
from tests.helpers.machine import REPO

pytestmark = pytest.mark.slow


def spec_file(folder: Path, name: str, trials: int, **extra: object) -> Path:
    spec = {
        "name": name,
        "dataset": "demo-cells",
        "image_size": 64,
        "sampler": "random",
        "pruner": "none",
        "budget": {"n_trials": trials, "max_epochs": 2},
        "preview_count": 2,
        "patience": 2,
        "search_space": {
            "architecture": "ClassicUNet",
            "unet_start_filters": 4,
            "unet_depth": 2,
            "epochs": 2,
            "batch_size": 8,
            "lr": {"low": 1e-3, "high": 3e-2, "log": True},
        },
        **extra,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def demo(env: dict[str, str]) -> None:
    create_demo_dataset(load_settings(env).datasets_dir, count=24, size=64)


def test_datasets_demo_then_list(env: dict[str, str]) -> None:
    made = cli(env, "datasets", "demo")
    assert made.returncode == 0, made.stderr
    assert "created demo dataset demo-cells (60 pairs)" in made.stdout
    manifest = json.loads((Path(env["SEGTUNE_HOME"]) / "datasets" / "demo-cells" / "dataset.json").read_text())
    assert len(manifest["pairs"]) == 60
    listed = cli(env, "datasets", "list")
    assert listed.returncode == 0 and "demo-cells" in listed.stdout and "60 pairs" in listed.stdout


def test_ingest_a_folder_and_refuse_a_bad_one_without_a_traceback(env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "cells"
    for sub in ("images", "masks"):
        (source / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(source / "images" / f"c{index}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[4:12, 4:12] = 255
        Image.fromarray(mask).save(source / "masks" / f"c{index}.png")
    done = cli(env, "ingest", str(source), "--name", "cells")
    assert done.returncode == 0, done.stderr
    assert "ingested cells: 4 pairs, 1 channel(s), classes ['background', 'foreground']" in done.stdout
    assert (Path(env["SEGTUNE_HOME"]) / "datasets" / "cells" / "dataset.json").is_file()

    (source / "masks" / "c3.png").unlink()  # an image without its mask
    refused = cli(env, "ingest", str(source), "--name", "cells2")
    assert refused.returncode == 2
    assert "error:" in refused.stderr and "c3" in refused.stderr and "Traceback" not in refused.stderr
    assert not (Path(env["SEGTUNE_HOME"]) / "datasets" / "cells2").exists()


def capped_cli(
    env: dict[str, str], *args: str, max_rss_mb: int = 1024, timeout_s: float = 60
) -> tuple[subprocess.CompletedProcess[str], int]:
    """``cli``, killed once it holds more than ``max_rss_mb`` of memory or runs past ``timeout_s`` (so
    a regression fails fast instead of swapping); also returns the highest memory seen, in MB."""
    process = subprocess.Popen(
        [sys.executable, "-m", "core", *args],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline, peak_kb = time.monotonic() + timeout_s, 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak_kb = max(
                peak_kb, next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            )
        except (OSError, StopIteration):
            pass  # the process ended between poll() and the read
        if peak_kb > max_rss_mb * 1024 or time.monotonic() > deadline:
            process.kill()
        time.sleep(0.02)
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), peak_kb // 1024


def test_submit_refuses_out_of_range_seeds_and_yaml_alias_bombs(env: dict[str, str], tmp_path: Path) -> None:
    refused = cli(env, "submit", "--spec", str(spec_file(tmp_path, "seeded", 2, seed=2**70)), "--workers", "0")
    assert refused.returncode == 2, refused.stderr
    assert f"seed: must be a whole number from 0 to 4,294,967,295, got {2**70}" in refused.stderr  # -1: test_spec.py
    assert "Traceback" not in refused.stderr
    # billion laughs: 9 levels of 9 aliases each; the description's message would spell out 9**9 strings
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join([*levels, "name: bomb", "dataset: demo-cells", "description: *a8"]) + "\n")
    # the CLI alone (torch imported) holds about 1.3 GB; the expansion would pass 3 GB within seconds
    refused, peak_mb = capped_cli(env, "submit", "--spec", str(bomb), "--workers", "0", max_rss_mb=3072, timeout_s=90)
    assert refused.returncode == 2, (refused.returncode, peak_mb, refused.stderr[-500:])
    assert "YAML aliases (*a0) are not allowed in a spec" in refused.stderr and "Traceback" not in refused.stderr
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"name": "huge", "dataset": "demo-cells", "description": "x" * (2 << 20)}))
    refused = cli(env, "submit", "--spec", str(huge), "--workers", "0")
    assert refused.returncode == 2 and "huge.json is over 1024 KB: too large to be a study spec" in refused.stderr


def test_tune_prints_a_leaderboard_stores_artifacts_apart_and_uses_wal(env: dict[str, str], tmp_path: Path) -> None:
    demo(env)
    tuned = cli(env, "tune", "--spec", str(spec_file(tmp_path, "cli-tune", 2)), "--device", "cpu")
    assert tuned.returncode == 0, tuned.stderr
    assert "study cli-tune: 2 complete" in tuned.stdout
    assert "val_dice" in tuned.stdout and "test_dice" in tuned.stdout

    settings = load_settings(env)
    study = optuna.load_study(study_name="cli-tune", storage=open_storage(settings.db_url))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    # SEGTUNE_ARTIFACTS: every artifact a trial names is a file in that folder, none under SEGTUNE_HOME
    shared = Path(env["SEGTUNE_ARTIFACTS"])
    for trial in study.trials:
        for artifact_id in trial.user_attrs["artifacts"].values():
            assert (shared / artifact_id).is_file()
    assert not (Path(env["SEGTUNE_HOME"]) / "artifacts").exists() or not any(
        (Path(env["SEGTUNE_HOME"]) / "artifacts").iterdir()
    )
    # SQLite in WAL mode (readers never block the writing worker); the mode is stored in the file
    database = Path(env["SEGTUNE_HOME"]) / "segtune.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    again = cli(env, "tune", "--spec", str(spec_file(tmp_path, "cli-tune", 2)), "--device", "cpu")
    assert again.returncode == 0 and "study cli-tune: 2 complete" in again.stdout  # budget used: nothing more runs


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_jobs_commands_and_a_waiting_worker_on_the_given_db(env: dict[str, str], tmp_path: Path) -> None:
    demo(env)
    settings = load_settings(env)
    submitted = cli(env, "submit", "--spec", str(spec_file(tmp_path, "cli-jobs", 2)), "--workers", "0")
    assert submitted.returncode == 0, submitted.stderr
    assert "job 1 queued for study cli-jobs (2 trials, 0 worker slot(s))" in submitted.stdout

    listed = cli(env, "jobs", "list")
    assert (
        listed.returncode == 0 and "cli-jobs" in listed.stdout and "queued" in listed.stdout and "0/2" in listed.stdout
    )
    shown = cli(env, "jobs", "show", "1")
    assert shown.returncode == 0 and "job 1  study cli-jobs  queued" in shown.stdout and "trials 0/2" in shown.stdout
    cancelled = cli(env, "jobs", "cancel", "1")
    assert cancelled.stdout.strip() == "job 1 (cli-jobs): cancelled, 2 trials"
    assert get_job(settings, 1).status == JobState.CANCELLED
    resumed = cli(env, "jobs", "resume", "1")
    assert resumed.stdout.strip() == "job 1 (cli-jobs): queued, 2 trials"
    extended = cli(env, "jobs", "extend", "1", "--trials", "1")
    assert extended.stdout.strip() == "job 1 (cli-jobs): queued, 3 trials"
    missing = cli(env, "jobs", "show", "7")
    assert missing.returncode == 2 and "error:" in missing.stderr and "Traceback" not in missing.stderr

    # the worker finds the job only through --db: its own SEGTUNE_DB points at an empty database
    worker_env = {**env, "SEGTUNE_DB": f"sqlite:///{tmp_path / 'elsewhere.db'}"}
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "core", "worker", "--wait", "--device", "cpu", "--db", settings.db_url],
        cwd=REPO,
        env=worker_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(lambda: get_job(settings, 1).status == JobState.FINISHED, 240, "the worker to finish job 1")
        assert worker.poll() is None  # --wait: still there, waiting for the next job
        assert [w.pid for w in job_workers(settings, alive_only=False)] == [worker.pid]
        study = optuna.load_study(study_name="cli-jobs", storage=open_storage(settings.db_url))
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
        assert {t.user_attrs["job_id"] for t in study.trials} == {1}
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        log.close()
    assert not pid_alive(worker.pid)
