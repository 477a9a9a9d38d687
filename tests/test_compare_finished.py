"""A resumed comparison reuses the runs it finished; a prompting method is scored once for all seeds."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from cuma.cli import main


def test_finished_runs_are_reused_and_prompting_is_scored_once(tmp_path: Path, caplog) -> None:
    out = tmp_path / "run"
    args = ["compare", "--quick", "methods=[base, lora]", "seeds=[1, 2]", f"output_dir={out}"]
    main(args)
    first = json.loads((out / "results.json").read_text())
    base = [run for run in first["runs"] if run["method"] == "base"]
    assert [run["seed"] for run in base] == [1, 2] and base[0]["metrics"] == base[1]["metrics"]
    one, two = (pd.read_parquet(out / "predictions" / f"base-seed{s}-test.parquet") for s in (1, 2))
    pd.testing.assert_frame_equal(one, two)
    (out / "results.json").unlink()  # as if the run had stopped before its report
    with caplog.at_level(logging.INFO, logger="cuma.compare"):
        main([*args, "--resume"])
    assert caplog.text.count("reusing the finished run") == len(first["runs"])
    again = json.loads((out / "results.json").read_text())
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in first["runs"]]
    with caplog.at_level(logging.INFO, logger="cuma.compare"):
        caplog.clear()
        (out / "results.json").unlink()
        main([*args[:-1], "train.lr=1e-4", f"output_dir={out}", "--resume", "--resume-changed", "train.lr"])
    assert "kept run has other settings" in caplog.text
    with caplog.at_level(logging.INFO, logger="cuma.compare"):
        caplog.clear()
        (out / "results.json").unlink()
        # A setting that changes how training spends memory, not what it computes, keeps the runs.
        main(
            [
                *args[:-1],
                "train.lr=1e-4",
                "train.gradient_checkpointing=true",
                f"output_dir={out}",
                "--resume",
            ]
        )
    assert caplog.text.count("reusing the finished run") == len(first["runs"])


def test_a_resumed_comparison_draws_the_first_runs_figures_from_what_it_kept(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["compare", "--quick", "methods=[cuma]", "eval.interference_examples=2", f"output_dir={out}"]
    main(args)
    first = json.loads((out / "results.json").read_text())
    titles = [figure["title"] for figure in first["figures"]]
    assert any("routing" in title.lower() for title in titles) and any("gradients" in t for t in titles)
    images = {f["file"]: (out / f["file"]).read_bytes() for f in first["figures"]}
    (out / "results.json").unlink()
    main([*args, "--resume"])
    again = json.loads((out / "results.json").read_text())
    assert [f["title"] for f in again["figures"]] == titles
    assert again["topology"] == first["topology"]  # the routing summary, from the kept trace
    # The same data drawn again, from the kept trace and record.
    assert {f["file"]: (out / f["file"]).read_bytes() for f in again["figures"]} == images


pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
