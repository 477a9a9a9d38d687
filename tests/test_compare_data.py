"""The comparison's samples: ``data.score_split=valid`` scores validation respondents for tuning."""

from dataclasses import replace

import pytest

from cuma.config import DataConfig
from cuma.data.experiment import prepare_data


def people(rows):
    return {ex.respondent_id for ex in rows}


def test_score_split_valid_scores_validation_respondents_on_the_same_training_data():
    config = DataConfig(n_train=180, n_test=90, seed=0)
    on_test = prepare_data(config)
    on_valid = prepare_data(replace(config, score_split="valid"))
    assert on_valid.splits["train"] == on_test.splits["train"]
    assert len(on_valid.splits["test"]) == 90
    assert not people(on_valid.splits["test"]) & people(on_test.splits["test"])
    assert not people(on_valid.splits["test"]) & people(on_valid.splits["train"])


def test_score_split_valid_needs_validation_respondents():
    with pytest.raises(ValueError, match=r"data\.score_split='valid' needs data\.valid_fraction > 0"):
        DataConfig(valid_fraction=0.0, score_split="valid")
