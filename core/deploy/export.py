"""Export a trained model: the bundle (core.modeling.bundle), ONNX and TorchScript, each verified.

A trial's bundle is its stored weights copied out (what was trained, byte for byte) with its
metadata (``segtune.json``, and smp's ``config.json`` for smp architectures). ONNX and TorchScript
files are checked right after writing: the written file is loaded back (onnxruntime /
``torch.jit.load``) and run on real images, and its output must match PyTorch's within
``ATOL + RTOL * |reference|`` (int8 models: the same mask on ``INT8_AGREEMENT`` of the pixels, as
onnxruntime's int8 kernels round differently) or the export fails with :class:`ExportError`.
Next to every ``model.onnx`` goes ``predict.py`` (core/deploy/standalone_predict.py), which runs it
with numpy, Pillow and onnxruntime only.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from core.contract import StudyAttr
from core.deploy.model_card import MODEL_CARD_FILE, bundle_name, model_card
from core.deploy.onnx_ready import adaptive_pooling, portable_copy
from core.errors import SegTuneError
from core.modeling.bundle import (
    CONFIG_FILE,
    ONNX_FILE,
    PREDICT_SCRIPT,
    SEGTUNE_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
    BundleConfig,
    ensemble_bundle,
    ensemble_members,
    load_bundle,
    load_bundle_config,
    load_torchscript,
    save_bundle,
    trial_bundle,
)
from core.results.trials import default_trial, get_trial

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial

ONNX_OPSET = 17  # pinned: onnxruntime >= 1.14 runs it everywhere, and results do not drift with torch
STANDALONE_PREDICT = Path(__file__).with_name("standalone_predict.py")
INPUT_NAME, OUTPUT_NAME = "image", "logits"
# Parity tolerance on logits: float32 kernels of different runtimes differ by ~1e-5 on these nets.
ATOL = 1e-3
RTOL = 1e-3
# int8 exports: onnxruntime's int8 kernels round differently from PyTorch's, so the logits differ by
# a few quantization steps; what must hold is the mask, on all but a few boundary pixels.
INT8_AGREEMENT = 0.99
FORMATS: tuple[str, ...] = ("bundle", "onnx", "torchscript")


class ExportError(SegTuneError):
    """An export could not be written or did not reproduce the PyTorch model's output."""


@dataclass(frozen=True)
class ExportedFile:
    format: str  # one of FORMATS (or "card")
    path: Path
    max_abs_diff: float | None = None  # parity check against PyTorch; None for the bundle itself
    mask_agreement: float | None = None  # int8 ONNX: share of pixels whose class matches PyTorch's


