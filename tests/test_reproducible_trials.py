"""A trial's seed repeats its run: the initial weights are seeded too, whatever ran before in the process."""

from __future__ import annotations

import torch

from core.contract import TrialAttr
from tests.helpers.studies import tiny_study


def test_the_same_seed_trains_the_same_model_whatever_the_global_random_state(workspace) -> None:
    first = tiny_study(workspace, "first", previews=1).trials[0]
    torch.manual_seed(12345)
    torch.rand(1000)  # what other code in a worker may have drawn before the next trial
    again = tiny_study(workspace, "again", previews=1).trials[0]
    assert first.user_attrs[TrialAttr.VAL_METRICS] == again.user_attrs[TrialAttr.VAL_METRICS]
    assert (
        first.user_attrs[TrialAttr.HISTORY][-1]["train_loss"] == again.user_attrs[TrialAttr.HISTORY][-1]["train_loss"]
    )
