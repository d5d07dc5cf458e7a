from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.search.presets import load_preset, preset_names
from core.search.space import HYPERPARAMETERS, ParamSpec
from core.search.validation import SpecError, load_spec, spec_from_dict


def minimal(**overrides: object) -> dict:
    return {"name": "study-1", "dataset": "demo-cells", **overrides}


def test_defaults_round_trip_through_json() -> None:
    spec = spec_from_dict(
        minimal(
            search_space={
                "lr": {"low": 1e-4, "high": 1e-2, "log": True},
                "architecture": {"choices": ["Unet", "ClassicUNet"]},
            }
        )
    )
    again = spec_from_dict(json.loads(spec.to_json()))
    assert again == spec
    assert spec.directions == ["maximize"]
    assert spec.param("lr") == ParamSpec.float_range(1e-4, 1e-2, log=True)
    assert spec.param("optimizer") == ParamSpec.fixed(HYPERPARAMETERS["optimizer"].default)


def test_compile_is_written_only_when_on_and_reads_back() -> None:
    assert "compile" not in spec_from_dict(minimal()).to_dict()  # specs stored before the field compare equal
    spec = spec_from_dict(minimal(compile="reduce-overhead"))
    assert spec.compile == "reduce-overhead" and spec_from_dict(json.loads(spec.to_json())) == spec


