"""Progress of the running trial within its epochs: stored (throttled) for the Jobs page, drawn by the CLI.

The training loop calls a per-batch hook; :class:`ProgressWriter` turns it into the trial's
``progress`` user attr (``{"epoch", "epochs", "batch", "batches"}``) written at most every
``interval_s`` seconds, so a long epoch shows movement without a database write per batch.
:class:`TrialBar` draws the same progress as a tqdm bar (epochs x batches, with its ETA) for
``python -m core tune``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.contract import TrialAttr

WRITE_INTERVAL_S = 3.0  # the Jobs page refreshes every 2 s; one write per few seconds is plenty


@dataclass(frozen=True)
class BatchProgress:
    """Where a running trial is: batch ``batch`` of ``batches`` in epoch ``epoch`` of ``epochs`` (1-based)."""

    epoch: int
    epochs: int
    batch: int
    batches: int

    @property
    def fraction(self) -> float:
        """Share of the trial's planned training steps done (0..1)."""
        if self.epochs <= 0 or self.batches <= 0:
            return 0.0
        return min(1.0, ((self.epoch - 1) + self.batch / self.batches) / self.epochs)

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "epochs": self.epochs, "batch": self.batch, "batches": self.batches}

    @classmethod
    def from_attr(cls, value: Any) -> BatchProgress | None:
        """Read a stored ``progress`` attr back; None when absent or malformed (never raises)."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(int(value["epoch"]), int(value["epochs"]), int(value["batch"]), int(value["batches"]))
        except (KeyError, TypeError, ValueError):
            return None


ProgressHook = Callable[[int, BatchProgress], None]  # (trial number, progress)


class ProgressWriter:
    """The loop's ``on_batch`` for one trial: stores progress at most every ``interval_s`` seconds.

    The last batch of an epoch is always stored (the epoch's end is a natural checkpoint); ``hook``
    (e.g. the CLI's bar) sees every batch.
    """

    def __init__(
        self,
        trial: Any,
        epochs: int,
        *,
        interval_s: float = WRITE_INTERVAL_S,
        hook: ProgressHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trial = trial
        self.epochs = epochs
        self.interval_s = interval_s
        self.hook = hook
        self.clock = clock
        self.last_write = -float("inf")
        self.writes = 0

    def __call__(self, epoch: int, batch: int, batches: int) -> None:
        progress = BatchProgress(epoch, self.epochs, batch, batches)
        if self.hook is not None:
            self.hook(self.trial.number, progress)
        now = self.clock()
        if now - self.last_write >= self.interval_s or batch == batches:
            self.trial.set_user_attr(TrialAttr.PROGRESS, progress.to_dict())
            self.last_write = now
            self.writes += 1


class TrialBar:
    """A tqdm bar for the running trial (``python -m core tune``): epoch, batch and the trial's ETA.

    One bar per trial, below Optuna's trials bar; it closes itself when the next trial starts.
    """

    def __init__(self, position: int = 1, file: Any = None) -> None:
        self.position = position
        self.file = file
        self.trial: int | None = None
        self.bar: Any = None

    def __call__(self, trial_number: int, progress: BatchProgress) -> None:
        from tqdm.auto import tqdm

        total = progress.epochs * progress.batches
        if trial_number != self.trial or self.bar is None:
            self.close()
            self.trial = trial_number
            self.bar = tqdm(
                total=total, position=self.position, leave=False, unit="batch", file=self.file, dynamic_ncols=True
            )
        if self.bar.total != total:  # the batch size changed (out-of-memory retry)
            self.bar.total = total
        self.bar.set_description_str(
            f"trial {trial_number} · epoch {progress.epoch}/{progress.epochs} · batch "
            f"{progress.batch}/{progress.batches}",
            refresh=False,
        )
        done = (progress.epoch - 1) * progress.batches + progress.batch
        self.bar.update(done - self.bar.n)  # tqdm redraws at most every 0.1 s and computes the ETA

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None
