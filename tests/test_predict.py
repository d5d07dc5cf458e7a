"""``predict``: one mask per readable image, bad files reported and skipped, optional overlays."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.commands import predict as predict_command
from core.deploy.export import export_torchscript
from core.deploy.predict import OVERLAY_DIR, PredictError, predict_folder, read_input
from core.modeling.build import build_model
from core.modeling.bundle import BundleConfig, save_bundle
from core.modeling.config import ModelConfig
from tests.helpers.machine import shared_path

MODEL = ModelConfig("ClassicUNet", 1, 2, unet_start_filters=8, unet_depth=2)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Three real X-rays (512 px JPG), a corrupt PNG and a text file."""
    source = shared_path("chest_xray_lung_shenzhen", "images")
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(source.iterdir())[:3]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    config = BundleConfig(model=MODEL.to_dict(), image_size=64, channels=1, classes=("background", "lung"))
    return save_bundle(build_model(MODEL).eval(), config, tmp_path / "bundle")


def test_one_mask_per_image_and_bad_files_skipped(bundle: Path, images: Path, tmp_path: Path) -> None:
    report = predict_folder(bundle, images, tmp_path / "out", overlay=True, progress=False)

    stems = sorted(p.stem for p in images.glob("*.jpg"))
    assert sorted(p.stem for p in report.written) == stems
    assert {path.name for path, _ in report.skipped} == {"broken.png", "notes.txt"}
    assert "unreadable image" in dict((p.name, r) for p, r in report.skipped)["broken.png"]
    for stem in stems:
        mask = np.asarray(Image.open(tmp_path / "out" / f"{stem}.png"))
        source = Image.open(images / f"{stem}.jpg")
        assert mask.shape == (source.height, source.width)  # back at the image's own size
        assert set(np.unique(mask)) <= {0, 255}
        assert (tmp_path / "out" / OVERLAY_DIR / f"{stem}.png").is_file()
    assert "3 mask(s) written, 2 file(s) skipped" in report.summary()


