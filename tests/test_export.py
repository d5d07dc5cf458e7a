"""Exports: bundle, ONNX (checked with onnxruntime) and TorchScript, from a model and from a trial;
and what a downloaded bundle promises: it runs from its unzipped folder without SegTune."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

import core.deploy.export as export
from core.contract import StudyAttr, Task, TrialAttr
from core.deploy.export import ExportError, check_formats, export_model, export_onnx, export_trial
from core.errors import SegTuneError
from core.modeling.architectures import names, task_of
from core.modeling.build import build_model
from core.modeling.bundle import (
    CONFIG_FILE,
    ONNX_FILE,
    PREDICT_SCRIPT,
    SEGTUNE_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
    BundleConfig,
    BundleError,
    load_model,
    load_torchscript,
    save_bundle,
    trial_bundle,
)
from core.modeling.config import ModelConfig
from tests.helpers.machine import shared_dataset, shared_path
from tests.helpers.segmentation import DPT_ENCODER
from tests.helpers.studies import copy_pairs

SIZE = 64
UNET = ModelConfig("ClassicUNet", 1, 2, unet_start_filters=8, unet_depth=3)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Three real chest X-rays at 64 px, float in [0, 1] (three, so the dynamic batch axis is used)."""
    folder = shared_path("chest_xray_lung_shenzhen", "images")
    files = sorted(folder.iterdir())[:3]
    arrays = [np.asarray(Image.open(p).convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR)) for p in files]
    return torch.from_numpy(np.stack(arrays)[:, None]).float() / 255


def bundle_config(model: ModelConfig) -> BundleConfig:
    return BundleConfig(
        model=model.to_dict(), image_size=SIZE, channels=model.in_channels, classes=("background", "lung")
    )


@pytest.mark.parametrize(
    "config",
    [UNET, ModelConfig("Unet", 1, 2, encoder="resnet18", encoder_depth=3)],
    ids=["ClassicUNet", "Unet-resnet18"],
)
def test_every_format_matches_pytorch(config: ModelConfig, images: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(config).eval()
    report = export_model(model, bundle_config(config), tmp_path / "out", ["all"], images)

    assert {f.format for f in report.files} == {"bundle", "onnx", "torchscript"}
    for exported in report.files:
        assert exported.path.is_file()
        if exported.format != "bundle":
            assert exported.max_abs_diff is not None and exported.max_abs_diff <= export.ATOL
    # every written file, loaded back on its own, gives the same logits for a new batch size
    with torch.no_grad():
        reference = model(images[:2])
        bundle_model, _ = load_model(report.folder)
        assert torch.allclose(bundle_model(images[:2]), reference, atol=1e-5)
        scripted = load_torchscript(report.folder / TORCHSCRIPT_FILE)
        assert torch.allclose(scripted(images[:2]), reference, atol=1e-4)


def test_onnx_has_the_pinned_opset_and_a_dynamic_batch_axis(images: torch.Tensor, tmp_path: Path) -> None:
    import onnx

    exported = export_onnx(build_model(UNET).eval(), images, tmp_path / "m.onnx")
    graph = onnx.load(str(exported.path))
    assert graph.opset_import[0].version == export.ONNX_OPSET
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize(("writer", "kind"), [(export_onnx, "ONNX"), (export.export_torchscript, "TorchScript")])
def test_a_mismatching_export_is_reported_and_removed(
    writer, kind: str, images: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "ATOL", -1.0)  # no output can pass: the check must then fail the export
    path = tmp_path / "model.file"
    with pytest.raises(
        ExportError, match=f"^{kind} export failed: max abs diff .* against PyTorch exceeds the tolerance"
    ):
        writer(build_model(UNET).eval(), images, path)
    assert not path.exists()


class _Altered:
    """An onnxruntime session whose first output is passed through ``change``."""

    def __init__(self, session: object, change) -> None:
        self.session, self.change = session, change

    def run(self, names, feed):
        outputs = self.session.run(names, feed)
        outputs[0] = self.change(outputs[0].copy())
        return outputs


def _alter_onnxruntime(monkeypatch: pytest.MonkeyPatch, change) -> None:
    import onnxruntime

    real = onnxruntime.InferenceSession
    monkeypatch.setattr(
        onnxruntime, "InferenceSession", lambda *args, **kwargs: _Altered(real(*args, **kwargs), change)
    )


def _shift(delta: float):
    def change(output: np.ndarray) -> np.ndarray:
        output[-1, 0, 5, 7] += delta  # one pixel of the last image
        return output

    return change


@pytest.mark.parametrize("delta", [0.5, 1e-2])
def test_onnx_output_that_differs_from_pytorch_fails_the_export(
    delta: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parity check compares onnxruntime's output with PyTorch's, on every image of the sample."""
    torch.manual_seed(0)
    sample = torch.rand(3, 1, SIZE, SIZE)
    path = tmp_path / "m.onnx"
    with monkeypatch.context() as patched:
        _alter_onnxruntime(patched, _shift(delta))
        with pytest.raises(ExportError, match=f"ONNX export failed: max abs diff {delta:.3g} against PyTorch"):
            export_onnx(build_model(UNET).eval(), sample, path)
    assert not path.exists()
    # the same export with an honest onnxruntime passes: the failure above is the injected difference
    assert export_onnx(build_model(UNET).eval(), sample, path).max_abs_diff <= export.ATOL


def test_the_parity_tolerance_is_atol_plus_rtol_times_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A constant model (logits exactly 0 and 100): a zero logit may be off by exactly ATOL, a logit
    of 100 by ATOL + 100 RTOL, and no more."""
    model = torch.nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, 100.0]))
    sample = torch.rand(2, 1, SIZE, SIZE)
    for offset, passes in (([export.ATOL, 0.09], True), ([2 * export.ATOL, 0.0], False), ([0.0, 0.2], False)):
        with monkeypatch.context() as patched:
            _alter_onnxruntime(
                patched, lambda output, offset=offset: output + np.array(offset, np.float32).reshape(1, 2, 1, 1)
            )
            if passes:
                assert export_onnx(model, sample, tmp_path / "m.onnx").max_abs_diff == pytest.approx(0.09, abs=1e-5)
            else:
                with pytest.raises(ExportError, match="exceeds the tolerance"):
                    export_onnx(model, sample, tmp_path / "m.onnx")


