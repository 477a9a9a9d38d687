"""The report's table over seeds, its Markdown form, and the held-out cell configuration."""

from __future__ import annotations

import pytest

from cuma.compare.report import TABLE_COLUMNS, markdown_table, render_markdown, results_table
from cuma.config import DataConfig
from cuma.data.experiment import heldout_cells
from test_compare_results import method_run, minimal_results


def test_table_cells_show_mean_and_spread_and_dashes_for_undefined():
    runs = [
        method_run("cuma", 1, 0.4, sigma=None),
        method_run("cuma", 2, 0.6, sigma=None),
        method_run("lora", 1, 0.5),
    ]
    table = results_table(runs)
    column = {col.name: i + 1 for i, col in enumerate(TABLE_COLUMNS)}
    cuma, lora = table.rows
    assert cuma[0] == "cuma" and cuma[column["test.accuracy"]] == "0.500 ± 0.141"
    assert cuma[column["test.sigma_inequity"]] == "—"
    assert cuma[column["trainable_params"]] == "1,000"
    assert lora[column["test.accuracy"]] == "0.500"
    assert lora[column["heldout.accuracy"]] == "—"  # no zero-shot split in these runs


def test_markdown_report_shows_the_results_table_and_links_each_runs_tables():
    results = minimal_results()
    text = render_markdown(results)
    assert "\n".join(markdown_table(results.table)) in text
    assert "- cuma (seed 2): entropy [test](tables/entropy-x.csv)" in text
    assert "Machine: x86_64, 2 CPU cores, 2 torch threads, GPU: none" in text
    assert "2 seed(s) [1, 2] — numbers are mean ± sample std over seeds." in text


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
