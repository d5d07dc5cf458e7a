"""Classify a folder of images with an exported classifier (bundle or int8 TorchScript variant).

Images are fed exactly as in training (grey/RGB, bilinear resize to the model's size, [0, 1]
floats). The result is one CSV row per readable image: the file name, the predicted label, its
probability and the probability of every class (``p_<class>`` columns, softmax). A file that
cannot be read is reported and skipped — one bad image must not cost the rest of the folder. Text
cells that a spreadsheet would run as a formula are escaped (:mod:`core.data.csv_safe`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from core.contract import Task
from core.data.csv_safe import safe_row
from core.deploy.predict import PredictError, model_input, open_run, read_input
from core.modeling.bundle import BundleConfig
from core.modeling.inference import Models, predict_probabilities

LABEL_COLUMNS: tuple[str, ...] = ("file", "label", "confidence")  # then one p_<class> column per class


@dataclass
class ClassifyReport:
    out: Path  # the CSV written
    rows: int = 0  # images classified
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)

    def summary(self) -> str:
        lines = [f"{self.rows} image(s) classified into {self.out}, {len(self.skipped)} file(s) skipped"]
        lines += [f"  skipped {path.name}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def classify_image(model: Models, config: BundleConfig, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities (K,) for one image (HxWxC uint8 from read_image); a fold ensemble's are averaged."""
    return predict_probabilities(model, model_input(config, pixels))[0].numpy()


def csv_header(classes: tuple[str, ...]) -> list[str]:
    return [*LABEL_COLUMNS, *(f"p_{name}" for name in classes)]


def classify_folder(model_folder: Path, images: Path, out: Path, *, progress: bool = True) -> ClassifyReport:
    """Write ``out`` (CSV): one row per readable image of ``images`` (see the module docstring)."""
    model, config, files = open_run(
        model_folder, images, Task.CLASSIFICATION, "write masks with --out FOLDER instead of a CSV"
    )
    out = Path(out)
    if out.is_dir():
        raise PredictError(f"--out {out} is a folder; a classifier writes one CSV file, e.g. {out / 'predictions.csv'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = ClassifyReport(out)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(safe_row(csv_header(config.classes)))
        for path in tqdm(files, desc="classify", unit="image", disable=not progress):
            pixels, reason = read_input(path, config.channels)
            if pixels is None:
                report.skipped.append((path, reason))
                continue
            probabilities = classify_image(model, config, pixels)
            best = int(probabilities.argmax())
            writer.writerow(
                safe_row(
                    [
                        path.name,
                        config.classes[best],
                        f"{probabilities[best]:.6f}",
                        *(f"{p:.6f}" for p in probabilities),
                    ]
                )
            )
            report.rows += 1
    return report