@pytest.mark.parametrize("int8", [False, True])
def test_an_export_whose_output_has_another_shape_fails_and_is_removed(
    int8: bool, images: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _alter_onnxruntime(monkeypatch, lambda output: output[..., :-1])
    path = tmp_path / "m.onnx"
    with pytest.raises(
        ExportError, match=re.escape("export failed: output shape (3, 1, 64, 63) differs from PyTorch's (3, 1, 64, 64)")
    ):
        export_onnx(build_model(UNET).eval(), images, path, int8=int8)
    assert not path.exists()


def test_torchscript_output_that_differs_from_pytorch_fails_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for ONNX: the file loaded back (here off by 0.01 in one pixel) is what PyTorch is compared with."""
    real = load_torchscript

    def shifted(path: Path):
        scripted = real(path)

        def forward(images: torch.Tensor) -> torch.Tensor:
            output = scripted(images).clone()
            output[-1, 0, 5, 7] += 1e-2
            return output

        return forward

    monkeypatch.setattr(export, "load_torchscript", shifted)
    torch.manual_seed(0)
    sample = torch.rand(3, 1, SIZE, SIZE)
    path = tmp_path / "m.pt"
    with pytest.raises(ExportError, match="TorchScript export failed: max abs diff 0.01 against PyTorch"):
        export.export_torchscript(build_model(UNET).eval(), sample, path)
    assert not path.exists()
    monkeypatch.setattr(export, "load_torchscript", real)
    assert export.export_torchscript(build_model(UNET).eval(), sample, path).max_abs_diff <= export.ATOL


def test_formats_without_the_bundle_write_its_config_beside_them(images: torch.Tensor, tmp_path: Path) -> None:
    """ONNX + TorchScript only, into a new nested folder and then again into the same one: the
    config (what predict needs besides the model) is written, the weights are not."""
    config = bundle_config(UNET)
    folder = tmp_path / "exports" / "lungs"
    for _ in range(2):
        report = export_model(
            build_model(UNET).eval(), config, folder, ["onnx", "torchscript"], images, checked_on="3 chest X-rays"
        )
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [SEGTUNE_FILE, export.ONNX_FILE, PREDICT_SCRIPT, TORCHSCRIPT_FILE]
        )
        assert (folder / SEGTUNE_FILE).read_text(encoding="utf-8") == config.to_json()
        assert [f.format for f in report.files] == ["onnx", "torchscript"] and report.checked_on == "3 chest X-rays"
    assert export_model(build_model(UNET).eval(), config, tmp_path / "plain", ["bundle"], images).checked_on == ""


class _Untraceable(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this layer has no export")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_model_that_cannot_be_exported_fails_clearly_and_leaves_no_file(fmt: str, tmp_path: Path) -> None:
    folder = tmp_path / "new" / "out"
    with pytest.raises(
        ExportError, match=r"^(ONNX|TorchScript) export failed for this model: RuntimeError: this layer has no export"
    ):
        export_model(_Untraceable(), bundle_config(UNET), folder, [fmt], torch.rand(2, 1, SIZE, SIZE))
    assert sorted(p.name for p in folder.iterdir()) == [SEGTUNE_FILE]  # the config only, no half-written model


class _LongError(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("x" * 400)


def test_a_failed_onnx_export_quotes_the_first_300_characters_of_its_cause(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export_onnx(_LongError(), torch.rand(1, 1, SIZE, SIZE), tmp_path / "m.onnx")
    assert str(info.value) == "ONNX export failed for this model: RuntimeError: " + "x" * 300


def test_a_healthy_onnx_export_warns_about_nothing(images: torch.Tensor, tmp_path: Path) -> None:
    """The exporter's deprecation chatter is filtered, and onnxruntime is asked for its CPU provider
    by its exact name (a misspelt provider makes it warn and fall back)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(build_model(UNET).eval(), images, tmp_path / "m.onnx")
    assert [str(warning.message) for warning in caught] == []


@pytest.mark.parametrize("writer", [export_onnx, export.export_torchscript], ids=["onnx", "torchscript"])
def test_each_format_writer_makes_its_folder(writer, tmp_path: Path) -> None:
    path = tmp_path / "not" / "there" / "model.file"
    exported = writer(build_model(UNET).eval(), torch.rand(2, 1, SIZE, SIZE), path)
    assert exported.path == path and path.is_file() and exported.max_abs_diff <= export.ATOL


def test_bad_format_names_list_the_valid_ones() -> None:
    assert check_formats(["all"]) == ("bundle", "onnx", "torchscript")
    with pytest.raises(ExportError, match="valid: \\['bundle', 'onnx', 'torchscript', 'all'\\]"):
        check_formats(["pickle"])


def _study_with_trials(
    tmp_path: Path, images: torch.Tensor, config: ModelConfig = UNET
) -> tuple[optuna.Study, optuna.artifacts.FileSystemArtifactStore, torch.nn.Module]:
    """A study whose trial 1 (the best) stored a bundle (as training does) and which stored preview images."""
    (tmp_path / "artifacts").mkdir()
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path / "artifacts"))
    study = optuna.create_study(study_name="lungs", direction="maximize")
    torch.manual_seed(0)
    model = build_model(config).eval()
    folder = save_bundle(model, bundle_config(config), tmp_path / "bundle")
    upload = lambda path: optuna.artifacts.upload_artifact(
        artifact_store=store, file_path=str(path), study_or_trial=study
    )
    artifacts = {"weights": upload(folder / WEIGHTS_FILE), "config": upload(folder / SEGTUNE_FILE)}
    np.savez(
        tmp_path / "preview.npz",
        stems=np.array(["a", "b", "c"]),
        images=(images * 255).round().byte().numpy(),
        masks=np.zeros((3, SIZE, SIZE), np.uint8),
    )
    study.set_user_attr(StudyAttr.PREVIEW_ARTIFACT, upload(tmp_path / "preview.npz"))
    study.add_trial(optuna.trial.create_trial(value=0.5))  # no artifacts
    study.add_trial(
        optuna.trial.create_trial(
            value=0.9, user_attrs={TrialAttr.ARTIFACTS: artifacts, TrialAttr.MODEL_CONFIG: config.to_dict()}
        )
    )
    return study, store, model