def test_every_problem_is_reported_with_its_field_and_the_valid_options() -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(
            minimal(
                sampler="annealing",
                image_size=100,
                search_space={
                    "architecture": {"choices": ["Unet", "UNetX"]},
                    "lr": {"low": 1, "high": 0.1},
                    "colour": 3,
                },
                objectives=[{"metric": "val_accuracy"}],
                budget={"n_trials": "ten"},
            )
        )
    problems = info.value.problems
    assert "tpe" in problems["sampler"] and "annealing" in problems["sampler"]
    assert "multiple of 32" in problems["image_size"]
    assert "UNetX" in problems["search_space.architecture"] and "DeepLabV3Plus" in problems["search_space.architecture"]
    assert "above" in problems["search_space.lr"]
    assert "unknown hyperparameter" in problems["search_space.colour"]
    assert "val_dice" in problems["objectives[0].metric"]
    assert "number" in problems["budget.n_trials"]


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"objectives": ["val_dice", "images_per_s"], "pruner": "median"}, "pruner", "several objectives"),
        ({"sampler": "nsga2"}, "sampler", "several objectives"),
        ({"sampler": "grid", "search_space": {"lr": {"low": 1e-4, "high": 1e-2}}}, "search_space.lr", "grid"),
        ({"search_space": {"encoder": "resnet9000"}}, "search_space.encoder", "resnet34"),
        ({"search_space": {"unet_depth": {"low": 1, "high": 9}}}, "search_space.unet_depth", "2..8"),
        ({"search_space": {"lr": {"low": 0, "high": 1, "log": True}}}, "search_space.lr", "log"),
        ({"split": {"train": 0.9, "val": 0.2, "test": 0.1}}, "split", "sum to 1"),
        ({"split": {"group_pattern": "("}}, "split.group_pattern", "regular expression"),
        ({"budget": {"n_trials": None}}, "budget", "ends"),
        ({"name": "../escape"}, "name", "letters"),
        ({"objectives": ["images_per_s"]}, "pruner", "cannot be pruned"),
        ({"objectives": ["val_dice", "val_dice"], "sampler": "nsga2", "pruner": "none"}, "objectives", "once"),
        ({"preview_count": 0}, "preview_count", "between 1 and 64"),
        ({"compile": "max-autotune"}, "compile", "valid: ['off', 'default', 'reduce-overhead']"),
        ({"compile": True}, "compile", "must be str"),
        ({"seed": -1}, "seed", "from 0 to 4,294,967,295"),
        ({"seed": 2**70}, "seed", "from 0 to 4,294,967,295"),
        ({"seed": 2**32}, "seed", "from 0 to 4,294,967,295"),
    ],
)
def test_rule_violations_name_the_field(overrides: dict, field: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(minimal(**overrides))
    assert words in info.value.problems[field]


def test_dpt_takes_the_vit_encoders_it_needs() -> None:
    spec = spec_from_dict(minimal(search_space={"architecture": "DPT", "encoder": "tu-vit_tiny_patch16_224"}))
    assert spec.param("encoder").value == "tu-vit_tiny_patch16_224"


def test_multi_objective_with_a_multi_objective_sampler_is_valid() -> None:
    spec = spec_from_dict(minimal(objectives=["val_dice", "images_per_s"], sampler="nsga2", pruner="none"))
    assert spec.directions == ["maximize", "maximize"]


def test_yaml_and_json_files_load_and_broken_files_say_why(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("name: s\ndataset: d\nsearch_space:\n  batch_size: {choices: [4, 8]}\n")
    assert load_spec(tmp_path / "s.yaml").param("batch_size").choices == (4, 8)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_spec(tmp_path / "bad.json")
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.json")


def test_the_largest_seed_gives_every_worker_a_sampler() -> None:
    from core.search.samplers import make_sampler

    spec = spec_from_dict(minimal(seed=2**32 - 1, sampler="random"))
    assert make_sampler(spec, worker_index=3) is not None  # seed + index wraps instead of overflowing numpy


def test_spec_files_with_a_byte_order_mark_load(tmp_path: Path) -> None:
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"bom{suffix}"
        path.write_bytes(b"\xef\xbb\xbf" + json.dumps(minimal()).encode())
        assert load_spec(path).name == minimal()["name"]


def test_yaml_aliases_number_keys_and_oversized_files_are_refused_cleanly(tmp_path: Path) -> None:
    (tmp_path / "alias.yaml").write_text("name: &n s\ndataset: *n\n")
    with pytest.raises(SpecError, match=r"aliases \(\*n\) are not allowed"):
        load_spec(tmp_path / "alias.yaml")
    (tmp_path / "keys.yaml").write_text(
        "name: s\ndataset: d\n1: x\nfoo: y\nsplit: {2: 3, bar: 4}\n"
    )  # numbers and names as keys
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "keys.yaml")
    assert "unknown key(s) [1, 'foo']" in info.value.problems["spec"] and "[2, 'bar']" in info.value.problems["split"]
    (tmp_path / "big.json").write_text(" " * (1 << 20) + json.dumps(minimal()))
    with pytest.raises(SpecError, match="big.json is over 1024 KB"):
        load_spec(tmp_path / "big.json")


def test_paper_presets_are_valid_specs() -> None:
    assert {"p1-unet-keras-tuner", "p2-deeplabv3plus-liver", "p3-optimizer-loss-cells", "p5-resnet-unet-mri"} <= set(
        preset_names()
    )
    for name in preset_names():
        spec = load_preset(name, dataset="demo-cells")
        assert spec.dataset == "demo-cells"
    assert load_preset("p1-unet-keras-tuner", "d").param("unet_activation").choices == ("mish", "elu", "lrelu")


@pytest.mark.parametrize(
    ("space", "field", "words"),
    [
        ({"lr": {"low": float("nan"), "high": 1e-2}}, "search_space.lr", "finite"),
        ({"lr": {"low": 1e-4, "high": float("inf")}}, "search_space.lr", "finite"),
        ({"lr": {"low": 1e-4, "high": 1e-2, "step": "0.001"}}, "search_space.lr", "'step' must be a number"),
        ({"lr": {"low": 1e-4, "high": 1e-2, "step": -0.001}}, "search_space.lr", "positive"),
        ({"batch_size": {"low": 1, "high": 8, "step": 0}}, "search_space.batch_size", "positive"),
        ({"batch_size": {"low": 1, "high": 8, "step": 1.5}}, "search_space.batch_size", "whole-number 'step'"),
        ({"batch_size": {"low": 1.5, "high": 8, "type": "int"}}, "search_space.batch_size", "whole-number bounds"),
        ({"batch_size": {"low": 1.5, "high": 8}}, "search_space.batch_size", "integer"),
        ({"lr": {"low": 1e-4, "high": 1e-2, "log": "yes"}}, "search_space.lr", "'log'"),
        ({"aug_rotate": float("nan")}, "search_space.aug_rotate", "finite"),
    ],
)
def test_ranges_optuna_could_not_sample_are_refused(space: dict, field: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(
            json.loads(json.dumps(minimal(search_space=space)))
        )  # NaN/Infinity survive JSON as Python reads it
    assert list(info.value.problems) == [field]  # one message for the field, nothing else
    assert words in info.value.problems[field]


def test_typed_ranges_built_in_code_get_the_same_checks() -> None:
    from core.search.spec import StudySpec
    from core.search.validation import spec_problems

    spec = StudySpec(
        name="s",
        dataset="d",
        search_space={
            "batch_size": ParamSpec(kind="int", low=1, high=8, step=0),
            "lr": ParamSpec(kind="float", low=float("nan"), high=0.1),
        },
    )
    problems = spec_problems(spec)
    assert "positive" in problems["search_space.batch_size"] and "finite" in problems["search_space.lr"]


def test_caps_on_image_size_trials_epochs_and_timeout() -> None:
    from core.search.validation import MAX_EPOCHS, MAX_IMAGE_SIZE, MAX_TRIALS

    with pytest.raises(SpecError) as info:
        spec_from_dict(
            minimal(
                image_size=32_000, budget={"n_trials": 10**9, "max_epochs": MAX_EPOCHS + 1, "timeout_s": float("inf")}
            )
        )
    problems = info.value.problems
    assert str(MAX_IMAGE_SIZE) in problems["image_size"]
    assert f"{MAX_TRIALS:,}" in problems["budget.n_trials"]
    assert "from 1 to" in problems["budget.max_epochs"]
    assert "positive" in problems["budget.timeout_s"]
    assert (
        spec_from_dict(minimal(image_size=MAX_IMAGE_SIZE, budget={"n_trials": MAX_TRIALS})).image_size == MAX_IMAGE_SIZE
    )


def test_nan_split_fractions_are_refused() -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(minimal(split={"train": 0.7, "val": float("nan"), "test": 0.1}))
    assert "finite" in info.value.problems["split"]
