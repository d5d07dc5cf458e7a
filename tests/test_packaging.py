"""SegTune as a package: what ``pip install .`` installs, and the ``segtune`` command it puts on the PATH.

The install is ``pip install --no-deps --no-build-isolation --target DIR`` of a copy of the source
(the dependencies are this venv's; a build in the checkout would leave build/ behind), run once
per module. The installed command then runs with only DIR on the import path, from another folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from tests.helpers.dashboard import free_port, run_script, wait_for_server
from tests.helpers.machine import REPO

SOURCES = ("core", "app", "pages", "segtune", "pyproject.toml", "requirements.txt", "README.md")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder ``pip install --target`` filled from a copy of the checkout."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy(path, source / name)
    target = root / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-compile",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return target


def _dist_info(installed: Path) -> Path:
    [info] = installed.glob("segtune-*.dist-info")
    return info


def test_the_install_holds_every_module_and_data_file(installed: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "core", "app", "pages", "segtune"], cwd=REPO, capture_output=True, text=True, check=True
    )
    wanted = {name for name in tracked.stdout.split() if not name.endswith((".gitkeep",))}
    present = {str(path.relative_to(installed)) for path in installed.rglob("*") if path.is_file()}
    assert wanted - present == set(), "files of the checkout missing from the install"
    assert {
        "app/.streamlit/config.toml",
        "core/search/presets/p1-unet-keras-tuner.json",
        "core/deploy/standalone_predict.py",
    } <= present


def test_the_command_and_the_pinned_dependencies_are_declared(installed: Path) -> None:
    info = _dist_info(installed)
    assert "segtune = segtune.cli:main" in (info / "entry_points.txt").read_text()
    requires = [
        line.removeprefix("Requires-Dist: ")
        for line in (info / "METADATA").read_text().splitlines()
        if line.startswith("Requires-Dist: ")
    ]
    pinned = [
        line.strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert requires == pinned  # requirements.txt is the one list of versions
    assert (installed / "bin" / "segtune").is_file()


def test_segtune_hands_dashboard_to_the_launcher_and_the_rest_to_core(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from app import serve
    from core.data.manifest import list_datasets
    from segtune.cli import main

    served: list[list[str]] = []
    monkeypatch.setattr(serve, "main", lambda argv: served.append(argv) or 0)
    assert main(["datasets", "list"]) == 0
    assert "no datasets yet" in capsys.readouterr().out
    assert main(["dashboard", "--server.port", "8600", "--insecure-no-password"]) == 0
    assert served == [["--server.port", "8600", "--insecure-no-password"]]
    [demo] = list_datasets(workspace.datasets_dir)  # a first start opens on the demo dataset, as scripts/start.sh
    assert main(["dashboard"]) == 0 and len(list_datasets(workspace.datasets_dir)) == 1  # created once only
    assert main(["datasets", "list"]) == 0 and demo.name in capsys.readouterr().out
    with pytest.raises(SystemExit) as shown:
        main(["--help"])
    assert shown.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: segtune") and "dashboard" in usage and "predict" in usage


def _installed_env(installed: Path, home: Path) -> dict[str, str]:
    """Only the installed copy on the import path (not the checkout), a fresh workspace."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SEGTUNE_", "PYTHON", "STREAMLIT_"))}
    return {**env, "PYTHONPATH": str(installed), "SEGTUNE_HOME": str(home)}


def test_the_installed_command_runs_from_any_folder(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _installed_env(installed, tmp_path / "home")
    where = subprocess.run(
        [sys.executable, "-c", "import core, pages; print(core.__file__); print(list(pages.__path__)[0])"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(line.startswith(str(installed)) for line in where.stdout.split())  # not the checkout's
    result = subprocess.run(
        [str(installed / "bin" / "segtune"), "datasets", "demo"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "created demo dataset" in result.stdout and (tmp_path / "home" / "datasets").is_dir()


@pytest.mark.serve
def test_the_installed_dashboard_serves_its_pages_from_any_folder(installed: Path, tmp_path: Path) -> None:
    """No password and no ./.streamlit: it starts only because app/.streamlit/config.toml (localhost) is read."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    with (tmp_path / "dashboard.log").open("w") as log:
        process = subprocess.Popen(
            [str(installed / "bin" / "segtune"), "dashboard", "--server.port", str(port), "--server.headless", "true"],
            cwd=elsewhere,
            env=_installed_env(installed, tmp_path / "home"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_server(url, process, timeout_s=120)
            run = run_script(url)
            assert "Datasets" in run.texts and run.media_urls  # the datasets page, with the demo dataset's gallery
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert "WITHOUT a password" not in (tmp_path / "dashboard.log").read_text()
