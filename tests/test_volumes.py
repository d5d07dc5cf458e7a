"""Medical volumes: reading (NIfTI, DICOM), validation, intensity, slice ingest, grouped splits, per-volume Dice."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from core.commands import ingest as ingest_command
from core.data.intensity import IntensityConfig, intensity_from_options, to_uint8
from core.data.manifest import (
    DatasetError,
    DatasetManifest,
    dataset_names,
    dataset_stats,
    load_manifest,
    spacing_summary,
)
from core.data.splits import SplitConfig, make_split
from core.data.volume_ingest import VolumeIngestOptions, ingest_volumes
from core.data.volumes import from_canonical, parse_slice_stem, read_dicom_series, read_nifti, to_canonical
from core.errors import SegTuneError
from core.metrics.catalogue import epoch_objectives, label, objective_metrics
from core.metrics.volumes import dice_per_volume, volume_dice_scores
from core.search.validation import SpecError, spec_from_dict
from tests.helpers.volume_data import (
    SHAPE,
    SPACING,
    dicom_affine,
    dicom_series,
    lps_affine,
    msd_folder,
    phantom,
    write_nifti,
)

WINDOW = IntensityConfig.window("abdomen")


# --- reading -----------------------------------------------------------------------------------------


def test_nifti_reads_with_its_geometry_and_canonical_round_trips(tmp_path: Path) -> None:
    image, _ = phantom(0)
    volume = read_nifti(write_nifti(tmp_path / "a.nii.gz", image, lps_affine()))
    assert volume.shape == SHAPE and np.allclose(volume.spacing, SPACING) and volume.orientation == "LPS"
    canonical = to_canonical(volume)
    assert canonical.orientation == "RAS"
    # the same world point holds the same value in both voxel orders
    voxel = np.array([3, 5, 7, 1])
    world = volume.affine @ voxel
    canonical_voxel = np.round(np.linalg.inv(canonical.affine) @ world).astype(int)[:3]
    assert canonical.data[tuple(canonical_voxel)] == volume.data[3, 5, 7]
    assert np.array_equal(from_canonical(canonical.data, volume.affine), volume.data)


def test_dicom_series_is_ordered_scaled_and_placed(tmp_path: Path) -> None:
    image, _ = phantom(3)
    dicom_series(tmp_path / "series", image)
    volume = read_dicom_series(tmp_path / "series")
    assert volume.shape == SHAPE
    assert np.allclose(volume.affine, dicom_affine())  # positions sorted though files were written shuffled
    assert np.abs(volume.data - image).max() < 0.51  # rescale slope/intercept applied (HU): stored rounding only


# --- validation --------------------------------------------------------------------------------------


def _ingest(source: Path, datasets: Path, name: str = "vol", **options: object) -> DatasetManifest:
    return ingest_volumes(source, name, datasets, options=VolumeIngestOptions(intensity=WINDOW, **options))  # type: ignore[arg-type]


def test_every_problem_is_listed_and_nothing_is_stored(tmp_path: Path) -> None:
    source = msd_folder(tmp_path / "src", 5)
    image, label = phantom(1)
    write_nifti(source / "labelsTr" / "case_000.nii.gz", label, np.diag([1.0, 1.0, 1.0, 1.0]))  # other spacing
    write_nifti(source / "labelsTr" / "case_001.nii.gz", label[:, :, :-1], lps_affine())  # other shape
    write_nifti(source / "labelsTr" / "case_002.nii.gz", label * 3, lps_affine())  # value 3 in a binary set
    (source / "imagesTr" / "case_003.nii.gz").write_bytes(b"not a nifti at all")  # corrupt
    (source / "labelsTr" / "case_004.nii.gz").unlink()  # missing label
    write_nifti(source / "labelsTr" / "stray.nii.gz", label, lps_affine())  # label without image
    with pytest.raises(DatasetError) as caught:
        _ingest(source, tmp_path / "ds")
    problems = caught.value.problems
    assert "spacing" in problems["labelsTr/case_000.nii.gz"]
    assert "shape" in problems["labelsTr/case_001.nii.gz"]
    assert "unexpected label values [0, 3]" in problems["labelsTr/case_002.nii.gz"]
    assert "corrupt" in problems["imagesTr/case_003.nii.gz"]
    assert "no label volume case_004" in problems["imagesTr/case_004.nii.gz"]
    assert "without an image" in problems["labelsTr/stray.nii.gz"]
    assert dataset_names(tmp_path / "ds") == [] and not any((tmp_path / "ds").iterdir())


def test_orientation_mismatch_is_refused(tmp_path: Path) -> None:
    source = msd_folder(tmp_path / "src", 3)
    _, label = phantom(0)
    flipped = lps_affine() @ np.diag([-1.0, 1.0, 1.0, 1.0])
    write_nifti(source / "labelsTr" / "case_000.nii.gz", label, flipped)
    with pytest.raises(DatasetError, match="orientation RPS differs from the image's LPS"):
        _ingest(source, tmp_path / "ds")


# --- intensity ---------------------------------------------------------------------------------------


def test_ct_window_and_percentile_scaling() -> None:
    values = np.array([[[-160.0, 40.0, 240.0, 1000.0]]])  # abdomen: L40 W400 -> [-160, 240]
    assert to_uint8(values, WINDOW).ravel().tolist() == [0, 128, 255, 255]
    ramp = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    scaled = to_uint8(ramp, IntensityConfig(low=10, high=90))
    assert scaled.min() == 0 and scaled.max() == 255 and (scaled == 0).sum() >= 100
    assert intensity_from_options(None, -600, 1500, None).description == "CT window L-600/W1500 HU"
    with pytest.raises(SegTuneError, match="choose one intensity option"):
        intensity_from_options("liver", None, None, "percentile")
    with pytest.raises(SegTuneError, match=r"unknown CT window 'kidney'; valid: \['abdomen'"):
        IntensityConfig.window("kidney")


# --- ingest ------------------------------------------------------------------------------------------


def test_slices_keep_their_volume_geometry_and_preprocessing(tmp_path: Path) -> None:
    manifest = _ingest(msd_folder(tmp_path / "src", 3), tmp_path / "ds", empty_fraction=0.0)
    assert manifest.is_volume and [v.volume for v in manifest.volumes] == ["case_000", "case_001", "case_002"]
    first = manifest.volumes[0]
    assert first.shape == SHAPE and np.allclose(first.spacing, SPACING) and np.allclose(first.affine, lps_affine())
    assert manifest.slicing.axis == 2 and manifest.slicing.intensity["preset"] == "abdomen"
    assert all(sum(pair.foreground) > 0 for pair in manifest.pairs)  # empty fraction 0: foreground slices only
    assert first.slices < first.total_slices == SHAPE[2]
    assert {parse_slice_stem(p.stem)[0] for p in manifest.pairs} == {p.volume for p in manifest.pairs}
    reread = load_manifest(tmp_path / "ds", "vol")
    assert reread == manifest
    stats = dataset_stats(reread)
    assert stats.volumes == 3 and sum(stats.slices_per_volume.values()) == len(manifest.pairs)
    assert spacing_summary(stats.spacing) == "0.8 x 0.8 x 2.5 mm"
    assert spacing_summary({"a": (0.7, 0.8, 2.5), "b": (0.9, 0.8, 5.0)}) == "0.7–0.9 x 0.8 x 2.5–5 mm"


def test_empty_fraction_keeps_a_share_of_empty_slices(tmp_path: Path) -> None:
    source = msd_folder(tmp_path / "src", 2)
    everything = _ingest(source, tmp_path / "ds", "all")
    half = _ingest(source, tmp_path / "ds", "half", empty_fraction=0.5)
    assert len(everything.pairs) == 2 * SHAPE[2]
    empty_all = sum(1 for p in everything.pairs if not any(p.foreground))
    empty_half = sum(1 for p in half.pairs if not any(p.foreground))
    assert 0 < empty_half < empty_all


def test_sequences_become_channels_and_dicom_series_ingest(tmp_path: Path) -> None:
    multi = _ingest(msd_folder(tmp_path / "mri", 2, sequences=2), tmp_path / "ds", "mri")
    assert multi.channels == 2 and multi.slicing.sequences == 2  # one channel per sequence
    source = tmp_path / "dicom"
    for number in range(2):
        image, label = phantom(number)
        dicom_series(source / "imagesTr" / f"patient{number}", image)
        write_nifti(source / "labelsTr" / f"patient{number}.nii.gz", label, dicom_affine())
    manifest = _ingest(source, tmp_path / "ds", "ct")
    assert [v.volume for v in manifest.volumes] == ["patient0", "patient1"]
    assert np.allclose(manifest.volumes[0].affine, dicom_affine())


def test_old_2d_manifests_still_load_unchanged() -> None:
    old = {
        "version": 1,
        "name": "cells",
        "created": "2024-01-01T00:00:00+00:00",
        "source": "x.zip",
        "channels": 1,
        "bit_depth": 8,
        "classes": ["background", "foreground"],
        "checksum": "abc",
        "pairs": [
            {"stem": "a", "image": "images/a.png", "mask": "masks/a.png", "height": 4, "width": 4, "foreground": [0.5]}
        ],
    }
    manifest = DatasetManifest.from_dict(old)
    assert not manifest.is_volume and manifest.groups == {} and manifest.to_dict() == old


def test_cli_ingest_with_volume_options(tmp_path: Path, workspace) -> None:
    source = msd_folder(tmp_path / "src", 3)
    args = argparse.Namespace(
        path=source,
        name="liver",
        classes=None,
        mask_suffix=None,
        task=None,
        volumes=True,
        axis=1,
        window="liver",
        level=None,
        width=None,
        normalise=None,
        empty_fraction=0.0,
        max_volume_mb=None,
        resample_uneven=False,
    )
    assert ingest_command.run(args) == 0
    manifest = load_manifest(workspace.datasets_dir, "liver")
    assert manifest.slicing.axis == 1 and manifest.slicing.intensity["level"] == 60.0


# --- splits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config", [SplitConfig(seed=s) for s in range(4)] + [SplitConfig(k_folds=3, fold=f, test=0.2) for f in range(3)]
)
def test_no_volume_in_two_splits(tmp_path: Path, config: SplitConfig) -> None:
    manifest = _ingest(msd_folder(tmp_path / "src", 8), tmp_path / "ds")
    split = make_split(manifest.stems, config, manifest.groups)
    volumes = [{manifest.pair(stem).volume for stem in part} for part in (split.train, split.val, split.test)]
    assert all(volumes)
    assert not (volumes[0] & volumes[1]) and not (volumes[0] & volumes[2]) and not (volumes[1] & volumes[2])


# --- per-volume Dice ---------------------------------------------------------------------------------


def test_dice_per_volume_averages_volumes_not_slices() -> None:
    truth = np.zeros((3, 4, 4), np.uint8)
    truth[0, :2] = 1  # volume a: one slice with 8 foreground pixels, predicted exactly
    truth[1:, 0, 0] = 1  # volume b: two slices, one pixel each, both missed
    predicted = truth.copy()
    predicted[1:] = 0
    groups = {"a_s0000": "a", "b_s0000": "b", "b_s0001": "b"}
    stems = list(groups)
    assert volume_dice_scores(predicted, truth, stems, groups, 2) == {"a": 1.0, "b": 0.0}
    assert dice_per_volume(predicted, truth, stems, groups, 2) == 0.5  # pooled pixels would give 16/18


def test_per_volume_dice_is_a_final_objective() -> None:
    assert objective_metrics()["val_dice_per_volume"] == "maximize"
    assert "val_dice_per_volume" not in epoch_objectives()
    assert label("test_dice_per_volume") == "Test Dice per volume"
    base = {"name": "s", "dataset": "d", "objectives": [{"metric": "val_dice_per_volume"}]}
    with pytest.raises(SpecError, match="only known when a trial ends"):
        spec_from_dict({**base, "pruner": "median"})
    assert spec_from_dict({**base, "pruner": "none"}).objectives[0].metric == "val_dice_per_volume"


def test_preview_stems_group_into_volumes_for_stepping() -> None:
    from core.data.volumes import slice_caption, volumes_of

    stems = ["b_s0002", "a_s0010", "a_s0002", "b_s0001"]
    assert volumes_of(stems) == {"a": [2, 1], "b": [3, 0]}  # positions, in slice order
    assert slice_caption("a_s0010") == "a · slice 10" and slice_caption("cell7") == "cell7"
    assert volumes_of(["cell7"]) == {}


def test_a_zip_of_volumes_ingests(tmp_path: Path) -> None:
    import shutil

    msd_folder(tmp_path / "Task99" / "Task99", 2)
    archive = shutil.make_archive(str(tmp_path / "task"), "zip", tmp_path / "Task99")
    manifest = _ingest(Path(archive), tmp_path / "ds")
    assert len(manifest.volumes) == 2 and len(manifest.pairs) == 2 * SHAPE[2]


def test_a_server_path_is_read_only_under_the_import_roots(tmp_path: Path) -> None:
    roots = [tmp_path / "imports"]
    roots[0].mkdir()
    outside = msd_folder(tmp_path / "elsewhere", 2)
    store = tmp_path / "datasets"
    with pytest.raises(DatasetError) as refused:
        ingest_volumes(outside, "outside", store, confine_to=roots)
    assert "source" in refused.value.problems and not dataset_names(store)
    (roots[0] / "escape").symlink_to(outside, target_is_directory=True)  # a link inside that leads out
    with pytest.raises(DatasetError):
        ingest_volumes(roots[0] / "escape", "escape", store, confine_to=roots)
    inside = msd_folder(roots[0] / "Task-inside", 2)
    manifest = ingest_volumes(inside.name, "inside", store, confine_to=roots)  # relative to a root
    assert manifest.is_volume and dataset_names(store) == ["inside"]


def test_volumes_of_different_sizes_are_scored_on_their_own_pixels() -> None:
    """Slices at their original sizes (one volume 4x4, another 6x6) are stacked per volume."""
    small_truth = np.zeros((4, 4), np.uint8)
    small_truth[:2] = 1
    large_truth = np.zeros((6, 6), np.uint8)
    large_truth[:3, :3] = 1
    predictions = [small_truth, small_truth, np.zeros((6, 6), np.uint8)]
    truths = [small_truth, small_truth, large_truth]
    groups = {"a0": "a", "a1": "a", "b0": "b"}
    scores = volume_dice_scores(predictions, truths, ["a0", "a1", "b0"], groups, 2)
    assert scores == {"a": 1.0, "b": 0.0}
    assert dice_per_volume(predictions, truths, ["a0", "a1", "b0"], groups, 2) == 0.5
