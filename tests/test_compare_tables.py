"""The per-question CSVs hold the rows whose means are the summary metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cuma.compare.tables import write_tables
from cuma.metrics import POPULATION, make_predictions, summarize


def predictions(seed: int) -> pd.DataFrame:
    """Two questions, 24 respondents in two sex groups of 12, random answers and probabilities."""
    rng = np.random.default_rng(seed)
    n = 24
    answers = pd.DataFrame(
        {
            "respondent_id": [f"r{i % n}" for i in range(2 * n)],
            "question_id": ["q1"] * n + ["q2"] * n,
            "target_code": rng.integers(1, 4, 2 * n),
            "option_codes": [[1, 2, 3]] * (2 * n),
            "option_letters": [["A", "B", "C"]] * (2 * n),
            "scale_min": 1,
            "scale_max": 3,
            "ordinal": True,
            "sex": ["f", "m"] * n,
        }
    )
    return make_predictions(answers, rng.dirichlet(np.ones(3), 2 * n))


def test_tables_average_to_the_summary(tmp_path):
    preds = {"test": predictions(0), "heldout": predictions(1)}
    written = write_tables(tmp_path, "cuma", "seed7", preds, ["sex"])
    assert written["distribution"]["test"] == "tables/distribution-cuma-seed7-test.csv"
    for split, frame in preds.items():
        metrics = summarize(frame, ["sex"])
        table = pd.read_csv(tmp_path / written["distribution"][split])
        population, groups = table[table["field"] == POPULATION], table[table["field"] != POPULATION]
        assert sorted(groups["group"]) == ["f", "f", "m", "m"]
        assert (groups["n"] == 12).all()
        for metric in ("prob_emd", "prob_js", "argmax_tv"):
            assert population[metric].mean() == pytest.approx(metrics[f"{metric}_mean"])
            assert groups[metric].mean() == pytest.approx(metrics[f"{metric}_group_mean"])
        entropy = pd.read_csv(tmp_path / written["entropy"][split])
        assert list(entropy["question_id"]) == ["q1", "q2"]
        assert entropy["prob_entropy"].mean() == pytest.approx(metrics["prob_entropy_mean"])
        assert entropy["human_entropy"].mean() == pytest.approx(metrics["human_entropy_mean"])
