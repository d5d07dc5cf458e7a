"""Results pages at scale: the leaderboard frame of a 1,000-trial, 30-epoch study, first and after.

Builds (once; reused from ``--db`` after) a study shaped like the engine's — every trial with a
30-epoch history, val/test metrics and the summary attrs — in SQLite, and in PostgreSQL when
``--postgres`` is reachable. Then times, on the same database:

- ``fresh``: ``core.results.trials.trials_frame`` on a newly opened study (what the page did on
  every change before the incremental cache);
- ``cache first``: the first frame of :class:`core.results.trial_cache.FrameCache` (reads everything);
- ``cache after``: the next frame with nothing changed (reads running trials only);
- ``cache while adding``: one trial finishing and one running trial's epoch changing before each
  frame (median of ``--rounds``);
- optuna-dashboard's ``GET /api/studies/<id>`` (first and after) through its WSGI app, when
  ``optuna-dashboard`` is installed (requirements-dev.txt).

    python bench/results_scale.py                        # SQLite (+ PostgreSQL at 127.0.0.1 when up)
    python bench/results_scale.py --trials 50 --epochs 5 --no-postgres   # a smoke run
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.contract import StudyAttr, TrialAttr
from core.metrics.catalogue import split_metrics
from core.results.trial_cache import FrameCache, TrialCache
from core.results.trials import objective_names, trials_frame

NAME = "scale"
DISTRIBUTIONS = {
    "architecture": CategoricalDistribution(["Unet", "FPN", "ClassicUNet"]),
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "batch_size": IntDistribution(4, 32, step=4),
    "loss": CategoricalDistribution(["dice_bce", "focal", "tversky"]),
}


def _trial(number: int, epochs: int, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    dice = 0.5 + 0.4 * ((number * 37) % 100) / 100
    history = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            **{f"val_{m}": dice * e / epochs for m in split_metrics()},
            "val_loss": 1 / e,
            "lr": 1e-3,
            "epoch_time_s": 12.5,
        }
        for e in range(1, epochs + 1)
    ]
    attrs = {
        TrialAttr.HISTORY: history,
        TrialAttr.EPOCH: epochs,
        TrialAttr.EPOCHS_PLANNED: epochs,
        TrialAttr.VAL_METRICS: {m: dice for m in split_metrics()},
        TrialAttr.TEST_METRICS: {m: dice - 0.02 for m in split_metrics()},
        TrialAttr.BEST_EPOCH: epochs,
        TrialAttr.EPOCHS_RUN: epochs,
        TrialAttr.STOPPED_EARLY: False,
        TrialAttr.TRAIN_TIME_S: 375.0,
        TrialAttr.IMAGES_PER_S: 210.0,
        TrialAttr.N_PARAMS: 24_000_000,
        TrialAttr.WEIGHTS_MB: 93.0,
        TrialAttr.DEVICE: "cuda:0",
        TrialAttr.PARAMS_RESOLVED: {"epochs": epochs, "optimizer": "adam"},
    }
    params = {
        "architecture": ["Unet", "FPN", "ClassicUNet"][number % 3],
        "lr": 10 ** -(1 + number % 4),
        "batch_size": 4 * (1 + number % 8),
        "loss": ["dice_bce", "focal", "tversky"][number % 3],
    }
    return optuna.trial.create_trial(
        state=state,
        value=dice if state == TrialState.COMPLETE else None,
        params=params,
        distributions=DISTRIBUTIONS,
        user_attrs=attrs,
        intermediate_values={e: dice * e / epochs for e in range(1, epochs + 1)},
    )


def build(url: str, n_trials: int, epochs: int) -> optuna.Study:
    storage = optuna.storages.RDBStorage(url)
    if NAME in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=NAME, storage=storage)
        if len(study.get_trials(deepcopy=False)) >= n_trials:
            return study
        optuna.delete_study(study_name=NAME, storage=storage)
    study = optuna.create_study(storage=storage, study_name=NAME, direction="maximize")
    study.set_user_attr(StudyAttr.SPEC, {"objectives": [{"metric": "val_dice", "direction": "maximize"}]})
    started = time.perf_counter()
    study.add_trials(
        [_trial(n, epochs, TrialState.PRUNED if n % 5 == 4 else TrialState.COMPLETE) for n in range(n_trials)]
    )
    print(f"  built {n_trials} trials in {time.perf_counter() - started:.0f} s", flush=True)
    return study


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def dashboard_get(app, study_id: int) -> None:
    environ: dict = {"PATH_INFO": f"/api/studies/{study_id}", "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    if not status[0].startswith("200") or not body:
        raise RuntimeError(f"optuna-dashboard answered {status[0]}")


def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    study = build(url, args.trials, args.epochs)
    storage = optuna.storages.RDBStorage(url)
    reopened = lambda: optuna.load_study(study_name=NAME, storage=optuna.storages.RDBStorage(url))
    figures = {"fresh": timed(lambda: trials_frame(reopened()))}
    cache = FrameCache(TrialCache(storage, study._study_id), study.directions, objective_names(study))
    figures["cache first"] = timed(cache.frame)
    figures["cache after"] = statistics.median(timed(cache.frame) for _ in range(args.rounds))
    writer = optuna.load_study(study_name=NAME, storage=storage)
    running = writer.ask()
    adding = []
    for round_ in range(args.rounds):
        writer.add_trial(_trial(args.trials + round_, args.epochs))
        running.set_user_attr(TrialAttr.EPOCH, round_ + 1)
        adding.append(timed(cache.frame))
    figures["cache while adding"] = statistics.median(adding)
    writer.tell(running, state=TrialState.FAIL)
    try:
        import optuna_dashboard
    except ImportError:
        return figures
    app = optuna_dashboard.wsgi(optuna.storages.RDBStorage(url))
    figures["optuna-dashboard first"] = timed(lambda: dashboard_get(app, study._study_id))
    figures["optuna-dashboard after"] = statistics.median(
        timed(lambda: dashboard_get(app, study._study_id)) for _ in range(args.rounds)
    )
    return figures


def postgres_url(url: str) -> str | None:
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        with engine.connect():
            return url
    except Exception:
        return None


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--db", type=Path, default=Path("/tmp/segtune-results-scale.db"), help="SQLite file (kept and reused)"
    )
    parser.add_argument("--postgres", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    urls = {"SQLite": f"sqlite:///{args.db}"}
    if not args.no_postgres and postgres_url(args.postgres):
        urls["PostgreSQL"] = args.postgres
    results = {}
    for label, url in urls.items():
        print(f"{label}: {args.trials} trials x {args.epochs} epochs", flush=True)
        results[label] = measure(url, args)
    columns = list(next(iter(results.values())))
    print("| database | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for label, figures in results.items():
        print(f"| {label} | " + " | ".join(f"{figures[c]:.3f} s" if c in figures else "-" for c in columns) + " |")
    return results


if __name__ == "__main__":
    main()