@dataclass
class ExportReport:
    folder: Path
    files: list[ExportedFile] = field(default_factory=list)
    checked_on: str = ""  # what the parity checks ran on ("N real images from ...")


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Validate export format names ("all" means every format)."""
    chosen = tuple(FORMATS) if "all" in formats else tuple(dict.fromkeys(formats))
    unknown = [name for name in chosen if name not in FORMATS]
    if unknown or not chosen:
        raise ExportError(f"unknown export format(s) {unknown or list(formats)}; valid: {[*FORMATS, 'all']}")
    return chosen


# --- parity -------------------------------------------------------------------------------------


def _max_diff(reference: np.ndarray, exported: np.ndarray) -> tuple[float, bool]:
    if reference.shape != exported.shape:
        raise ExportError(f"export failed: output shape {exported.shape} differs from PyTorch's {reference.shape}")
    diff = np.abs(reference - exported)
    return float(diff.max(initial=0.0)), bool(np.all(diff <= ATOL + RTOL * np.abs(reference)))


@contextlib.contextmanager  # this spelling: scripts/mutation_undecorate.py rewrites it so mutmut mutates the body
def _removed_on_failure(path: Path) -> Iterator[None]:
    """Never leave an exported file behind that gives other masks (or shapes) than PyTorch."""
    try:
        yield
    except ExportError:
        path.unlink(missing_ok=True)
        raise


def _verify(kind: str, path: Path, reference: np.ndarray, exported: np.ndarray) -> float:
    with _removed_on_failure(path):
        worst, ok = _max_diff(reference, exported)
        if not ok:
            raise ExportError(
                f"{kind} export failed: max abs diff {worst:.3g} against PyTorch exceeds the tolerance "
                f"(atol {ATOL}, rtol {RTOL})"
            )
    return worst


def _classes(logits: np.ndarray) -> np.ndarray:
    return logits[:, 0] >= 0 if logits.shape[1] == 1 else logits.argmax(axis=1)  # sigmoid >= 0.5, or argmax


def _verify_int8(path: Path, reference: np.ndarray, exported: np.ndarray) -> tuple[float, float]:
    """(max abs diff, mask agreement) of an int8 export; fails below INT8_AGREEMENT."""
    with _removed_on_failure(path):
        worst, _ = _max_diff(reference, exported)
        agreement = float((_classes(reference) == _classes(exported)).mean())
        if agreement < INT8_AGREEMENT:
            raise ExportError(
                f"int8 ONNX export failed: its masks match PyTorch's on {agreement:.1%} of the pixels "
                f"(at least {INT8_AGREEMENT:.0%} needed; max abs diff of the logits {worst:.3g})"
            )
    return worst, agreement


@torch.no_grad()
def _reference(model: nn.Module, sample: torch.Tensor) -> np.ndarray:
    # one image at a time: int8 variants are TorchScript traced on a single image
    return torch.cat([model.eval()(sample[i : i + 1]).float() for i in range(len(sample))]).cpu().numpy()


# --- formats ------------------------------------------------------------------------------------


def _write_onnx(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), adaptive_pooling(ONNX_OPSET):
        # onnxscript (the new exporter's backend) is not a dependency: use the TorchScript-based one
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)  # it traces with torch.jit, deprecated but what it runs on
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            portable_copy(model, sample.shape[-1]),
            (sample[:1],),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def _write_dynamic_int8_onnx(float_model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    """Dynamic int8 (Linear weights int8, activations quantized on the fly): the TorchScript-based
    exporter has no ``quantized::linear_dynamic``, so the float model is exported and onnxruntime
    quantizes its MatMul / Gemm weights the same way."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    float_path = path.with_suffix(".float.onnx")
    try:
        _write_onnx(float_model, sample, float_path)
        quantize_dynamic(
            str(float_path), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
        )
    finally:
        float_path.unlink(missing_ok=True)