def test_export_trial_writes_the_best_trial_with_a_card(images: torch.Tensor, tmp_path: Path) -> None:
    study, store, model = _study_with_trials(tmp_path, images)
    report = export_trial(study, None, store, tmp_path / "out", ["bundle", "onnx"])

    assert report.folder == tmp_path / "out" / "lungs-trial1"
    # ClassicUNet is SegTune's own: no smp config.json
    assert sorted(p.name for p in report.folder.iterdir()) == sorted(
        ["MODEL_CARD.md", SEGTUNE_FILE, WEIGHTS_FILE, ONNX_FILE, PREDICT_SCRIPT]
    )
    assert "validation images" in report.checked_on
    loaded, config = load_model(report.folder)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    assert config.image_size == SIZE


def test_torchscript_only_export_is_loadable_without_weights(images: torch.Tensor, tmp_path: Path) -> None:
    study, store, model = _study_with_trials(tmp_path, images)
    report = export_trial(study, 1, store, tmp_path / "out", ["torchscript"])
    assert not (report.folder / WEIGHTS_FILE).exists()
    loaded, _ = load_model(report.folder)
    with torch.no_grad():
        assert torch.allclose(loaded(images), model(images), atol=1e-4)


def test_trials_without_weights_cannot_be_exported(images: torch.Tensor, tmp_path: Path) -> None:
    study, store, _ = _study_with_trials(tmp_path, images)
    with pytest.raises(BundleError, match="trial #0 stored no weights or config"):
        trial_bundle(study.trials[0], store, tmp_path / "out")


