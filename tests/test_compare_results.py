"""Typed comparison results: results.json round trip, backward-compatible layout, clear read errors."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from cuma.compare.report import results_table
from cuma.compare.results import (
    ComparisonResults,
    DataSummary,
    Figure,
    Machine,
    MethodRun,
    Topology,
    aggregate,
)
from cuma.config import ExperimentConfig


def method_run(method: str, seed: int, accuracy: float | None, sigma: float | None = 0.1) -> MethodRun:
    return MethodRun(
        method=method,
        seed=seed,
        kind="adapter",
        adapter_config={"rank": 8, "target_modules": ("q_proj", "v_proj")},
        settings={},
        persona_in_prompt=True,
        uses_demographics=False,
        trainable_params=1000,
        trainable_pct=0.5,
        train_seconds=1.0,
        eval_seconds=2.0,
        metrics={"test": {"accuracy": accuracy, "sigma_inequity": sigma, "n_answers": 10}},
        tables={"entropy": {"test": "tables/entropy-x.csv"}},
    )


def minimal_results(title: str = "t", runs: list[MethodRun] | None = None) -> ComparisonResults:
    runs = runs or [method_run("cuma", 1, 0.4), method_run("cuma", 2, 0.6), method_run("lora", 1, 0.5)]
    return ComparisonResults(
        title=title,
        created="2026-01-01T00:00:00+00:00",
        command="cuma compare --quick",
        quick=True,
        config=ExperimentConfig(seeds=[1, 2]),
        versions={"cuma": "0"},
        machine=Machine("linux", "x86_64", 2, 2, None, 1),
        data=DataSummary(
            dataset="d",
            survey_answers=10,
            survey_respondents=5,
            n_questions=2,
            sizes={"train": 6, "test": 2, "heldout": 2},
            respondents={"train": 3, "test": 1, "heldout": 1},
            heldout_cells=[{"race": "black"}],
            group_fields=["race"],
            main_group="race",
            cell_fields=["race"],
            max_length=None,
            longest_prompt=40,
            mean_prompt=31.5,
        ),
        timings={"total": 1.5},
        runs=runs,
        topology={"cuma": Topology(["l0"], 2, {"race=black": [0.25, 0.75]}, [{"field": "race"}], [0.9, 0.1])},
        figures=[Figure("EMD", "figures/emd.png")],
        table=results_table(runs),
    )


def test_results_json_reads_back_to_equal_results():
    results = minimal_results()
    text = results.to_json()
    again = ComparisonResults.from_json(text)
    assert again.to_json() == text
    assert again.runs[0] == dataclasses.replace(
        results.runs[0], adapter_config={"rank": 8, "target_modules": ["q_proj", "v_proj"]}
    )
    assert again.config == results.config and again.machine == results.machine
    assert again.topology == results.topology and again.table == results.table


def test_results_json_keeps_the_layout_its_readers_use():
    raw = json.loads(minimal_results().to_json())
    assert raw["runs"][0]["metrics"]["test"]["accuracy"] == 0.4
    assert raw["aggregate"]["cuma"]["stats"]["test.accuracy"]["mean"] == pytest.approx(0.5)
    assert raw["aggregate"]["lora"]["stats"]["test.accuracy"] == {"mean": 0.5, "std": None}
    assert raw["table"]["columns"][0] == "Method" and raw["table"]["rows"][0][0] == "cuma"
    assert raw["config"]["seeds"] == [1, 2] and raw["machine"]["cuda"] is None
    assert raw["figures"] == [{"title": "EMD", "file": "figures/emd.png"}]


def test_numbers_that_are_not_finite_are_written_as_null():
    run = dataclasses.replace(
        method_run("cuma", 1, 0.4), trainable_pct=np.float32("nan"), train_seconds=np.float64(3)
    )
    raw = json.loads(minimal_results(runs=[run]).to_json())
    assert raw["runs"][0]["trainable_pct"] is None and raw["runs"][0]["train_seconds"] == 3.0


def test_seeds_aggregate_to_mean_and_sample_std_and_skip_undefined_values():
    runs = [
        method_run("cuma", 1, 0.4, sigma=None),
        method_run("cuma", 2, 0.6, sigma=None),
        method_run("lora", 1, 0.5),
    ]
    result = aggregate(runs)
    assert list(result) == ["cuma", "lora"] and result["cuma"].seeds == [1, 2]
    assert result["cuma"].stats["test.accuracy"].mean == pytest.approx(0.5)
    assert result["cuma"].stats["test.accuracy"].std == pytest.approx(math.sqrt(0.02))  # ddof = 1
    assert result["cuma"].stats["test.sigma_inequity"].mean is None
    assert result["lora"].stats["trainable_params"].std is None  # one seed


def test_a_broken_results_file_names_the_entry(tmp_path):
    raw = json.loads(minimal_results().to_json())
    del raw["runs"][1]["seed"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"results\.json\.runs\[1\]: the MethodRun entry lacks 'seed'$"):
        ComparisonResults.read(path)
    raw = json.loads(minimal_results().to_json())
    raw["data"]["shoe_size"] = 44
    with pytest.raises(
        ValueError, match=r"^<text>\.data: the DataSummary entry has unknown key 'shoe_size'$"
    ):
        ComparisonResults.from_json(json.dumps(raw), "<text>")
    with pytest.raises(ValueError, match=r"<text>: not JSON"):
        ComparisonResults.from_json("{", "<text>")
