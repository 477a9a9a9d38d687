"""``data_seeds``: the comparison repeats on fresh splits and samples, and the report pools the runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cuma.cli import main


def test_two_data_seeds_draw_two_samples_and_pool_them(tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(["compare", "--quick", "data_seeds=[0, 1]", "methods=[base, lora]", f"output_dir={out}"])
    results = json.loads((out / "results.json").read_text())
    lora = [run for run in results["runs"] if run["method"] == "lora"]
    assert sorted(run["data_seed"] for run in lora) == [0, 1]
    first = pd.read_parquet(out / "predictions" / "lora-seed42-data0-test.parquet")
    second = pd.read_parquet(out / "predictions" / "lora-seed42-data1-test.parquet")
    assert set(first["respondent_id"]) != set(second["respondent_id"])  # another split and sample
    assert len(results["evidence"]["runs"]) == 2
