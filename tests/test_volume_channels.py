"""Multi-sequence volumes: any number of sequences become channels, stored losslessly, fed to models
with ``in_channels = sequences``, shown one channel (or the first three) at a time, predicted back."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from core.data.images import channel_problem, read_image, save_image
from core.data.intensity import IntensityConfig, to_uint8
from core.data.manifest import DatasetError, dataset_path
from core.data.tensors import AugmentConfig, augment_batch, load_tensor_set, prepare_image
from core.data.visual import to_rgb
from core.data.volume_ingest import VolumeIngestOptions, ingest_volumes
from core.data.volumes import read_nifti, slice_view, to_canonical
from core.deploy.predict import predict_folder
from core.deploy.predict_volumes import predict_volumes
from core.errors import SegTuneError
from core.modeling.architectures import config_from_params
from core.modeling.build import build_model
from core.modeling.bundle import BundleConfig, save_bundle, volume_preprocessing
from core.search.study_source import study_source
from core.search.validation import SpecError, spec_from_dict
from tests.helpers.volume_data import SHAPE, lps_affine, msd_folder, phantom, write_nifti

WINDOW = IntensityConfig.window("abdomen")
SEQUENCES = 5


def _ingest(source: Path, datasets: Path, name: str = "mri"):
    return ingest_volumes(source, name, datasets, options=VolumeIngestOptions(intensity=WINDOW, empty_fraction=0.0))


def test_five_sequences_are_stored_losslessly_one_channel_each(tmp_path: Path) -> None:
    source = msd_folder(tmp_path / "src", 2, sequences=SEQUENCES)
    manifest = _ingest(source, tmp_path / "ds")
    assert manifest.channels == SEQUENCES and manifest.slicing.sequences == SEQUENCES
    pair = manifest.pairs[0]
    assert pair.image.endswith(".npy")
    stored = read_image(tmp_path / "ds" / "mri" / pair.image)
    assert stored.shape == (pair.height, pair.width, SEQUENCES) and stored.dtype == np.uint8
    for channel in range(SEQUENCES):  # channel k is sequence k, scaled on its own, bit for bit
        sequence = to_canonical(read_nifti(source / "imagesTr" / f"{pair.volume}_{channel:04d}.nii.gz"))
        expected = slice_view(np.take(to_uint8(sequence.data, WINDOW), pair.slice_index, axis=2))
        assert np.array_equal(stored[..., channel], expected)
    assert len({stored[..., c].tobytes() for c in range(SEQUENCES)}) == SEQUENCES  # the sequences differ


def test_three_sequences_stay_an_rgb_png_and_two_get_no_black_channel(tmp_path: Path) -> None:
    three = _ingest(msd_folder(tmp_path / "three", 1, sequences=3), tmp_path / "ds", "three")
    two = _ingest(msd_folder(tmp_path / "two", 1, sequences=2), tmp_path / "ds", "two")
    assert three.channels == 3 and three.pairs[0].image.endswith(".png")
    assert two.channels == 2 and two.pairs[0].image.endswith(".npy")
    assert read_image(tmp_path / "ds" / "two" / two.pairs[0].image).shape[-1] == 2


def test_a_4d_nifti_is_one_case_with_its_4th_axis_as_sequences(tmp_path: Path) -> None:
    source = tmp_path / "brats"
    for number in range(2):
        image, label = phantom(number)
        write_nifti(
            source / "imagesTr" / f"case{number}.nii.gz",
            np.stack([image * (k + 1) for k in range(4)], axis=-1),
            lps_affine(),
        )
        write_nifti(source / "labelsTr" / f"case{number}.nii.gz", label, lps_affine())
    manifest = _ingest(source, tmp_path / "ds")
    assert manifest.channels == 4 and manifest.slicing.sequences == 4
    image, label = phantom(7)  # a case with another sequence count is refused by name
    write_nifti(source / "imagesTr" / "odd.nii.gz", np.stack([image] * 3, axis=-1), lps_affine())
    write_nifti(source / "labelsTr" / "odd.nii.gz", label, lps_affine())
    with pytest.raises(DatasetError) as refused:
        _ingest(source, tmp_path / "ds", "again")
    assert "3 sequence(s), but the first case has 4" in refused.value.problems["imagesTr/odd.nii.gz"]


def test_loader_augmentation_and_model_take_every_channel(tmp_path: Path) -> None:
    manifest = _ingest(msd_folder(tmp_path / "src", 2, sequences=SEQUENCES), tmp_path / "ds")
    folder = dataset_path(tmp_path / "ds", "mri")
    data = load_tensor_set(folder, manifest, manifest.stems[:4], 32, SEQUENCES)
    assert tuple(data.images.shape) == (4, SEQUENCES, 32, 32)
    raw = read_image(folder / manifest.pairs[0].image)
    for band in range(SEQUENCES):  # each channel resized like a grey image of its own
        assert np.array_equal(data.images[0, band].numpy(), prepare_image(raw[..., band : band + 1], 32, 1)[0])
    with pytest.raises(SegTuneError, match="has 5 channel.*takes 3"):
        load_tensor_set(folder, manifest, manifest.stems[:1], 32, 3)
    images, masks = augment_batch(
        data.images.float() / 255,
        data.targets,
        AugmentConfig(hflip=True, rotate=10, brightness_contrast=0.3),
        torch.Generator().manual_seed(0),
    )
    assert images.shape == data.images.shape and not torch.equal(images, data.images.float() / 255)
    model = build_model(
        config_from_params({"architecture": "ClassicUNet", "unet_start_filters": 4, "unet_depth": 2}, SEQUENCES, 2)
    )
    assert model(images).shape == (4, 1, 32, 32)


def test_spec_channels_follow_the_dataset(tmp_path: Path, workspace) -> None:
    _ingest(msd_folder(tmp_path / "src", 3, sequences=SEQUENCES), workspace.datasets_dir)
    base = {"name": "s", "dataset": "mri", "image_size": 64}
    assert study_source(spec_from_dict(base), workspace).channels == SEQUENCES  # the dataset's own
    assert study_source(spec_from_dict({**base, "channels": SEQUENCES}), workspace).channels == SEQUENCES
    with pytest.raises(SpecError) as refused:
        study_source(spec_from_dict({**base, "channels": 3}), workspace)
    assert "5 channel(s) but the model takes 3" in refused.value.problems["channels"]
    for bad in (0, 65):
        with pytest.raises(SpecError, match="channels"):
            spec_from_dict({**base, "channels": bad})
    assert channel_problem(1, 3) == "" and channel_problem(3, 1) == "" and channel_problem(2, 3)


def test_predict_volumes_and_images_with_a_multi_sequence_model(tmp_path: Path) -> None:
    manifest = _ingest(msd_folder(tmp_path / "src", 1, sequences=SEQUENCES), tmp_path / "ds")
    model_config = config_from_params(
        {"architecture": "ClassicUNet", "unet_start_filters": 4, "unet_depth": 2}, SEQUENCES, 2
    )
    torch.manual_seed(0)
    config = BundleConfig(
        model=model_config.to_dict(),
        image_size=32,
        channels=SEQUENCES,
        classes=manifest.classes,
        preprocessing=volume_preprocessing(manifest),
    )
    bundle = save_bundle(build_model(model_config).eval(), config, tmp_path / "bundle")
    scans = msd_folder(tmp_path / "scans", 1, sequences=SEQUENCES) / "imagesTr"
    image, _ = phantom(9)
    for channel in range(3):
        write_nifti(scans / f"three_{channel:04d}.nii.gz", image, lps_affine())
    report = predict_volumes(bundle, scans, tmp_path / "out", progress=False)
    assert [path.name for path in report.written] == ["case_000.nii.gz"]
    assert report.skipped == [("three", "3 sequence(s), but the model was trained on 5 per case")]
    written = nib.load(str(report.written[0]))
    assert written.shape == SHAPE and np.allclose(written.affine, lps_affine())

    images = tmp_path / "images"
    images.mkdir()
    save_image(images, "slice", np.random.default_rng(0).integers(0, 255, (40, 36, SEQUENCES), dtype=np.uint8))
    save_image(images, "grey", np.zeros((40, 36), np.uint8))
    result = predict_folder(bundle, images, tmp_path / "masks", overlay=True, progress=False)
    assert [path.name for path in result.written] == ["slice.png"]
    assert [(path.name, "model takes 5" in why) for path, why in result.skipped] == [("grey.png", True)]


def test_pictures_show_a_chosen_channel_or_the_first_three() -> None:
    stack = np.arange(SEQUENCES * 6 * 8, dtype=np.uint8).reshape(SEQUENCES, 6, 8)  # CxHxW, as study previews
    assert np.array_equal(to_rgb(stack), np.moveaxis(stack[:3], 0, -1))
    assert np.array_equal(to_rgb(stack, 4), np.repeat(stack[4][..., None], 3, axis=-1))
    last = np.moveaxis(stack, 0, -1)  # HxWxC, as stored slices
    assert np.array_equal(to_rgb(last, 1)[..., 0], stack[1])
    assert np.array_equal(to_rgb(last[..., :2])[..., 2], np.zeros((6, 8), np.uint8))
    with pytest.raises(SegTuneError, match="channel 5 does not exist"):
        to_rgb(last, 5)


def test_bundles_from_before_multi_channel_slices_still_predict_two_sequences(tmp_path: Path) -> None:
    manifest = _ingest(msd_folder(tmp_path / "src", 1, sequences=2), tmp_path / "ds")
    model_config = config_from_params({"architecture": "ClassicUNet", "unet_start_filters": 4, "unet_depth": 2}, 3, 2)
    preprocessing = volume_preprocessing(
        manifest
    )  # sequences 2, but the model was trained on RGB slices (a black 3rd channel)
    config = BundleConfig(
        model=model_config.to_dict(), image_size=32, channels=3, classes=manifest.classes, preprocessing=preprocessing
    )
    bundle = save_bundle(build_model(model_config).eval(), config, tmp_path / "bundle")
    report = predict_volumes(bundle, tmp_path / "src" / "imagesTr", tmp_path / "out", progress=False)
    assert [path.name for path in report.written] == ["case_000.nii.gz"] and not report.skipped


def test_a_multi_sequence_model_exports_to_onnx_with_its_channels(tmp_path: Path) -> None:
    import onnx

    from core.deploy.export import export_model
    from core.modeling.bundle import load_bundle

    model_config = config_from_params(
        {"architecture": "ClassicUNet", "unet_start_filters": 4, "unet_depth": 2}, SEQUENCES, 2
    )
    config = BundleConfig(
        model=model_config.to_dict(), image_size=32, channels=SEQUENCES, classes=("background", "tumour")
    )
    sample = torch.rand((2, SEQUENCES, 32, 32), generator=torch.Generator().manual_seed(0))
    report = export_model(build_model(model_config).eval(), config, tmp_path / "export", ["bundle", "onnx"], sample)
    onnx_file = next(f for f in report.files if f.format == "onnx")
    assert onnx_file.max_abs_diff is not None and onnx_file.max_abs_diff < 1e-3
    dims = onnx.load(str(onnx_file.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [SEQUENCES, 32, 32]
    _, reloaded = load_bundle(report.folder)
    assert reloaded.channels == SEQUENCES and reloaded.model["in_channels"] == SEQUENCES
