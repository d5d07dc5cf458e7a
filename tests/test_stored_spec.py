"""core.search.validation.stored_spec: the one reader of the spec a study stores (and
core.contract.spec_attr, its raw form for results/)."""

from __future__ import annotations

import optuna
import pytest

from core.contract import StudyAttr, Task, spec_attr
from core.search.presets import load_preset
from core.search.validation import SpecError, stored_spec


def test_a_stored_spec_reads_back_as_the_spec_it_was() -> None:
    spec = load_preset("p4-cnn-classification", "bars", "p4-bars")
    study = optuna.create_study()
    study.set_user_attr(StudyAttr.SPEC, spec.to_dict())
    assert stored_spec(study) == spec and stored_spec(study).task == Task.CLASSIFICATION
    assert spec_attr(study) == spec.to_dict()


def test_a_study_segtune_did_not_make_has_no_spec() -> None:
    study = optuna.create_study()
    assert stored_spec(study) is None and spec_attr(study) == {}
    study.set_user_attr(StudyAttr.SPEC, "not an object")  # written by someone else: still no spec
    assert stored_spec(study) is None and spec_attr(study) == {}


def test_a_broken_stored_spec_names_its_problem() -> None:
    study = optuna.create_study()
    study.set_user_attr(StudyAttr.SPEC, {"name": "s", "dataset": "d", "sampler": "nope"})
    with pytest.raises(SpecError) as error:
        stored_spec(study)
    assert "sampler" in error.value.problems
