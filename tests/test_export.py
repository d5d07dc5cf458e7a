"""Exports: bundle, ONNX (checked with onnxruntime) and TorchScript, from a model and from a trial."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

import core.deploy.export as export
from core.contract import StudyAttr, TrialAttr
from core.deploy.export import ExportError, check_formats, export_model, export_onnx, export_trial, load_model, trial_bundle
from core.modeling.build import build_model
from core.modeling.bundle import CONFIG_FILE, WEIGHTS_FILE, BundleConfig, save_bundle
from core.modeling.config import ModelConfig
from tests.conftest import shared_path

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
    return BundleConfig(model=model.to_dict(), image_size=SIZE, channels=model.in_channels, classes=("background", "lung"))


@pytest.mark.parametrize("config", [UNET, ModelConfig("Unet", 1, 2, encoder="resnet18", encoder_depth=3)], ids=["ClassicUNet", "Unet-resnet18"])
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
        scripted = export.load_torchscript(report.folder / export.TORCHSCRIPT_FILE)
        assert torch.allclose(scripted(images[:2]), reference, atol=1e-4)


def test_onnx_has_the_pinned_opset_and_a_dynamic_batch_axis(images: torch.Tensor, tmp_path: Path) -> None:
    import onnx

    exported = export_onnx(build_model(UNET).eval(), images, tmp_path / "m.onnx")
    graph = onnx.load(str(exported.path))
    assert graph.opset_import[0].version == export.ONNX_OPSET
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_a_mismatching_export_is_reported_and_removed(images: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "ATOL", -1.0)  # no output can pass: the check must then fail the export
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="export failed: max abs diff"):
        export_onnx(build_model(UNET).eval(), images, path)
    assert not path.exists()


class _Shifted:
    """An onnxruntime session whose first output is off by ``delta`` in one pixel of one image."""

    def __init__(self, session: object, delta: float) -> None:
        self.session, self.delta = session, delta

    def run(self, names, feed):
        outputs = self.session.run(names, feed)
        outputs[0] = outputs[0].copy()
        outputs[0][-1, 0, 5, 7] += self.delta
        return outputs


@pytest.mark.parametrize("delta", [0.5, 1e-2])
def test_onnx_output_that_differs_from_pytorch_fails_the_export(delta: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parity check compares onnxruntime's output with PyTorch's, on every image of the sample."""
    import onnxruntime

    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *args, **kwargs: _Shifted(real(*args, **kwargs), delta))
    torch.manual_seed(0)
    sample = torch.rand(3, 1, SIZE, SIZE)
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=f"ONNX export failed: max abs diff {delta:.3g} against PyTorch"):
        export_onnx(build_model(UNET).eval(), sample, path)
    assert not path.exists()
    # the same export with an honest onnxruntime passes: the failure above is the injected difference
    monkeypatch.setattr(onnxruntime, "InferenceSession", real)
    assert export_onnx(build_model(UNET).eval(), sample, path).max_abs_diff <= export.ATOL


def test_bad_format_names_list_the_valid_ones() -> None:
    assert check_formats(["all"]) == ("bundle", "onnx", "torchscript")
    with pytest.raises(ExportError, match="valid: \\['bundle', 'onnx', 'torchscript', 'all'\\]"):
        check_formats(["pickle"])


def _study_with_trials(tmp_path: Path, images: torch.Tensor) -> tuple[optuna.Study, optuna.artifacts.FileSystemArtifactStore, torch.nn.Module]:
    """A study whose trial 1 (the best) stored a bundle and which stored preview images."""
    (tmp_path / "artifacts").mkdir()
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path / "artifacts"))
    study = optuna.create_study(study_name="lungs", direction="maximize")
    model = build_model(UNET).eval()
    folder = save_bundle(model, bundle_config(UNET), tmp_path / "bundle")
    upload = lambda path: optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)
    artifacts = {"weights": upload(folder / WEIGHTS_FILE), "config": upload(folder / CONFIG_FILE)}
    np.savez(tmp_path / "preview.npz", stems=np.array(["a", "b", "c"]), images=(images * 255).round().byte().numpy(),
             masks=np.zeros((3, SIZE, SIZE), np.uint8))
    study.set_user_attr(StudyAttr.PREVIEW_ARTIFACT, upload(tmp_path / "preview.npz"))
    study.add_trial(optuna.trial.create_trial(value=0.5))  # no artifacts
    study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={TrialAttr.ARTIFACTS: artifacts, TrialAttr.MODEL_CONFIG: UNET.to_dict()}))
    return study, store, model


def test_export_trial_writes_the_best_trial_with_a_card(images: torch.Tensor, tmp_path: Path) -> None:
    study, store, model = _study_with_trials(tmp_path, images)
    report = export_trial(study, None, store, tmp_path / "out", ["bundle", "onnx"])

    assert report.folder == tmp_path / "out" / "lungs-trial1"
    assert sorted(p.name for p in report.folder.iterdir()) == sorted(["MODEL_CARD.md", CONFIG_FILE, WEIGHTS_FILE, export.ONNX_FILE])
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
    with pytest.raises(ExportError, match="trial #0 .* stored no weights or config"):
        trial_bundle(study, 0, store, tmp_path / "out")


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
    from tests.conftest import copy_pairs, shared_dataset

    source = copy_pairs(shared_dataset("chest_xray_lung_shenzhen"), tmp_path / "src", 24, every=20)
    ingest_dataset(source, "lungs", workspace.datasets_dir)
    spec = spec_from_dict({
        "name": "cli", "dataset": "lungs", "image_size": 64, "preview_count": 2,
        "budget": {"n_trials": 1, "max_epochs": 2}, "sampler": "random", "pruner": "none",
        "search_space": {"architecture": "ClassicUNet", "unet_start_filters": 8, "unet_depth": 2,
                         "lr": 3e-3, "batch_size": 8, "epochs": 2, "loss": "dice_bce"},
    })
    run_study(spec, workspace, device="cpu")

    out = tmp_path / "exported"
    assert main(["export", "--study", "cli", "--format", "all", "--out", str(out)]) == 0
    folder = out / "cli-trial0"
    assert {p.name for p in folder.iterdir()} >= {WEIGHTS_FILE, CONFIG_FILE, export.ONNX_FILE, export.TORCHSCRIPT_FILE, "MODEL_CARD.md"}
    assert "validation images" in capsys.readouterr().out

    assert main(["compress", "--study", "cli", "--trial", "0", "--method", "prune", "--sparsity", "0.6", "--steps", "4", "--lr", "1e-4"]) == 0
    assert "pruned 60% global" in capsys.readouterr().out

    study = optuna.load_study(study_name="cli", storage=open_storage(workspace.db_url))
    [variant] = list_variants(study, 0)
    assert variant["params"]["sparsity"] == 0.6 and set(variant["artifacts"]) == {"weights", "config"}
    loaded, _ = load_model(download_variant(variant, open_artifact_store(workspace), tmp_path / "v"))
    assert sparsity(loaded) == pytest.approx(0.6, abs=0.002)
