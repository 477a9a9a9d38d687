"""``cuma sweep``: learning rates chosen on validation respondents, test scored once at the choices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cuma.cli import main
from cuma.compare.sweep import best_rate, grid_edges, parse_grid
from cuma.errors import ConfigError


def test_a_quick_sweep_chooses_on_validation_and_scores_test_once(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep"
    main(["sweep", "--quick", "--grid", "1e-4,5e-3", "methods=[base,lora]", f"output_dir={out}"])
    final = out
    record = json.loads((final / "sweep.json").read_text())
    assert record["grid"] == [1e-4, 5e-3] and list(record["validation"]) == ["lora"]
    scores = record["validation"]["lora"]
    assert record["chosen"]["lora"] == best_rate(scores, "log_loss")
    for rate in ("0.0001", "0.005"):
        tuned = json.loads((final / "sweep" / "lora" / f"lr{rate}" / "results.json").read_text())
        assert tuned["config"]["data"]["score_split"] == "valid"
        # A trial skips the gradient-interference diagnostic; the final comparison keeps it.
        assert tuned["config"]["eval"]["interference_examples"] is None
        assert all(run["gradient_cosine"] is None for run in tuned["runs"])
    results = json.loads((final / "results.json").read_text())
    assert results["config"]["data"]["score_split"] == "test"
    assert results["config"]["method_lr"] == {"lora": record["chosen"]["lora"]}
    assert any(run["gradient_cosine"] is not None for run in results["runs"] if run["method"] == "lora")
    assert record["at_edge"] == grid_edges(record["grid"], record["chosen"])
    assert record["at_edge"]["lora"] in ("lowest", "highest")  # a grid of two: every choice is an end
    assert f"({record['at_edge']['lora']} of the grid)" in capsys.readouterr().out


def test_grid_edges_names_choices_at_either_end() -> None:
    chosen = {"lora": 1e-3, "cuma": 3e-4, "mixlora": 1e-4}
    assert grid_edges([1e-4, 3e-4, 1e-3], chosen) == {"lora": "highest", "mixlora": "lowest"}
    assert grid_edges([1e-3], {"lora": 1e-3}) == {}  # one rate: no edge to speak of


def test_best_rate_prefers_the_better_score_then_the_smaller_rate() -> None:
    assert best_rate({"0.001": 1.0, "0.0001": 1.2}, "log_loss") == 1e-3
    assert best_rate({"0.001": 0.5, "0.0001": 0.5}, "accuracy") == 1e-4
    assert best_rate({"0.001": 0.6, "0.0001": 0.5}, "accuracy") == 1e-3


@pytest.mark.parametrize("grid", ["", " , ", "abc", "1e-4,-1"])
def test_a_bad_grid_is_a_clear_error(grid: str) -> None:
    with pytest.raises(ConfigError, match="--grid"):
        parse_grid(grid)