def export_onnx(
    model: nn.Module, sample: torch.Tensor, path: Path, *, int8: bool = False, dynamic_from: nn.Module | None = None
) -> ExportedFile:
    """Write ONNX (opset ONNX_OPSET, dynamic batch axis), check it with onnxruntime on ``sample`` and
    put ``predict.py`` next to it (segmentation models). ``int8``: the model is quantized (checked on its masks);
    ``dynamic_from``: ``model`` is this float model with dynamic int8 Linear layers (onnxruntime
    quantizes them, see ``_write_dynamic_int8_onnx``)."""
    import onnxruntime as ort

    model = model.eval().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if dynamic_from is None:
            _write_onnx(model, sample, path)
        else:
            _write_dynamic_int8_onnx(dynamic_from.eval().cpu(), sample, path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        # the whole sample at once, so the dynamic batch axis is exercised too
        output = session.run([OUTPUT_NAME], {INPUT_NAME: sample.numpy()})[0]
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ExportError(f"ONNX export failed for this model: {type(exc).__name__}: {str(exc)[:300]}") from exc
    reference = _reference(model, sample)
    if int8 or dynamic_from is not None:
        worst, agreement = _verify_int8(path, reference, output)
        exported = ExportedFile("onnx", path, worst, agreement)
    else:
        exported = ExportedFile("onnx", path, _verify("ONNX", path, reference, output))
    if output.ndim == 4:  # predict.py writes masks: a classifier's (N, classes) logits are run through SegTune
        shutil.copyfile(STANDALONE_PREDICT, path.with_name(PREDICT_SCRIPT))
    return exported


def trace_torchscript(model: nn.Module, sample: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace (not script): smp models have Python control flow that scripting rejects."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still the portable format
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(model.eval().cpu(), sample[:1], check_trace=False)


def save_torchscript(model: nn.Module, sample: torch.Tensor, path: Path) -> Path:
    """Trace ``model`` on ``sample`` and write it; the file runs without SegTune's code."""
    traced = trace_torchscript(model, sample)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, str(path))
    return path


def export_torchscript(model: nn.Module, sample: torch.Tensor, path: Path) -> ExportedFile:
    """Write a traced TorchScript file, load it back and compare with PyTorch on ``sample``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_torchscript(model, sample, path)
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ExportError(f"TorchScript export failed for this model: {type(exc).__name__}: {exc}") from exc
    with torch.no_grad():
        output = load_torchscript(path)(sample).float().numpy()
    return ExportedFile("torchscript", path, _verify("TorchScript", path, _reference(model, sample), output))


def export_model(
    model: nn.Module,
    config: BundleConfig,
    folder: Path,
    formats: Sequence[str],
    sample: torch.Tensor,
    *,
    checked_on: str = "",
) -> ExportReport:
    """Write ``model`` in every format of ``formats`` into ``folder``; ONNX/TorchScript are verified."""
    chosen = check_formats(formats)
    report = ExportReport(Path(folder), checked_on=checked_on)
    if "bundle" in chosen:
        save_bundle(model, config, report.folder)
        report.files.append(ExportedFile("bundle", report.folder / WEIGHTS_FILE))
    else:
        report.folder.mkdir(parents=True, exist_ok=True)
        (report.folder / SEGTUNE_FILE).write_text(config.to_json(), encoding="utf-8")
    if "onnx" in chosen:
        report.files.append(export_onnx(model, sample, report.folder / ONNX_FILE))
    if "torchscript" in chosen:
        report.files.append(export_torchscript(model, sample, report.folder / TORCHSCRIPT_FILE))
    return report


# --- trials -------------------------------------------------------------------------------------


def preview_images(study: optuna.Study, artifact_store: Any) -> torch.Tensor | None:
    """The study's stored preview images as float (N, C, S, S) in [0, 1], or None when it has none."""
    artifact_id = study.user_attrs.get(StudyAttr.PREVIEW_ARTIFACT)
    if not artifact_id:
        return None
    with artifact_store.open_reader(artifact_id) as reader:
        images = np.load(reader)["images"]
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0) if len(images) else None


def parity_sample(
    study: optuna.Study, artifact_store: Any, config: BundleConfig, count: int = 4
) -> tuple[torch.Tensor, str]:
    """Real images to check exports on (the study's validation previews), else seeded noise."""
    images = preview_images(study, artifact_store)
    if images is not None:
        return images[:count], f"{min(count, len(images))} validation images of study {study.study_name!r}"
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand((count, config.channels, config.image_size, config.image_size), generator=generator)
    return noise, f"{count} random images (study {study.study_name!r} stored no preview images)"


def export_trial(
    study: optuna.Study,
    trial_number: int | None,
    artifact_store: Any,
    out_dir: Path,
    formats: Sequence[str] = ("bundle",),
) -> ExportReport:
    """Export one trial (best when None) into ``out_dir/<study>-trial<N>/`` with its model card."""
    chosen = check_formats(formats)
    trial = default_trial(study) if trial_number is None else get_trial(study, trial_number)
    folder = Path(out_dir) / bundle_name(study, trial)
    trial_bundle(trial, artifact_store, folder)
    model, config = load_bundle(folder)
    sample, checked_on = parity_sample(study, artifact_store, config)
    report = ExportReport(folder, [ExportedFile("bundle", folder / WEIGHTS_FILE)], checked_on)
    for name, writer, file_name in (
        ("onnx", export_onnx, ONNX_FILE),
        ("torchscript", export_torchscript, TORCHSCRIPT_FILE),
    ):
        if name in chosen:
            report.files.append(writer(model, sample, folder / file_name))
    if "bundle" not in chosen:  # the downloaded weights were only the source of the other formats
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            (folder / name).unlink(missing_ok=True)
        report.files.pop(0)
    card = folder / MODEL_CARD_FILE
    card.write_text(model_card(study, trial, shipped(folder)), encoding="utf-8")
    report.files.append(ExportedFile("card", card))
    return report


