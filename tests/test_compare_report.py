"""Report aggregation over seeds and the held-out cell configuration."""

from __future__ import annotations

import math

import pytest

from cuma.compare.report import TABLE_COLUMNS, aggregate, build_table
from cuma.config import DataConfig
from cuma.data.experiment import heldout_cells


def run(method: str, seed: int, accuracy: float | None, sigma: float | None = 0.1) -> dict:
    return {
        "method": method,
        "seed": seed,
        "kind": "adapter",
        "trainable_params": 1000,
        "trainable_pct": 0.5,
        "train_seconds": 1.0,
        "eval_seconds": 2.0,
        "metrics": {"test": {"accuracy": accuracy, "sigma_inequity": sigma, "n_answers": 10}},
    }


def test_seeds_aggregate_to_mean_and_sample_std():
    runs = [run("cuma", 1, 0.4), run("cuma", 2, 0.6), run("lora", 1, 0.5)]
    result = aggregate(runs)
    assert result["cuma"]["seeds"] == [1, 2]
    stat = result["cuma"]["stats"]["test.accuracy"]
    assert stat["mean"] == pytest.approx(0.5)
    assert stat["std"] == pytest.approx(math.sqrt(0.02))  # ddof = 1
    assert result["lora"]["stats"]["test.accuracy"] == {"mean": 0.5, "std": None}


def test_table_cells_show_mean_and_spread_and_dashes_for_undefined():
    runs = [run("cuma", 1, 0.4, sigma=None), run("cuma", 2, 0.6, sigma=None), run("lora", 1, 0.5)]
    table = build_table(aggregate(runs))
    column = {col.key: i + 1 for i, col in enumerate(TABLE_COLUMNS)}
    cuma, lora = table["rows"]
    assert cuma[0] == "cuma" and cuma[column["test.accuracy"]] == "0.500 ± 0.141"
    assert cuma[column["test.sigma_inequity"]] == "—"
    assert cuma[column["trainable_params"]] == "1,000"
    assert lora[column["test.accuracy"]] == "0.500"
    assert lora[column["heldout.accuracy"]] == "—"  # no zero-shot split in these runs


def test_heldout_cells_are_every_combination_of_the_values():
    config = DataConfig(heldout_cells={"race": ["black", "other"], "gender": ["female"]})
    assert heldout_cells(config) == [
        {"race": "black", "gender": "female"},
        {"race": "other", "gender": "female"},
    ]
    assert heldout_cells(DataConfig()) == []
    with pytest.raises(ValueError, match=r"data\.heldout_cells=\{'race': 'black'\}: expected dict"):
        DataConfig(heldout_cells={"race": "black"})
    with pytest.raises(ValueError, match=r"data\.heldout_cells\.race=\[\]: must be a non-empty list"):
        DataConfig(heldout_cells={"race": []})
