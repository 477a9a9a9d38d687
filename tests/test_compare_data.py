"""The comparison's samples: ``data.score_split=valid`` scores validation respondents for tuning, and a
scored split too small for the bootstrap over respondents stops the run before any model work."""

from dataclasses import replace

import pytest

from cuma.compare.run import run_comparison
from cuma.config import DataConfig, ExperimentConfig
from cuma.data.experiment import prepare_data
from cuma.errors import ConfigError


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


def test_a_scored_split_of_one_respondent_stops_before_the_model_loads(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the base model was loaded before the sample was checked")

    monkeypatch.setattr("cuma.compare.run.load_base_model", forbidden)
    config = ExperimentConfig(data=DataConfig(n_train=36, n_test=1, seed=0), output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"test split has 1 answer\(s\) from 1 respondent.*data\.n_test"):
        run_comparison(config)
