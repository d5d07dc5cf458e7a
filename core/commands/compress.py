"""``python -m core compress --study S --trial N --method ptq|dynamic|qat|prune``: derive a variant.

The variant is stored with the trial (see core.compress.list_variants) and the trade-off against
the original is printed.
"""

from __future__ import annotations

import argparse

from core.compress import (
    METHODS, PRUNE_SCOPES, CompressionConfig, compress_trial, list_variants, study_compression_data, trade_off_table,
)
from core.results import get_trial
from core.settings import load_settings
from core.storage import open_artifact_store, open_storage
from core.tuning import load_study

_DEFAULTS = CompressionConfig(method="prune")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compress", help="quantize or prune a trial's model and compare it with the original")
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--trial", required=True, type=int, help="trial number")
    parser.add_argument("--method", required=True, choices=METHODS, help="ptq (static int8), dynamic (int8 Linear), qat, prune")
    parser.add_argument("--sparsity", type=float, default=_DEFAULTS.sparsity, help="prune: target sparsity 0.5-0.9")
    parser.add_argument("--structured", action="store_true", help="prune: whole output channels (per layer)")
    parser.add_argument("--scope", choices=PRUNE_SCOPES, help="prune: one global threshold or per layer")
    parser.add_argument("--steps", type=int, default=_DEFAULTS.finetune_steps, help="qat/prune: fine-tune steps (0 = one-shot)")
    parser.add_argument("--ramp-every", type=int, default=_DEFAULTS.ramp_every, help="prune: raise sparsity every N steps")
    parser.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="qat/prune: fine-tune learning rate")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    study, spec = load_study(args.study, open_storage(settings.db_url))
    trial = get_trial(study, args.trial)
    params = trial.user_attrs.get("params_resolved") or {}
    config = CompressionConfig(
        method=args.method, sparsity=args.sparsity, structured=args.structured, scope=args.scope,
        finetune_steps=args.steps, ramp_every=args.ramp_every, lr=args.lr,
        batch_size=int(params.get("batch_size", _DEFAULTS.batch_size)), loss=params.get("loss", _DEFAULTS.loss), seed=spec.seed,
    )
    print(f"compressing trial #{trial.number} of {study.study_name!r} with {config.label} (CPU) ...")
    reports, record = compress_trial(study, trial.number, config, study_compression_data(spec, settings), open_artifact_store(settings))
    print(trade_off_table(reports))
    print(f"stored as variant {len(list_variants(study, trial.number))} of trial #{trial.number}: artifacts {record['artifacts']}")
    return 0