@pytest.mark.slow
def test_cli_exports_and_compresses_a_tuned_trial(workspace, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A real one-trial study, then `export --format all` and `compress --method prune` on it."""
    from core.cli import main
    from core.data.ingest import ingest_dataset
    from core.deploy.compression.pruning import sparsity
    from core.deploy.compression.variants import download_variant, list_variants
    from core.runtime.storage import open_artifact_store, open_storage
    from core.runtime.tuning import run_study
    from core.search.validation import spec_from_dict

    source = copy_pairs(shared_dataset("chest_xray_lung_shenzhen"), tmp_path / "src", 24, every=20)
    ingest_dataset(source, "lungs", workspace.datasets_dir)
    spec = spec_from_dict(
        {
            "name": "cli",
            "dataset": "lungs",
            "image_size": 64,
            "preview_count": 2,
            "budget": {"n_trials": 1, "max_epochs": 2},
            "sampler": "random",
            "pruner": "none",
            "search_space": {
                "architecture": "ClassicUNet",
                "unet_start_filters": 8,
                "unet_depth": 2,
                "lr": 3e-3,
                "batch_size": 8,
                "epochs": 2,
                "loss": "dice_bce",
            },
        }
    )
    run_study(spec, workspace, device="cpu")

    out = tmp_path / "exported"
    assert main(["export", "--study", "cli", "--format", "all", "--out", str(out)]) == 0
    folder = out / "cli-trial0"
    assert {p.name for p in folder.iterdir()} >= {
        WEIGHTS_FILE,
        SEGTUNE_FILE,
        ONNX_FILE,
        PREDICT_SCRIPT,
        TORCHSCRIPT_FILE,
        "MODEL_CARD.md",
    }
    assert "validation images" in capsys.readouterr().out

    assert (
        main(
            [
                "compress",
                "--study",
                "cli",
                "--trial",
                "0",
                "--method",
                "prune",
                "--sparsity",
                "0.6",
                "--steps",
                "4",
                "--lr",
                "1e-4",
            ]
        )
        == 0
    )
    assert "pruned 60% global" in capsys.readouterr().out

    study = optuna.load_study(study_name="cli", storage=open_storage(workspace.db_url))
    [variant] = list_variants(study, 0)
    assert variant["params"]["sparsity"] == 0.6 and set(variant["artifacts"]) == {"weights", "config"}
    loaded, _ = load_model(download_variant(variant, open_artifact_store(workspace), tmp_path / "v"))
    assert sparsity(loaded) == pytest.approx(0.6, abs=0.002)


# --- the smp layout ---------------------------------------------------------------------------------

SMP_UNET = ModelConfig("Unet", 1, 2, encoder="resnet18", encoder_depth=3)


def test_an_smp_bundle_is_a_standard_smp_folder(images: torch.Tensor, tmp_path: Path) -> None:
    """config.json + model.safetensors load with smp alone; SegTune's metadata lives in segtune.json."""
    import json

    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = build_model(SMP_UNET).eval()
    folder = save_bundle(model, bundle_config(SMP_UNET), tmp_path / "bundle")
    hub = json.loads((folder / CONFIG_FILE).read_text())
    assert hub["_model_class"] == "Unet" and hub["encoder_weights"] is None  # loading never downloads ImageNet weights
    metadata = json.loads((folder / SEGTUNE_FILE).read_text())
    assert (
        metadata["input"]["size"] == [SIZE, SIZE]
        and metadata["input"]["scale"] == 1 / 255
        and metadata["input"]["color"] == "L"
    )
    assert metadata["output"] == {"activation": "sigmoid", "threshold": 0.5, "mask_values": "0/255"}
    with torch.no_grad():
        assert torch.equal(smp.from_pretrained(str(folder)).eval()(images), model(images))
        assert torch.equal(load_model(folder)[0](images), model(images))


def test_bundles_in_the_layout_before_segtune_json_still_load(images: torch.Tensor, tmp_path: Path) -> None:
    """Exported before the smp layout: config.json held SegTune's metadata (version 1, no ``input``)."""
    import json

    torch.manual_seed(0)
    model = build_model(UNET).eval()
    folder = save_bundle(model, bundle_config(UNET), tmp_path / "old")
    old = json.loads((folder / SEGTUNE_FILE).read_text())
    for derived in ("input", "output"):
        del old[derived]
    (folder / SEGTUNE_FILE).unlink()
    (folder / CONFIG_FILE).write_text(json.dumps({**old, "version": 1}))
    loaded, config = load_model(folder)
    assert config.image_size == SIZE and config.version == 1
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    from core.deploy import standalone_predict

    assert standalone_predict.input_spec(standalone_predict.load_config(folder))["size"] == [SIZE, SIZE]
    (folder / CONFIG_FILE).write_text(json.dumps({"_model_class": "Unet"}))  # an smp folder without segtune.json
    with pytest.raises(SegTuneError, match="has no segtune.json"):
        load_model(folder)


# --- ONNX for every model -----------------------------------------------------------------------------


def _smallest_config(architecture: str) -> tuple[ModelConfig, int]:
    from core.modeling.architectures import input_size_problem

    encoder = {"DPT": DPT_ENCODER, "Segformer": "mit_b0"}.get(architecture, "resnet18")
    config = ModelConfig(
        architecture,
        3,
        3,
        encoder=encoder,
        encoder_depth=4 if architecture == "DPT" else 5,
        unet_start_filters=4,
        unet_depth=3,
    )
    size = next(s for s in range(64, 513, 32) if input_size_problem(config, s) is None)
    return config, size


@pytest.mark.slow
@pytest.mark.parametrize("architecture", names())
def test_every_architecture_exports_to_onnx(architecture: str, tmp_path: Path) -> None:
    """Incl. PSPNet / UPerNet (pyramid pooling to sizes that do not divide the map) and DPT (a resizable ViT)."""
    config, size = _smallest_config(architecture)
    torch.manual_seed(0)
    model = build_model(config).eval()
    sample = torch.rand(2, 3, size, size)
    exported = export_onnx(model, sample, tmp_path / ONNX_FILE)
    assert exported.max_abs_diff is not None and exported.max_abs_diff <= export.ATOL + export.RTOL
    assert (tmp_path / PREDICT_SCRIPT).is_file() == (
        task_of(architecture) == Task.SEGMENTATION
    )  # predict.py writes masks


def test_pyramid_pooling_exports_as_exact_matrix_products() -> None:
    from core.deploy.onnx_ready import pool_matrix

    x = torch.rand(2, 3, 8, 5)
    for bins in ((6, 3), (3, 2), (1, 5)):
        pooled = pool_matrix(8, bins[0]) @ x @ pool_matrix(5, bins[1]).T
        assert torch.allclose(pooled, torch.nn.functional.adaptive_avg_pool2d(x, bins), atol=1e-6)


@pytest.fixture(scope="module")
def int8(images: torch.Tensor) -> tuple[object, object]:
    """(an int8 static variant of the seeded ClassicUNet, the data it was calibrated on)."""
    from core.data.tensors import ImageSet
    from core.deploy.compression.config import CompressionConfig, CompressionData
    from core.deploy.compression.methods import compress

    pairs = ImageSet(
        (images * 255).byte().repeat(3, 1, 1, 1), torch.zeros(9, SIZE, SIZE, dtype=torch.uint8), tuple("abcdefghi")
    )
    data = CompressionData(pairs, pairs, None, "binary", 2)
    torch.manual_seed(0)
    return compress(CompressionConfig("ptq", calibration_batches=1), build_model(UNET).eval(), data), data


def test_int8_models_export_to_onnx_checked_on_their_masks(
    int8: tuple, images: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variant, _ = int8
    exported = export_onnx(variant.model, images, tmp_path / ONNX_FILE, int8=True)
    assert (
        exported.format == "onnx"
        and exported.mask_agreement is not None
        and exported.mask_agreement >= export.INT8_AGREEMENT
    )
    assert (
        exported.max_abs_diff is not None and exported.max_abs_diff > 0
    )  # reported, though int8 logits are not held to ATOL
    monkeypatch.setattr(
        export, "INT8_AGREEMENT", 1.01
    )  # no export can pass: the check must fail it and remove the file
    with pytest.raises(ExportError, match="int8 ONNX export failed: its masks match PyTorch's on"):
        export_onnx(variant.model, images, tmp_path / ONNX_FILE, int8=True)
    assert not (tmp_path / ONNX_FILE).exists()


def test_dynamic_int8_exports_through_onnxruntimes_own_quantization(tmp_path: Path) -> None:
    """Dynamic int8 (transformer encoders' Linear layers) has no ONNX export of its own."""
    import onnx

    from core.deploy.compression.config import CompressionConfig
    from core.deploy.compression.methods import compress

    torch.manual_seed(0)
    original = build_model(ModelConfig("Segformer", 3, 2, encoder="mit_b0")).eval()
    variant = compress(CompressionConfig("dynamic"), original, data=None)  # dynamic int8 needs no data
    sample = torch.rand(3, 3, SIZE, SIZE)
    with pytest.raises(ExportError, match="linear_dynamic"):
        export_onnx(variant.model, sample, tmp_path / ONNX_FILE, int8=True)
    exported = export_onnx(variant.model, sample, tmp_path / ONNX_FILE, dynamic_from=original)
    assert exported.mask_agreement is not None and exported.mask_agreement >= export.INT8_AGREEMENT
    assert "MatMulInteger" in {node.op_type for node in onnx.load(str(exported.path)).graph.node}


# --- the downloaded bundle runs without SegTune -------------------------------------------------------

_ISOLATED = """\
import importlib.util, runpy, sys
assert importlib.util.find_spec("core") is None, "SegTune is importable: " + repr(sys.path)
for block in {blocks!r}:
    exec(compile(block, "<card>", "exec"), {{"__name__": "__snippet__"}})
sys.argv = {argv!r}
runpy.run_path("predict.py", run_name="__main__")
"""


def _code_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", markdown, flags=re.S)


def run_without_segtune(folder: Path, python_blocks: list[str], command: str) -> subprocess.CompletedProcess:
    """Run ``python_blocks`` then ``command`` (``python predict.py ...``) in ``folder`` in a process
    that cannot import SegTune: a clean environment, and neither the repository nor its venv's
    editable install on sys.path (checked inside the process)."""
    argv = command.split()[1:]
    script = folder / "_run_card.py"
    script.write_text(_ISOLATED.format(blocks=python_blocks, argv=argv))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(folder), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, script.name], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("config", [UNET, SMP_UNET], ids=["ClassicUNet", "Unet-resnet18"])
def test_the_downloaded_bundle_runs_from_its_folder_without_segtune(
    config: ModelConfig, images: torch.Tensor, tmp_path: Path
) -> None:
    """bundle_zip -> unzip -> the card's bash and Python blocks, run as written, give SegTune's own masks."""
    import io
    import zipfile

    from core.deploy import model_card as cards
    from core.deploy.export import bundle_zip
    from core.deploy.predict import predict_folder

    study, store, _ = _study_with_trials(tmp_path, images, config)
    with zipfile.ZipFile(io.BytesIO(bundle_zip(study, study.trials[1], store))) as archive:
        archive.extractall(tmp_path / "unzipped")
        assert {oct(entry.external_attr >> 16) for entry in archive.infolist()} == {
            "0o100644"
        }  # not 0600: others may read the card
    folder = tmp_path / "unzipped" / "lungs-trial1"
    smp_folder = {CONFIG_FILE} if config.architecture == "Unet" else set()
    assert {p.name for p in folder.iterdir()} == {
        WEIGHTS_FILE,
        SEGTUNE_FILE,
        ONNX_FILE,
        PREDICT_SCRIPT,
        "MODEL_CARD.md",
        *smp_folder,
    }
    (folder / "images").mkdir()
    for index, image in enumerate(images):  # larger than the model's input and not square: resized both ways
        Image.fromarray((image[0].numpy() * 255).astype(np.uint8)).resize((90, 70)).save(
            folder / "images" / f"x{index}.png"
        )
    Image.open(folder / "images" / "x0.png").save(folder / "image.png")

    card = (folder / "MODEL_CARD.md").read_text()
    python_blocks, [command] = (
        [block.rstrip("\n") for block in _code_blocks(card, "python")],
        _code_blocks(card, "bash"),
    )
    assert python_blocks == ([cards.onnx_snippet(), cards.smp_snippet()] if smp_folder else [cards.onnx_snippet()])
    result = run_without_segtune(folder, python_blocks, command.strip())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 mask(s) written" in result.stdout

    reference = predict_folder(folder, folder / "images", tmp_path / "segtune-masks", progress=False)
    assert len(reference.written) == 3
    for path in reference.written:
        ours, theirs = np.asarray(Image.open(path)), np.asarray(Image.open(folder / "masks" / path.name))
        assert ours.shape == (70, 90) and (ours == theirs).mean() >= 0.999, path.name
    assert (np.asarray(Image.open(folder / "mask.png")) == np.asarray(Image.open(reference.written[0]))).mean() >= 0.999


def test_an_int8_variant_download_runs_without_segtune(int8: tuple, images: torch.Tensor, tmp_path: Path) -> None:
    """Stored as TorchScript (as Compress & deploy stores int8 variants), downloaded with model.onnx + predict.py."""
    import io
    import zipfile

    from core.deploy.compression.measure import compare_variants
    from core.deploy.compression.variants import store_variant, variant_zip
    from core.deploy.predict import predict_folder

    variant, data = int8
    study, store, model = _study_with_trials(tmp_path, images)
    report = compare_variants(model, [variant], data, repeats=1)[1]
    store_variant(study, 1, variant, report, bundle_config(UNET), store, images[:1])
    with zipfile.ZipFile(io.BytesIO(variant_zip(study, 1, 1, store))) as archive:
        archive.extractall(tmp_path / "unzipped")
    [folder] = (tmp_path / "unzipped").iterdir()
    assert {p.name for p in folder.iterdir()} == {
        TORCHSCRIPT_FILE,
        SEGTUNE_FILE,
        ONNX_FILE,
        PREDICT_SCRIPT,
        "MODEL_CARD.md",
    }
    assert "int8 static" in (folder / "MODEL_CARD.md").read_text()
    (folder / "images").mkdir()
    for index, image in enumerate(images):
        Image.fromarray((image[0].numpy() * 255).astype(np.uint8)).save(folder / "images" / f"x{index}.png")
    result = run_without_segtune(folder, [], "python predict.py --images images/ --out masks/")
    assert result.returncode == 0 and "3 mask(s) written" in result.stdout, result.stderr[-3000:]
    reference = predict_folder(
        folder, folder / "images", tmp_path / "torch-masks", progress=False
    )  # PyTorch's int8 kernels
    for path in reference.written:
        assert (
            np.asarray(Image.open(path)) == np.asarray(Image.open(folder / "masks" / path.name))
        ).mean() >= export.INT8_AGREEMENT
