"""A tampered bundle given to ``predict`` (``python -m core predict`` in-process, and the bundle's own
predict.py): pickle bytes as weights, a hostile segtune.json, ONNX external data that points out of
the bundle. Each is refused with a message naming what is wrong, never a traceback, never run."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from core.cli import main
from core.modeling.build import build_model
from core.modeling.bundle import BundleConfig, save_bundle
from core.modeling.config import ModelConfig

MODEL = ModelConfig("ClassicUNet", 1, 2, unet_start_filters=4, unet_depth=2)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = BundleConfig(model=MODEL.to_dict(), image_size=64, channels=1, classes=("background", "lung"))
    return save_bundle(build_model(MODEL).eval(), config, tmp_path_factory.mktemp("bundles") / "good")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)).save(folder / "a.png")
    return folder


def tampered(bundle: Path, folder: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    shutil.copytree(bundle, folder)
    if edit is not None:
        data = json.loads((folder / "segtune.json").read_text())
        edit(data)
        (folder / "segtune.json").write_text(json.dumps(data))
    return folder


def predict(folder: Path, images: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["predict", "--model", str(folder), "--images", str(images), "--out", str(out)])
    return status, capsys.readouterr().err


class RunsCode:
    """Unpickling this creates ``marker``: proof that a loader unpickled the weights."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize(
    ("write", "kind"),
    [
        (lambda path, marker: path.write_bytes(pickle.dumps(RunsCode(marker))), "is a Python pickle"),
        (lambda path, marker: torch.save(RunsCode(marker), path), "is a zip archive (torch.save's format)"),
        (lambda path, marker: path.write_bytes(b"\x05\x00"), "is not in the safetensors format"),
    ],
)
def test_weights_that_are_not_safetensors_are_refused_unread(
    bundle: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], write: Callable, kind: str
) -> None:
    folder = tampered(bundle, tmp_path / "bundle")
    marker = tmp_path / "unpickled"
    write(folder / "model.safetensors", marker)
    status, err = predict(folder, images, tmp_path / "out", capsys)
    assert (
        status == 2
        and f"model.safetensors {kind}" in err
        and "safetensors files, which hold tensors and no code" in err
    )
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "write",
    [
        lambda path, marker: path.write_bytes(pickle.dumps(RunsCode(marker))),
        lambda path, marker: torch.save(RunsCode(marker), path),
    ],
)
def test_an_int8_variant_that_is_not_torchscript_is_refused(
    bundle: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], write: Callable
) -> None:
    """An int8 variant's folder holds model.torchscript.pt instead of safetensors."""
    folder = tampered(bundle, tmp_path / "bundle")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    write(folder / "model.torchscript.pt", marker)
    status, err = predict(folder, images, tmp_path / "out", capsys)
    assert status == 2 and "model.torchscript.pt is not a TorchScript model: PytorchStreamReader failed" in err
    assert "Traceback" not in err and not marker.exists()


def _set(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.update(fields)


def _set_model(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["model"].update(fields)


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (
            _set(image_size=100_000),
            "image_size",
            "must be a whole number from 1 to 4096, got 100000",
        ),  # 40 GB per image
        (_set(image_size="64"), "image_size", "got '64'"),
        (_set(channels=-1), "channels", "from 1 to 64"),
        (_set(classes="ab"), "classes", "must be a list of 2 to 256 class names"),
        (_set(classes=["c"] * 100_000), "classes", "must be a list of 2 to 256 class names, got ['c', 'c'"),
        (_set(classes=["background", "lung\x00=cmd"]), "classes", "printable characters"),
        (_set(threshold="high"), "threshold", "must be a number from 0 to 1"),
        (_set(model="../../x"), "model", "must be a JSON object"),
        (_set(source=[1]), "source", "must be a JSON object"),
        (_set(evil=1), "keys", "unknown ['evil']"),
        (_set_model(architecture="../Unet"), "model.architecture", "unknown architecture '../Unet'; valid: ["),
        (_set_model(unet_depth="2"), "model.unet_depth", "must be int, got '2'"),
        (_set_model(encoder_weights=7), "model.encoder_weights", "must be str or null"),
        (_set_model(in_channels=3), "model.in_channels", "is 3 but channels is 1"),
        (_set_model(num_classes=5), "model.num_classes", "is 5 but 2 classes are named"),
        (_set(preprocessing={"volumes": "/etc/passwd"}), "preprocessing.volumes", "is not a volume slicing record"),
    ],
)
def test_a_hostile_config_is_refused_field_by_field(
    bundle: Path,
    images: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable,
    field: str,
    words: str,
) -> None:
    status, err = predict(tampered(bundle, tmp_path / "bundle", edit), images, tmp_path / "out", capsys)
    assert status == 2, err
    assert "segtune.json is not a valid bundle config: Invalid bundle metadata" in err
    assert f"\n  - {field}: " in err and words in err and "Traceback" not in err
    assert max(len(line) for line in err.splitlines()) < 400  # a huge value is cut, not echoed
    assert not (tmp_path / "out").exists()


def test_a_pruned_channels_record_that_does_not_fit_is_refused(
    bundle: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tampered(bundle, tmp_path / "bundle", _set(pruned_channels={"__class__": {"out": 1}}))
    status, err = predict(folder, images, tmp_path / "out", capsys)
    assert status == 2 and "pruned_channels record does not fit its ClassicUNet" in err


# --- the bundle's own predict.py (onnxruntime) -----------------------------------------------------


def _onnx_model(tensor_location: str | None, *, as_constant: bool = False) -> bytes:
    """y = x + W; W inline, or in the external file ``tensor_location`` (as an initializer or,
    nested deeper, as a Constant node's attribute)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones(4, np.float32), "W")
    if tensor_location is not None:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", tensor_location), ("offset", "0"), ("length", "16")):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    nodes = [helper.make_node("Add", ["x", "W"], ["y"])]
    if as_constant:
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=weight))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [] if as_constant else [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


@pytest.mark.parametrize(
    ("location", "as_constant"), [("../secret.bin", False), ("/etc/hostname", False), ("inside.bin", True)]
)
def test_predict_py_refuses_onnx_external_data(tmp_path: Path, location: str, as_constant: bool) -> None:
    """Older onnxruntime versions read such a reference wherever it points; SegTune never writes one."""
    pytest.importorskip("onnx")
    from core.deploy import standalone_predict

    folder = tmp_path / "bundle"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.ones(4, np.float32).tobytes())
    (folder / "inside.bin").symlink_to(tmp_path / "secret.bin")
    (folder / "model.onnx").write_bytes(_onnx_model(location, as_constant=as_constant))
    with pytest.raises(
        SystemExit, match="refers to tensor data in other files .ONNX external data.*the bundle was changed"
    ):
        standalone_predict.session(folder)
    (folder / "model.onnx").write_bytes(_onnx_model(None, as_constant=as_constant))  # the same model, data inline: runs
    outputs = standalone_predict.session(folder).run(None, {"x": np.zeros(4, np.float32)})
    assert outputs[0].tolist() == [1.0] * 4


def test_predict_py_refuses_a_truncated_onnx_file(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from core.deploy import standalone_predict

    (tmp_path / "model.onnx").write_bytes(_onnx_model(None)[:-7])
    with pytest.raises(SystemExit, match="model.onnx is not a valid ONNX file"):
        standalone_predict.session(tmp_path)
