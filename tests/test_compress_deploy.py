"""The trade-off rows the Compress & deploy page draws, from stored variant records (no models needed)."""

from __future__ import annotations

import math

import optuna
import pytest

from core.contract import variants_attr
from core.deploy.compression.config import CompressionError
from core.deploy.compression.variants import get_variant, trade_off_rows


def report(name: str, dice: float, size: float, deltas: dict[str, float] | None = None) -> dict:
    return {
        "name": name,
        "method": "prune" if deltas else "original",
        "params": {},
        "val": {"dice": dice, "iou": dice - 0.1, "f1": dice},
        "test": {"dice": dice - 0.05, "iou": dice - 0.15, "f1": dice - 0.05},
        "size_mb": size,
        "zipped_mb": size / 2,
        "nonzero_params": int(size * 1000),
        "total_params": 1000,
        "latency_ms": 2.0,
        "images_per_s": 400.0,
        "deltas": deltas or {},
    }


DELTAS = {
    "val_dice": -0.02,
    "val_iou": -0.02,
    "val_f1": -0.02,
    "test_dice": -0.01,
    "test_iou": -0.01,
    "test_f1": -0.01,
    "size_mb": 0.0,
    "zipped_mb": -0.2,
    "nonzero_params": -300,
    "latency_ms": 0.5,
    "images_per_s": -40.0,
    "speedup": 0.9,
}


def test_rows_put_the_original_first_then_each_variant_with_its_deltas() -> None:
    record = {
        "label": "pruned 70% global",
        "metrics": report("pruned 70% global", 0.78, 1.0, DELTAS),
        "original": report("original", 0.8, 1.0),
    }
    original, variant = trade_off_rows([record])
    assert (original["variant"], original["model"], original["val_dice"], original["speedup"]) == (
        0,
        "original",
        0.8,
        1.0,
    )
    assert (variant["variant"], variant["model"], variant["delta_val_dice"], variant["speedup"]) == (
        1,
        "pruned 70% global",
        -0.02,
        0.9,
    )
    assert math.isclose(variant["test_dice"], 0.73) and trade_off_rows([]) == []


def test_records_without_the_original_rebuild_it_from_the_deltas() -> None:
    record = {"label": "int8", "metrics": report("int8", 0.78, 1.0, DELTAS)}
    original = trade_off_rows([record])[0]
    assert math.isclose(original["val_dice"], 0.80) and math.isclose(original["test_dice"], 0.74)
    assert original["nonzero_params"] == 1300 and math.isclose(original["images_per_s"], 440.0)


def test_a_missing_variant_names_the_valid_ones() -> None:
    study = optuna.create_study()
    with pytest.raises(CompressionError, match="no variant 1; valid: none"):
        get_variant(study, 0, 1)
    study.set_user_attr(variants_attr(0), [{"label": "a"}, {"label": "b"}])
    assert get_variant(study, 0, 2) == {"label": "b"}
    with pytest.raises(CompressionError, match=r"valid: 1\.\.2"):
        get_variant(study, 0, 3)


def test_default_fine_tunes_grow_with_the_training_split_and_have_a_floor() -> None:
    from core.deploy.compression.config import FINETUNE_DEFAULTS, CompressionConfig

    qat, channels = CompressionConfig("qat"), CompressionConfig("prune", sparsity=0.5, structured=True)
    assert qat.steps_for(16) == FINETUNE_DEFAULTS["qat"].min_steps  # 2 epochs of 2 batches: the floor applies
    assert qat.steps_for(800) == 2 * 100 and channels.steps_for(800) == 6 * 100  # epochs of 100 batches
    assert (
        channels.finetune_lr == FINETUNE_DEFAULTS["channels"].lr
        and CompressionConfig("qat", lr=1e-3).finetune_lr == 1e-3
    )
    assert (
        CompressionConfig("prune", finetune_steps=7).steps_for(800) == 7
        and CompressionConfig("qat", finetune_epochs=0).steps_for(800) == 0
    )
    with pytest.raises(CompressionError, match="does not fine-tune"):
        CompressionConfig("ptq").steps_for(800)