def test_masks_match_the_model(bundle: Path, images: Path, tmp_path: Path) -> None:
    from core.modeling.bundle import load_bundle

    report = predict_folder(bundle, images, tmp_path / "out", progress=False)
    model, _ = load_bundle(bundle)
    first = sorted(images.glob("*.jpg"))[0]
    pixels = (
        np.asarray(Image.open(first).convert("L").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    )
    with torch.no_grad():
        expected = (torch.sigmoid(model(torch.from_numpy(pixels)[None, None]))[0, 0] >= 0.5).numpy()
    written = np.asarray(Image.open(report.written[0]).resize((64, 64), Image.Resampling.NEAREST)) > 0
    assert (written == expected).mean() > 0.97  # nearest down/up-sizing moves a few edge pixels


def test_a_torchscript_folder_predicts_too(bundle: Path, images: Path, tmp_path: Path) -> None:
    from core.modeling.bundle import load_bundle

    model, _ = load_bundle(bundle)
    folder = tmp_path / "scripted"
    folder.mkdir()
    shutil.copy(bundle / "segtune.json", folder / "segtune.json")
    export_torchscript(model, torch.rand(1, 1, 64, 64), folder / "model.torchscript.pt")
    assert len(predict_folder(folder, images, tmp_path / "out", progress=False).written) == 3


def test_cli_runs_and_missing_folders_are_clear_errors(bundle: Path, images: Path, tmp_path: Path) -> None:
    args = argparse.Namespace(
        model=bundle, images=images, out=tmp_path / "cli", overlay=False, tta=False, save_probabilities=False
    )
    assert predict_command.run(args) == 0
    assert len(list((tmp_path / "cli").glob("*.png"))) == 3
    with pytest.raises(PredictError, match="does not exist"):
        predict_folder(bundle, tmp_path / "nowhere", tmp_path / "out", progress=False)


class Threshold(torch.nn.Module):
    """A model with a known answer: foreground exactly where the grey level is above 0.5."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images[:, :1] - 0.5) * 100.0


def test_written_masks_are_the_models_own_answer_with_both_classes(tmp_path: Path) -> None:
    """Synthetic images at the model's size (no resizing): every written pixel must be the model's."""
    folder = tmp_path / "scripted"
    folder.mkdir()
    config = BundleConfig(model=MODEL.to_dict(), image_size=64, channels=1, classes=("background", "lung"))
    (folder / "config.json").write_text(config.to_json(), encoding="utf-8")
    export_torchscript(Threshold(), torch.rand(1, 1, 64, 64), folder / "model.torchscript.pt")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    expected = {}
    for index in range(3):
        pixels = rng.integers(0, 100, (64, 64), dtype=np.uint8)  # dark background
        top, left = rng.integers(0, 40, 2)
        pixels[top : top + 10 + 5 * index, left : left + 20] = 200  # a bright, different box in each
        Image.fromarray(pixels).save(images / f"img{index}.png")
        expected[f"img{index}"] = np.where(pixels > 127, 255, 0)

    report = predict_folder(folder, images, tmp_path / "out", progress=False)
    assert len(report.written) == 3
    for path in report.written:
        written = np.asarray(Image.open(path))
        assert set(np.unique(written)) == {0, 255}  # both classes
        np.testing.assert_array_equal(written, expected[path.stem])


class ThreeLevels(torch.nn.Module):
    """Three classes by grey level: dark (< ~0.4) background, middle class 1, bright (> ~0.7) class 2."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grey = images[:, :1]
        return torch.cat([0.4 - grey, 0.15 - (grey - 0.55).abs(), grey - 0.7], dim=1) * 100.0


def scripted_folder(folder: Path, model: torch.nn.Module, classes: tuple[str, ...], **config: object) -> Path:
    folder.mkdir()
    model_config = ModelConfig("ClassicUNet", 1, len(classes), unet_start_filters=8, unet_depth=2)
    bundle = BundleConfig(model=model_config.to_dict(), image_size=64, channels=1, classes=classes, **config)
    (folder / "config.json").write_text(bundle.to_json(), encoding="utf-8")
    export_torchscript(model, torch.rand(1, 1, 64, 64), folder / "model.torchscript.pt")
    return folder


def test_multiclass_masks_are_class_indices_at_the_images_own_size(tmp_path: Path) -> None:
    """A wide 80 x 48 image in three bands: the mask comes back 80 wide and 48 high, holding 0, 1, 2."""
    folder = scripted_folder(tmp_path / "model", ThreeLevels(), ("background", "liver", "tumour"))
    images = tmp_path / "images"
    images.mkdir()
    pixels = np.zeros((48, 80), np.uint8)
    pixels[:, :26], pixels[:, 26:54], pixels[:, 54:] = 25, 140, 230
    Image.fromarray(pixels).save(images / "wide.png")
    report = predict_folder(folder, images, tmp_path / "out", overlay=True, progress=False)
    written = np.asarray(Image.open(report.written[0]))
    assert written.shape == (48, 80) and set(np.unique(written)) == {0, 1, 2}
    assert (written[:, 4:20] == 0).all() and (written[:, 32:48] == 1).all() and (written[:, 60:76] == 2).all()
    overlay = np.asarray(Image.open(tmp_path / "out" / OVERLAY_DIR / "wide.png"))
    assert overlay.shape == (48, 80, 3) and not np.array_equal(overlay[:, 60:76], overlay[:, 4:20])


def test_a_bundles_threshold_decides_binary_foreground(tmp_path: Path) -> None:
    """Grey 140 gives the Threshold model a foreground probability of ~0.993: foreground at the
    default 0.5, background for a bundle whose threshold is 0.999."""
    images = tmp_path / "images"
    images.mkdir()
    pixels = np.full((64, 64), 140, np.uint8)
    pixels[:, 32:] = 230  # certain foreground
    Image.fromarray(pixels).save(images / "a.png")
    masks = {}
    for threshold in (0.5, 0.999):
        folder = scripted_folder(
            tmp_path / f"model{threshold}", Threshold(), ("background", "lung"), threshold=threshold
        )
        report = predict_folder(folder, images, tmp_path / f"out{threshold}", progress=False)
        masks[threshold] = np.asarray(Image.open(report.written[0]))
    assert (masks[0.5] == 255).all()
    assert (masks[0.999][:, :32] == 0).all() and (masks[0.999][:, 32:] == 255).all()


def test_which_files_of_a_folder_are_segmented(tmp_path: Path) -> None:
    """Hidden files are not listed, upper-case suffixes count, and a second image with the same
    stem is skipped rather than overwrite the first one's mask; an empty folder is an error."""
    folder = scripted_folder(tmp_path / "model", Threshold(), ("background", "lung"))
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "a.jpg", "B.PNG", "c.png"):  # c.png comes after the skipped duplicate
        Image.fromarray(np.full((16, 16), 200, np.uint8)).save(images / name)
    (images / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (images / "0-notes.txt").write_text("listed first: the images after it are still segmented")
    (images / "0-scan.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    report = predict_folder(folder, images, tmp_path / "out", progress=False)
    assert [path.name for path in report.written] == ["B.png", "a.png", "c.png"]
    reasons = dict((path.name, reason) for path, reason in report.skipped)
    assert list(reasons) == ["0-notes.txt", "0-scan.png", "a.png"]
    assert (
        reasons["0-notes.txt"] == "not an image type SegTune reads (.png, .jpg, .jpeg, .tif, .tiff, .bmp, .npy)"
    )  # .npy: multi-sequence arrays
    assert reasons["0-scan.png"].startswith(
        f"unreadable image (UnidentifiedImageError: cannot identify image file '{images / '0-scan.png'}'"
    )
    assert reasons["a.png"] == "another image already wrote a.png"
    assert report.summary().splitlines()[0] == "3 mask(s) written, 3 file(s) skipped"
    assert report.summary().splitlines()[3] == "  skipped a.png: another image already wrote a.png"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PredictError, match=f"^image folder {empty} is empty$"):
        predict_folder(folder, empty, tmp_path / "out2", progress=False)


class Boundary(torch.nn.Module):
    """Binary, foreground above grey 0.501: grey 128 (128/255 = 0.50196 as training scales it) is foreground."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images[:, :1] - 0.501) * 1000.0


class NeverMiddle(torch.nn.Module):
    """Three classes, of which the model only ever predicts 0 (dark) and 2 (bright)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grey = images[:, :1]
        return torch.cat([0.5 - grey, torch.full_like(grey, -100.0), grey - 0.5], dim=1) * 100.0


def test_images_are_fed_as_in_training(tmp_path: Path) -> None:
    """Grey levels scaled by 1/255, colour converted to grey (luma) for a one-channel model."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(images / "grey128.png")
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 255  # luma 76: dark, though its red channel is full
    red[:, 32:] = 255  # white half
    Image.fromarray(red).save(images / "red.png")
    report = predict_folder(
        scripted_folder(tmp_path / "model", Boundary(), ("background", "lung")),
        images,
        tmp_path / "out",
        progress=False,
    )
    masks = {path.stem: np.asarray(Image.open(path)) for path in report.written}
    assert (masks["grey128"] == 255).all()
    assert (masks["red"][:, :32] == 0).all() and (masks["red"][:, 32:] == 255).all()


def test_resizing_a_mask_back_never_invents_a_class(tmp_path: Path) -> None:
    """Class 0 beside class 2 at 64 px, written 10x wider: nothing in between (class 1) appears,
    as a smoothing resize of the class indices would make along the edge."""
    images = tmp_path / "images"
    images.mkdir()
    pixels = np.zeros((64, 640), np.uint8)
    pixels[:, 320:] = 255
    Image.fromarray(pixels).save(images / "halves.png")
    folder = scripted_folder(tmp_path / "model", NeverMiddle(), ("background", "liver", "tumour"))
    written = np.asarray(Image.open(predict_folder(folder, images, tmp_path / "out", progress=False).written[0]))
    assert written.shape == (64, 640) and set(np.unique(written)) == {0, 2}


def test_a_second_run_into_the_same_nested_folder_overwrites_its_masks(tmp_path: Path) -> None:
    folder = scripted_folder(tmp_path / "model", Threshold(), ("background", "lung"))
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(images / "a.png")
    out = tmp_path / "runs" / "first"
    assert predict_folder(folder, images, out, progress=False).written == [out / "a.png"]
    assert not (out / OVERLAY_DIR).exists()  # overlays only on request
    Image.fromarray(np.full((16, 16), 20, np.uint8)).save(images / "a.png")
    for _ in range(2):  # the overlay folder exists the second time
        assert predict_folder(folder, images, out, overlay=True, progress=False).written == [out / "a.png"]
    assert (np.asarray(Image.open(out / "a.png")) == 0).all() and (out / OVERLAY_DIR / "a.png").is_file()


def test_the_progress_bar_is_shown_by_default_and_only_then(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = scripted_folder(tmp_path / "model", Threshold(), ("background", "lung"))
    images = tmp_path / "images"
    images.mkdir()
    for index in range(2):
        Image.fromarray(np.full((16, 16), 200, np.uint8)).save(images / f"{index}.png")
    predict_folder(folder, images, tmp_path / "quiet", progress=False)
    assert capsys.readouterr().err == ""
    predict_folder(folder, images, tmp_path / "shown")  # the CLI's default: a bar on stderr, even when piped
    bar = capsys.readouterr().err
    assert "predict: 100%" in bar and "2/2" in bar
    assert re.search(r"[\d.?]image/s|s/image\]", bar), bar  # images per second, or seconds per image when slow


def test_an_image_with_the_wrong_channel_count_is_skipped_with_the_reason(tmp_path: Path) -> None:
    """A two-sequence array cannot feed a one-channel model (grey and RGB convert, others do not)."""
    folder = scripted_folder(tmp_path / "model", Threshold(), ("background", "lung"))
    images = tmp_path / "images"
    images.mkdir()
    np.save(images / "two.npy", np.full((16, 16, 2), 200, np.uint8))
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(images / "rgb.png")
    report = predict_folder(folder, images, tmp_path / "out", progress=False)
    assert [path.name for path in report.written] == ["rgb.png"]
    assert report.skipped == [
        (
            images / "two.npy",
            "the image has 2 channel(s) but the model takes 1; only grey (1) and RGB (3) "
            "convert into each other, a multi-sequence image needs a model with one input channel per sequence",
        )
    ]
    pixels, reason = read_input(images / "rgb.png", 1)
    assert reason == "" and pixels is not None and pixels.shape == (16, 16, 3)


class Labeller(torch.nn.Module):
    """A two-class image classifier: one logit pair per image."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean = images.mean(dim=(1, 2, 3))
        return torch.stack([-mean, mean], dim=1)


def test_a_classification_model_is_refused_with_what_to_use_instead(tmp_path: Path) -> None:
    model_folder = tmp_path / "model"
    model_folder.mkdir()
    config = BundleConfig(
        model=ModelConfig("ResNet18", 1, 2).to_dict(), image_size=64, channels=1, classes=("no", "yes")
    )
    (model_folder / "config.json").write_text(config.to_json(), encoding="utf-8")
    export_torchscript(Labeller(), torch.rand(1, 1, 64, 64), model_folder / "model.torchscript.pt")
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(images / "a.png")
    expected = f"{model_folder} holds a classification model: it writes labels (core.deploy.classify), not masks"
    with pytest.raises(PredictError, match=f"^{re.escape(expected)}$"):
        predict_folder(model_folder, images, tmp_path / "out", progress=False)