def export_ensemble(
    study: optuna.Study,
    trial_number: int | None,
    artifact_store: Any,
    out_dir: Path,
    formats: Sequence[str] = ("bundle", "onnx"),
) -> ExportReport:
    """A cross-validated trial's k fold models as one folder ``out_dir/<study>-trial<N>-ensemble/``:
    ``fold0/`` ... bundles (each with its ONNX, parity-checked, when asked), the shared metadata,
    ``ensemble.json`` and ``predict.py``, which averages the members' probabilities."""
    chosen = check_formats(formats)
    trial = default_trial(study) if trial_number is None else get_trial(study, trial_number)
    folder = ensemble_bundle(trial, artifact_store, Path(out_dir) / f"{bundle_name(study, trial)}-ensemble")
    config = load_bundle_config(folder)
    sample, checked_on = parity_sample(study, artifact_store, config)
    report = ExportReport(folder, checked_on=checked_on)
    for member in ensemble_members(folder) or []:
        model, _ = load_bundle(member)
        report.files.append(ExportedFile("bundle", member / WEIGHTS_FILE))
        for name, writer, file_name in (
            ("onnx", export_onnx, ONNX_FILE),
            ("torchscript", export_torchscript, TORCHSCRIPT_FILE),
        ):
            if name in chosen:
                report.files.append(writer(model, sample, member / file_name))
    if "onnx" in chosen:
        shutil.copyfile(STANDALONE_PREDICT, folder / PREDICT_SCRIPT)
    card = folder / MODEL_CARD_FILE
    card.write_text(model_card(study, trial, shipped(folder)), encoding="utf-8")
    report.files.append(ExportedFile("card", card))
    return report


def shipped(folder: Path) -> frozenset[str]:
    return frozenset(path.name for path in Path(folder).iterdir())


def add_onnx(
    model: nn.Module, folder: Path, sample: torch.Tensor, *, int8: bool = False, dynamic_from: nn.Module | None = None
) -> str | None:
    """Export ``model.onnx`` (+ predict.py) into ``folder``; None, or why it could not be exported.

    For downloads: a model whose ONNX export fails still ships, with the reason in its card.
    """
    try:
        export_onnx(model, sample, folder / ONNX_FILE, int8=int8, dynamic_from=dynamic_from)
    except ExportError as exc:
        return str(exc)
    return None


def zip_folder(folder: Path, card: str) -> bytes:
    """A zip holding ``folder`` (one level) and its model card, under the folder's name."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            with (
                path.open("rb") as source,
                archive.open(_readable(zipfile.ZipInfo.from_file(path, f"{folder.name}/{path.name}")), "w") as target,
            ):
                shutil.copyfileobj(source, target)
        archive.writestr(_readable(zipfile.ZipInfo(f"{folder.name}/{MODEL_CARD_FILE}", time.localtime()[:6])), card)
    return buffer.getvalue()


def _readable(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    """A zip entry unpacked as an ordinary file (rw-r--r--): ``writestr`` would give 0600 and the
    temporary files the bundle is assembled from are private too."""
    info.external_attr = 0o100644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def bundle_zip(study: optuna.Study, trial: FrozenTrial, artifact_store: ArtifactStore) -> bytes:
    """A zip holding one folder: the trial's bundle, ``model.onnx`` with ``predict.py``, and the model card."""
    with tempfile.TemporaryDirectory(prefix="segtune-bundle-") as tmp:
        folder = trial_bundle(trial, artifact_store, Path(tmp) / bundle_name(study, trial))
        model, config = load_bundle(folder)
        problem = add_onnx(model, folder, parity_sample(study, artifact_store, config)[0])
        return zip_folder(folder, model_card(study, trial, shipped(folder), onnx_problem=problem))
