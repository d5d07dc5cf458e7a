"""The time-aware planner: sizing against its own estimator, both tasks, both device profiles,
pretrained weights from a cache made here, the plain default queued first, and ``plan`` -> ``tune``."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import pytest

from core.search.auto import (
    AUGMENTATION_OFF,
    BUDGET_MARGIN,
    DEFAULT_TRIALS,
    MIN_TRIALS,
    SEARCH_IMAGES_SEEN,
    Fingerprint,
    model_images,
    plan,
)
from core.search.cost import PROFILES, estimate_spec, profile_for, study_estimate
from core.search.validation import SpecError, spec_from_dict
from core.settings import Settings
from tests.helpers.fingerprints import segmentation


def classification(counts: tuple[int, ...], side: int = 256, channels: int = 3) -> Fingerprint:
    return Fingerprint(
        count=sum(counts),
        channels=channels,
        bit_depth=8,
        median_height=side,
        median_width=side,
        num_classes=len(counts),
        foreground_median=0.0,
        empty_fraction=0.0,
        class_fractions=(),
        task="classification",
        class_counts=counts,
    )


CASES = {
    "segmentation-small": segmentation(120),
    "segmentation-large": segmentation(5000),
    "classification-small": classification((90, 60)),
    "classification-large": classification((3000, 2500)),
}


@pytest.mark.parametrize("kind", ["cpu", "cuda"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_plan_fits_its_budget_by_its_own_estimate_and_uses_it(kind: str, case: str) -> None:
    fp = CASES[case]
    profile = PROFILES[kind]
    auto = plan(fp, dataset="d", device=kind)
    spec = spec_from_dict(auto.spec)
    assert auto.budget_s == profile.default_hours * 3600 and auto.fits
    train, val = model_images(fp.count, spec.folds)
    again = estimate_spec(spec, profile, train=train, val=val)  # the estimator, read from the written spec
    assert again.total_s == pytest.approx(auto.estimate.total_s) and again.folds == spec.folds
    assert spec.budget.n_trials >= MIN_TRIALS
    # the budget is used (less the margin): one more trial would not fit, unless the plan asks for the most trials
    trials = spec.budget.n_trials
    one_more = dataclasses.replace(spec, budget=dataclasses.replace(spec.budget, n_trials=trials + 1))
    fill = auto.budget_s * (1 - BUDGET_MARGIN)
    assert trials == DEFAULT_TRIALS or estimate_spec(one_more, profile, train=train, val=val).total_s > fill
    assert any("estimated study total" in reason for reason in auto.reasons)
    assert any(f"time budget {profile.default_hours:.1f} h on the {profile.label}" in reason for reason in auto.reasons)


def test_a_short_cpu_budget_gets_the_plain_default_and_a_long_gpu_one_a_search() -> None:
    fp = segmentation(1000, channels=3)
    short = plan(fp, dataset="polyps", device="cpu", hours=40 / 60)
    space = short.spec["search_space"]
    assert space["architecture"] == "Unet" and space["encoder"] == "resnet18"  # no epochs for U-Net++ to catch up
    assert "aug_rotate" not in space or max(space["aug_rotate"]["choices"]) <= 15  # light or moderate augmentation only
    assert short.spec["pruner"] == "none" and short.spec["image_size"] < 256 and short.fits
    assert any("image side lowered from 256 px" in r for r in short.reasons)
    long = plan(fp, dataset="polyps", device="cuda")
    assert len(long.spec["search_space"]["architecture"]["choices"]) == 3 and long.spec["pruner"] == "hyperband"
    assert long.spec["search_space"]["aug_rotate"] == {
        "choices": [0.0, 45.0]
    }  # the colour set's full augmentation: the epochs are there
    assert long.spec["image_size"] == 512 and long.spec["budget"]["n_trials"] == 30


def test_the_first_trial_is_the_plain_default_and_fits_the_space() -> None:
    for auto in (
        plan(segmentation(300, channels=3, foreground=0.02), dataset="d", device="cuda"),
        plan(segmentation(300), dataset="d", device="cpu"),
    ):
        spec = spec_from_dict(auto.spec)
        (first,) = spec.first_trials
        assert (
            first["optimizer"] == "adam"
            and first["lr"] == 1e-3
            and first["loss"] == "dice_bce"
            and first["weight_decay"] == 0.0
        )
        for name, value in first.items():
            assert spec.search_space[name].admits(value)
        assert all(
            first.get(name, off) == off for name, off in AUGMENTATION_OFF.items()
        )  # trained without augmentation
        for name in ("architecture", "encoder"):  # tuned: the default is named; fixed: it is the only value
            dimension = spec.search_space[name]
            assert first.get(name, dimension.value) == {"architecture": "Unet", "encoder": "resnet18"}[name]


def test_a_search_only_where_its_trials_train_long_enough() -> None:
    """Four under-trained trials lost to one long default (bench: liver at 30 CPU-minutes); a longer budget searches
    with trials that each see at least SEARCH_IMAGES_SEEN images."""
    fp = segmentation(560, side=512)  # Shenzhen-sized
    train, _ = model_images(fp.count, 1)
    bench_cpu = profile_for("cpu", megapixels_per_s=0.083)  # as the bench timed one thread
    short = spec_from_dict(plan(fp, dataset="d", device="cpu", hours=0.5, profile=bench_cpu).spec)
    assert short.budget.n_trials == 1 and short.budget.max_epochs * train > 2 * SEARCH_IMAGES_SEEN
    assert short.search_space["architecture"].value == "Unet" and short.first_trials[0]["lr"] == 1e-3
    long = spec_from_dict(plan(fp, dataset="d", device="cpu", hours=3, profile=bench_cpu).spec)
    needed = min(30, math.ceil(SEARCH_IMAGES_SEEN / train))  # a mid-sized set wants at most 30 epochs a trial
    assert long.budget.n_trials >= MIN_TRIALS and long.budget.max_epochs >= needed
    # a large set sees that many images in a few epochs: it still searches at the old ten-epoch floor
    large = spec_from_dict(plan(segmentation(20_000, side=512), dataset="d", device="cuda").spec)
    assert large.budget.n_trials >= MIN_TRIALS and large.budget.max_epochs >= 10


def test_an_impossible_budget_is_said_so() -> None:
    auto = plan(segmentation(50_000, side=1024), dataset="huge", device="cpu", hours=0.05)
    assert not auto.fits and auto.spec["budget"]["n_trials"] == 1 and auto.spec["budget"]["max_epochs"] == 1
    assert any(r.startswith("warning: even this smallest plan") for r in auto.reasons)


def test_a_fixed_trial_count_trades_epochs_and_side() -> None:
    few = plan(segmentation(800), dataset="d", device="cpu", n_trials=4)
    many = plan(segmentation(800), dataset="d", device="cpu", n_trials=20)
    assert few.spec["budget"]["n_trials"] == 4 and many.spec["budget"]["n_trials"] == 20
    assert (many.spec["image_size"], many.spec["budget"]["max_epochs"]) < (
        few.spec["image_size"],
        few.spec["budget"]["max_epochs"],
    )
    assert few.fits and many.fits


# --- classification ---------------------------------------------------------------------------


def test_classification_plan_from_the_fingerprint() -> None:
    imbalanced = plan(classification((400, 40)), dataset="c", device="cpu")
    spec = spec_from_dict(imbalanced.spec)
    assert spec.objectives[0].metric == "val_balanced_accuracy" and spec.cv is not None and spec.cv.folds == 3
    assert spec.search_space["loss"].choices == ("cross_entropy", "focal")
    assert (
        spec.search_space["head_dropout"].kind == "float"
        and "ResNet18" in spec.search_space["architecture"].candidate_values()
    )
    text = "\n".join(imbalanced.reasons)
    assert "imbalanced (rarest/commonest = 0.10)" in text and "3-fold cross-validation" in text and "x 3 folds" in text
    assert spec.first_trials[0]["loss"] == "cross_entropy" and spec.image_size <= 128  # a CPU trains classifiers small
    balanced = spec_from_dict(plan(classification((3000, 2800)), dataset="c", device="cuda").spec)
    assert balanced.search_space["loss"].value == "cross_entropy" and balanced.cv is None and balanced.image_size == 224


def test_cross_validation_folds_are_counted() -> None:
    profile = PROFILES["cpu"]
    one = study_estimate(profile, side=128, train=100, val=30, cost=1.0, epochs=10, n_trials=4)
    three = study_estimate(profile, side=128, train=100, val=30, cost=1.0, epochs=10, n_trials=4, folds=3)
    assert three.trial_s == pytest.approx(
        3 * one.trial_s
    ) and three.total_s - profile.study_overhead_s == pytest.approx(3 * (one.total_s - profile.study_overhead_s))


def test_the_probe_counts_every_fold(workspace: Settings) -> None:
    from core.training.estimate import estimate_trial_cost, study_cost
    from tests.helpers.classification_sets import write_bars

    write_bars(workspace.datasets_dir, "bars", 24)
    data = {
        "name": "s",
        "dataset": "bars",
        "task": "classification",
        "image_size": 64,
        "budget": {"n_trials": 2, "max_epochs": 2},
        "search_space": {"architecture": "MobileNetV2", "batch_size": 4, "epochs": 2},
    }
    holdout = estimate_trial_cost(spec_from_dict(data), workspace)
    folded = estimate_trial_cost(spec_from_dict({**data, "cv": {"folds": 3}}), workspace)
    assert holdout.folds == 1 and folded.folds == 3
    assert folded.seconds_per_trial == pytest.approx(folded.seconds_per_epoch * 2 * 3)
    assert study_cost(spec_from_dict({**data, "cv": {"folds": 3}}), workspace).folds == 3


# --- pretrained weights ---------------------------------------------------------------------------


def test_cached_classifier_weights_are_proposed_and_missing_ones_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    import torchvision

    from core.modeling.classifiers import BACKBONES, weights_file
    from core.modeling.pretrained import cached

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fp = classification((60, 50))
    missing = plan(fp, dataset="c", device="cpu", pretrained=cached(["ResNet18", "MobileNetV2"]))
    assert "encoder_weights" not in missing.spec["search_space"]
    assert any(
        "python -m core weights fetch ResNet18" in r and str(tmp_path / "torch" / "hub" / "checkpoints") in r
        for r in missing.reasons
    )
    path = weights_file(BACKBONES["ResNet18"])  # weights made here, where torch's cache keeps them
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    auto = plan(fp, dataset="c", device="cpu", pretrained=cached(["ResNet18", "MobileNetV2"]))
    spec = spec_from_dict(auto.spec)
    assert spec.search_space["encoder_weights"].value == "imagenet" and spec.search_space[
        "architecture"
    ].candidate_values() == ["ResNet18"]
    assert any("encoder_weights imagenet" in r and "cached here" in r for r in auto.reasons)
    from core.modeling.build import build_model
    from core.modeling.config import ModelConfig

    build_model(ModelConfig("ResNet18", 3, 2, encoder_weights="imagenet"))  # the trial loads them offline


def test_cached_smp_encoder_weights_are_found_in_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from core.modeling.pretrained import _smp_settings, is_cached

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert not is_cached("resnet18")
    settings = _smp_settings("resnet18")
    snapshot = (
        tmp_path / "hub" / ("models--" + settings["repo_id"].replace("/", "--")) / "snapshots" / settings["revision"]
    )
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"made in the test")
    assert is_cached("resnet18") and not is_cached("resnet34")
    auto = plan(segmentation(150, channels=3), dataset="polyps", device="cpu", pretrained=frozenset({"resnet18"}))
    assert auto.spec["search_space"]["encoder_weights"] == "imagenet"
    grey = plan(segmentation(150, channels=1), dataset="ct", device="cpu", pretrained=frozenset({"resnet18"}))
    assert "encoder_weights" not in grey.spec["search_space"]  # only RGB sets: ImageNet is colour photographs


def test_weights_command_lists_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "ResNet18" in out and "missing" in out and str(tmp_path / "torch") in out
    assert main(["weights", "fetch", "no-such-encoder"]) == 2
    assert "unknown encoder with ImageNet weights 'no-such-encoder'" in capsys.readouterr().err


# --- the spec's first trials ------------------------------------------------------------------------


def test_first_trials_must_name_tuned_values() -> None:
    base = {
        "name": "s",
        "dataset": "d",
        "search_space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "loss": "dice"},
    }
    assert spec_from_dict({**base, "first_trials": [{"lr": 1e-3}]}).first_trials == ({"lr": 1e-3},)
    with pytest.raises(SpecError) as error:
        spec_from_dict({**base, "first_trials": [{"lr": 1.0, "loss": "dice"}]})
    assert set(error.value.problems) == {"first_trials[0].lr", "first_trials[0].loss"}
    assert "outside search_space.lr" in error.value.problems["first_trials[0].lr"]
    with pytest.raises(SpecError, match="list of"):
        spec_from_dict({**base, "first_trials": {"lr": 1e-3}})


# --- plan -> tune: the measured total against the estimate --------------------------------------------


@pytest.mark.slow
def test_plan_then_tune_takes_about_the_estimated_time(
    workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import optuna

    from core.cli import main
    from core.data.demo import create_demo_dataset
    from core.runtime.storage import open_storage

    create_demo_dataset(workspace.datasets_dir, count=12, size=64)
    out = tmp_path / "spec.json"
    assert (
        main(
            [
                "plan",
                "--dataset",
                "demo-cells",
                "--device",
                "cpu",
                "--hours",
                "0.01",
                "--trials",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "estimated study total: " in printed and "python -m core submit --spec" in printed
    data = json.loads(out.read_text())
    assert data["image_size"] == 64 and data["budget"]["n_trials"] == 2 and data["first_trials"]
    data["budget"]["max_epochs"] = min(
        2, data["budget"]["max_epochs"]
    )  # keep the test tiny (the estimate is rescaled below)
    data["search_space"]["epochs"] = data["budget"]["max_epochs"]
    out.write_text(json.dumps(data))
    spec = spec_from_dict(data)
    from core.training.estimate import measured_profile, study_cost

    expected_s = study_cost(spec, workspace, measured_profile("cpu", side=64, channels=spec.channels or 3)).total_s
    start = time.perf_counter()
    assert main(["tune", "--spec", str(out), "--device", "cpu"]) == 0
    measured_s = time.perf_counter() - start
    assert expected_s / 2 <= measured_s <= expected_s * 2, (measured_s, expected_s)
    print(f"plan -> tune: measured {measured_s:.1f} s, estimated {expected_s:.1f} s")
    study = optuna.load_study(study_name=spec.name, storage=open_storage(workspace.db_url))
    first = study.trials[0]
    assert all(
        first.params[name] == value for name, value in spec.first_trials[0].items()
    )  # the plain default ran first


def test_plan_refuses_bad_arguments(workspace: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import main

    assert main(["plan", "--dataset", "nope", "--hours", "-1", "--out", str(tmp_path / "s.json")]) == 2
    assert "--hours must be a positive number" in capsys.readouterr().err
    assert (
        main(["plan", "--dataset", "nope", "--no-measure", "--device", "cpu", "--out", str(tmp_path / "s.json")]) == 2
    )
    assert "nope" in capsys.readouterr().err
    assert main(["plan", "--dataset", "nope", "--device", "gpu", "--out", str(tmp_path / "s.json")]) == 2
    assert "--device must be cpu, cuda or cuda:N, got 'gpu'" in capsys.readouterr().err


def test_plan_for_a_gpu_elsewhere_uses_the_table(
    workspace: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import core.runtime.launcher
    from core.cli import main
    from core.data.demo import create_demo_dataset

    monkeypatch.setattr(core.runtime.launcher, "visible_gpu_ids", lambda: [])
    create_demo_dataset(workspace.datasets_dir, count=12, size=64)
    out = tmp_path / "gpu.json"
    assert main(["plan", "--dataset", "demo-cells", "--device", "cuda", "--out", str(out)]) == 2
    assert "add --no-measure" in capsys.readouterr().err and not out.exists()
    assert main(["plan", "--dataset", "demo-cells", "--device", "cuda", "--no-measure", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "time budget 12.0 h on the GPU" in printed and "(budget 720 min)" in printed
    assert spec_from_dict(json.loads(out.read_text())).first_trials


def test_a_measured_profile_replaces_the_table_speed() -> None:
    profile = profile_for("cpu", megapixels_per_s=1.5)
    assert profile.measured and profile.megapixels_per_s == 1.5 and profile.default_hours == 2.0
    auto = plan(segmentation(300), dataset="d", device="cpu", profile=profile)
    assert any("1.5 megapixels/s measured on this machine" in r for r in auto.reasons)


def test_prepare_queues_the_first_trials_once(workspace: Settings) -> None:
    import optuna

    from core.data.demo import create_demo_dataset
    from core.runtime.tuning import prepare_study

    create_demo_dataset(workspace.datasets_dir, count=10, size=64)
    spec = spec_from_dict(
        {
            "name": "queued",
            "dataset": "demo-cells",
            "image_size": 64,
            "budget": {"n_trials": 3, "max_epochs": 1},
            "search_space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "loss": {"choices": ["dice", "dice_bce"]}},
            "first_trials": [{"lr": 1e-3, "loss": "dice_bce"}],
        }
    )
    study = prepare_study(spec, workspace)
    prepare_study(spec, workspace)  # a resumed or extended job prepares again: nothing queued twice
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"lr": 1e-3, "loss": "dice_bce"}]


def test_a_budget_too_short_for_a_search_trains_the_plain_default_longer() -> None:
    slow = profile_for("cpu", megapixels_per_s=0.007)  # a crowded CPU, as timed by the bench
    auto = plan(segmentation(120), dataset="liver", device="cpu", hours=3 / 60, profile=slow)
    spec = spec_from_dict(auto.spec)
    assert spec.budget.n_trials < MIN_TRIALS and spec.budget.max_epochs > 1 and auto.fits
    assert spec.search_space["architecture"].value == "Unet" and spec.pruner == "none"
    assert any("the plain default gets the epochs instead of a search" in r for r in auto.reasons)
    first = spec.first_trials[0]  # exactly the plain default: constant learning rate, no augmentation, no early stop
    assert first["scheduler"] == "none" and first["aug_hflip"] is False and spec.patience == spec.budget.max_epochs
    assert all(
        first[name] == off
        for name, off in AUGMENTATION_OFF.items()
        if spec.search_space.get(name, None) is not None and spec.search_space[name].kind == "choice"
    )
    one_more = study_estimate(
        slow,
        side=spec.image_size,
        train=model_images(120, 1)[0],
        val=model_images(120, 1)[1],
        cost=1.0,
        epochs=spec.budget.max_epochs + 1,
        n_trials=spec.budget.n_trials,
    )
    assert one_more.total_s > auto.budget_s  # every epoch the budget buys is used
