"""Score predicted masks against ground truth, per case, at the original resolution (nnU-Net's evaluate_folder).

Two sources of predictions, one scorer:

- a folder of predicted masks (``--pred``): PNG class indices, or 0/255 for binary masks as
  ``predict`` writes them;
- a model on images (``--model BUNDLE --images DIR``): each image predicted exactly as ``predict``
  would (optionally with mirror TTA), never written to disk.

Truth and prediction are paired by file stem. Every pair gets one row per foreground class with
Dice, IoU, NSD and HD95 (core.metrics.cases) and the image size; the summary gives mean ± SD and
median of the per-case means (a case's mean over its classes) and names the worst cases. A file
that cannot be scored (no partner, unreadable, another size, values outside the classes) is
reported with the reason and skipped: one bad file never costs the rest.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data.csv_safe import safe_cell
from core.data.images import UNREADABLE_IMAGE_ERRORS, read_mask
from core.errors import SegTuneError
from core.metrics.cases import CASE_METRICS, LOWER_IS_BETTER, NSD_TOLERANCE, case_mean, class_scores, summarise

CSV_COLUMNS: tuple[str, ...] = ("name", "class", *CASE_METRICS, "height", "width")
WORST_SHOWN = 5


class EvaluateError(SegTuneError):
    """The folders or the model cannot be used at all (single bad files are only skipped)."""


@dataclass
class CaseReport:
    """The scored cases and the files that could not be scored."""

    classes: tuple[str, ...]
    tolerance: float
    rows: list[dict[str, object]] = field(default_factory=list)  # one per case and foreground class (CSV_COLUMNS)
    cases: dict[str, dict[str, float]] = field(default_factory=dict)  # case -> its mean over classes
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)

    def add(self, name: str, prediction: np.ndarray, truth: np.ndarray) -> None:
        scores = class_scores(prediction, truth, len(self.classes), tolerance=self.tolerance)
        height, width = truth.shape
        for score in scores:
            values = {metric: getattr(score, metric) for metric in CASE_METRICS}
            self.rows.append(
                {"name": name, "class": self.classes[score.cls], **values, "height": height, "width": width}
            )
        self.cases[name] = case_mean(scores)

    def summary(self) -> str:
        lines = [
            f"{len(self.cases)} case(s) scored, {len(self.skipped)} file(s) skipped; NSD tolerance "
            f"{self.tolerance:g} px"
        ]
        for metric in CASE_METRICS:
            stats = summarise([case[metric] for case in self.cases.values()])
            lines.append(
                f"  {metric:5s} mean {stats['mean']:.4f} ± {stats['sd']:.4f} (SD)  median {stats['median']:.4f}  "
                f"n={stats['n']}"
            )
        worst = self.worst("dice")
        if worst:
            lines.append("  worst by Dice: " + ", ".join(f"{name} {value:.3f}" for name, value in worst))
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)

    def worst(self, metric: str, count: int = WORST_SHOWN) -> list[tuple[str, float]]:
        scored = [(name, case[metric]) for name, case in self.cases.items() if not math.isnan(case[metric])]
        return sorted(scored, key=lambda item: item[1], reverse=metric in LOWER_IS_BETTER)[:count]

    def write_csv(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows({key: safe_cell(value) for key, value in row.items()} for row in self.rows)
        return path


def evaluate_folders(
    pred: Path, masks: Path, classes: tuple[str, ...] | None = None, *, tolerance: float = NSD_TOLERANCE
) -> CaseReport:
    """Score every predicted mask in ``pred`` against the mask of the same stem in ``masks``."""
    if classes is not None and len(classes) < 2:
        raise EvaluateError(f"--classes names the background and at least one class, got {list(classes)}")
    truths = _mask_files(masks, "ground-truth")
    predictions = _mask_files(pred, "prediction")
    report = CaseReport(classes or _classes_seen(truths.values()), tolerance)
    for name, reason in _unpaired(truths, predictions):
        report.skipped.append((name, reason))
    for stem in sorted(set(truths) & set(predictions)):
        _score_pair(
            report, stem, lambda stem=stem: _as_classes(_read(predictions[stem]), len(report.classes)), truths[stem]
        )
    return report


def evaluate_model(
    model_folder: Path, images: Path, masks: Path, *, tta: bool = False, tolerance: float = NSD_TOLERANCE
) -> CaseReport:
    """Predict every image of ``images`` with the model (as ``predict`` does) and score it against ``masks``."""
    from core.contract import Task
    from core.deploy.predict import open_run, predict_image, read_input

    model, config, files = open_run(
        model_folder, images, Task.SEGMENTATION, "score a classifier from its study's leaderboard"
    )
    truths = _mask_files(masks, "ground-truth")
    report = CaseReport(tuple(config.classes), tolerance)
    inputs = {path.stem: path for path in files}
    for name, reason in _unpaired(truths, inputs):
        report.skipped.append((name, reason))

    def predicted(path: Path) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            pixels, reason = read_input(path, config.channels)
            if pixels is None:
                raise _Skip(reason)
            return predict_image(model, config, pixels, tta=tta)

        return run

    for stem in sorted(set(truths) & set(inputs)):
        _score_pair(report, stem, predicted(inputs[stem]), truths[stem])
    return report


class _Skip(Exception):
    """One file cannot be scored; the reason goes into the report."""


def _score_pair(report: CaseReport, stem: str, prediction: Callable[[], np.ndarray], truth_file: Path) -> None:
    try:
        truth = _as_classes(_read(truth_file), len(report.classes))
        pred = prediction()
        problem = _pair_problem(pred, truth, len(report.classes))
        if problem:
            raise _Skip(problem)
        report.add(stem, pred, truth)
    except _Skip as skip:
        report.skipped.append((stem, str(skip)))


def _pair_problem(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> str | None:
    if pred.shape != truth.shape:
        return f"prediction is {pred.shape[1]}x{pred.shape[0]} px, ground truth {truth.shape[1]}x{truth.shape[0]} px"
    for what, mask in (("ground truth", truth), ("prediction", pred)):
        if int(mask.max(initial=0)) >= num_classes:
            return f"{what} holds class {int(mask.max())}, but there are {num_classes} classes (pass --classes)"
    return None


def _read(path: Path) -> np.ndarray:
    try:
        return read_mask(path)
    except UNREADABLE_IMAGE_ERRORS as exc:
        raise _Skip(f"unreadable mask {path.name} ({exc})") from exc


def _as_classes(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Class indices: a binary mask saved as 0/255 (as ``predict`` writes them, to be viewable) becomes 0/1."""
    return (mask > 0).astype(np.uint8) if num_classes == 2 and set(np.unique(mask)) <= {0, 255} else mask


def _mask_files(folder: Path, what: str) -> dict[str, Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluateError(f"{what} folder {folder} does not exist or is not a folder")
    files = {path.stem: path for path in sorted(folder.iterdir()) if path.is_file() and path.suffix.lower() == ".png"}
    if not files:
        raise EvaluateError(f"{what} folder {folder} holds no .png masks")
    return files


def _unpaired(truths: dict[str, Path], others: dict[str, Path]) -> Iterator[tuple[str, str]]:
    for stem in sorted(set(truths) - set(others)):
        yield stem, "ground truth without a prediction"
    for stem in sorted(set(others) - set(truths)):
        yield stem, "no ground-truth mask of that name"


def _classes_seen(files: object) -> tuple[str, ...]:
    """Class names when none are given: background plus one per index found in the truth (1 for 0/255)."""
    highest = 1
    for path in files:  # type: ignore[attr-defined]
        try:
            values = np.unique(_read(path))
        except _Skip:
            continue
        highest = max(highest, 1 if set(values) <= {0, 255} else int(values.max()))
    return ("background", *(f"class {index}" for index in range(1, highest + 1)))
