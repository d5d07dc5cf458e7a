"""Warm start (seed with an earlier study's top-k) and narrowing around the best: core, runtime and CLI."""

from __future__ import annotations

import argparse

import optuna
import pytest
from optuna.trial import TrialState

from core.contract import StudyAttr
from core.data.demo import create_demo_dataset
from core.errors import SegTuneError
from core.runtime.reuse import narrowed_spec, seed_from_study, studies_on_dataset
from core.runtime.storage import open_storage
from core.search.space import ParamSpec
from core.search.validation import spec_from_dict
from core.search.warm_start import fit_to_space, narrow_spec, top_configurations
from core.settings import Settings
from tests.helpers.reuse_study import SPACE, earlier_study, spec


def test_top_configurations_are_the_best_complete_trials_best_first() -> None:
    study = earlier_study(optuna.storages.InMemoryStorage())
    assert [c["unet_start_filters"] for c in top_configurations(study, 3)] == [32, 16, 64]
    assert len(top_configurations(study, 50)) == 4
    with pytest.raises(SegTuneError, match="at least 1"):
        top_configurations(study, 0)


def test_values_outside_the_new_space_are_left_to_the_sampler() -> None:
    narrower = spec(
        "new",
        space={
            **SPACE,
            "optimizer": {"choices": ["adam", "adamw"]},
            "lr": {"low": 1e-4, "high": 1e-2, "log": True},
            "unet_start_filters": 16,
        },
    )
    assert fit_to_space({"unet_start_filters": 32, "optimizer": "sgd", "lr": 1e-3, "gone": 1}, narrower) == {"lr": 1e-3}
    assert fit_to_space({"optimizer": "adam", "lr": 0.5}, narrower) == {"optimizer": "adam"}


def test_narrowing_shrinks_ranges_around_the_best_and_keeps_the_top_choices() -> None:
    top = [
        {"unet_start_filters": 32, "optimizer": "adam", "lr": 1e-3},
        {"unet_start_filters": 16, "optimizer": "adam", "lr": 3e-3},
    ]
    narrowed = narrow_spec(spec("earlier"), top, name="earlier-narrow")
    filters, lr = narrowed.search_space["unet_start_filters"], narrowed.search_space["lr"]
    assert narrowed.name == "earlier-narrow" and "earlier" in narrowed.description
    assert narrowed.search_space["optimizer"] == ParamSpec.fixed("adam")  # the only optimizer of the top trials
    assert (
        4 <= filters.low <= 32 <= filters.high <= 64
        and (filters.high - filters.low) <= 0.25 * 60 + 8
        and filters.low % 4 == 0
    )
    assert lr.log and lr.low < 1e-3 < lr.high and lr.high / lr.low == pytest.approx(10 ** (0.25 * 4), rel=1e-6)
    spec_from_dict(narrowed.to_dict())  # still a valid spec
    three = narrow_spec(spec("earlier"), [*top, {"optimizer": "sgd"}], name="n")
    assert three.search_space["optimizer"].choices == ("adam", "sgd")
    with pytest.raises(SegTuneError, match="no complete trial"):
        narrow_spec(spec("earlier"), [], name="n")


@pytest.fixture
def demo(workspace: Settings) -> Settings:
    create_demo_dataset(workspace.datasets_dir, count=12, size=64)
    return workspace


def test_warm_start_queues_the_best_configurations_first(demo: Settings) -> None:
    earlier_study(open_storage(demo.db_url))
    assert studies_on_dataset(demo, "demo-cells") == ["earlier"]
    new = spec("seeded")
    assert seed_from_study(demo, new, "earlier", top_k=2) == 2
    study = optuna.load_study(study_name="seeded", storage=open_storage(demo.db_url))
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"]["unet_start_filters"] for t in waiting] == [32, 16]
    assert study.user_attrs[StudyAttr.PARENT] == {"study": "earlier", "how": "warm_start", "top_k": 2, "queued": 2}
    first = study.ask()  # the first trial asked for is the best earlier configuration
    assert first.suggest_int("unet_start_filters", 4, 64, step=4) == 32


def test_warm_start_refuses_another_dataset(demo: Settings) -> None:
    earlier_study(open_storage(demo.db_url), dataset="other")
    with pytest.raises(SegTuneError, match="same dataset"):
        seed_from_study(demo, spec("seeded"), "earlier")
    assert "seeded" not in optuna.get_all_study_names(open_storage(demo.db_url))  # nothing created


def test_submit_cli_narrows_and_warm_starts(demo: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    import core.commands.submit as submit
    import core.runtime.launcher

    monkeypatch.setattr(core.runtime.launcher, "launch_workers", lambda settings, job, slots: [])
    earlier_study(open_storage(demo.db_url))
    parser = argparse.ArgumentParser()
    submit.register(parser.add_subparsers())
    args = parser.parse_args(["submit", "--narrow", "earlier", "--top-k", "2", "--devices", "cpu"])
    assert args.func(args) == 0
    study = optuna.load_study(study_name="earlier-narrow", storage=open_storage(demo.db_url))
    assert study.user_attrs[StudyAttr.PARENT]["how"] == "narrowed"
    assert study.user_attrs[StudyAttr.SPEC]["search_space"]["optimizer"] == "adam"
    path = tmp_path / "s.json"
    path.write_text(spec("warm").to_json())
    args = parser.parse_args(
        ["submit", "--spec", str(path), "--warm-start", "earlier", "--top-k", "3", "--devices", "cpu"]
    )
    assert args.func(args) == 0
    assert "queued 3 configuration(s) from earlier" in capsys.readouterr().out
    assert narrowed_spec(demo, "earlier", 1).search_space["unet_start_filters"].kind in ("int", "fixed")
