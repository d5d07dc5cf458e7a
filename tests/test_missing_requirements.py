"""What a test needs from the machine: outside CI a missing piece skips with its reason; with
CI=true it fails the run (a green CI must never mean "skipped because the data was not there")."""

from __future__ import annotations

import pytest

import tests.helpers.machine as machine


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_in_ci_a_missing_dataset_fails(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="no-such-dataset is not on this machine.*CI=true"):
        machine.shared_path("no-such-dataset")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_outside_ci_a_missing_dataset_skips_with_its_reason(value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="no-such-dataset is not on this machine"):
        machine.shared_path("no-such-dataset")


def test_a_present_dataset_folder_is_returned(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cells").mkdir()
    monkeypatch.setattr(machine, "SHARED_DATASETS", tmp_path)
    monkeypatch.setenv("CI", "true")
    assert machine.shared_path("cells") == tmp_path / "cells"


def test_missing_chromium_fails_in_ci_and_skips_elsewhere(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed"):
        machine.require_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        machine.require_chromium()


def test_unreachable_postgres_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "POSTGRES_URL", "postgresql://postgres@127.0.0.1:1/test")  # nothing listens on port 1
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no PostgreSQL answers at postgresql://postgres@127.0.0.1:1/test"):
        next(machine.postgres_database())
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL answers"):
        next(machine.postgres_database())
