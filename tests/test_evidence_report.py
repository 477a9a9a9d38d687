"""The report with evidence: every interval cell is a number in results.json, in md, html and csv."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest

from cuma.compare.figures import difference_panels, make_figures
from cuma.compare.report import (
    FLOOR_ROW,
    TABLE_COLUMNS,
    difference_tables,
    markdown_table,
    results_table,
    write_report,
)
from cuma.compare.results import ComparisonResults
from cuma.metrics import BootstrapConfig, comparison_evidence, population_frame
from cuma.reference_baselines import BaselineConfig, cell_majority, population_majority, shuffled_truth
from evidence_frames import FIELDS, answers, perfect, random_predictions
from test_compare_results import method_run, minimal_results

NUMBER = r"-?[\d,]+\.\d+"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[ComparisonResults, Path]:
    train, test, heldout = (
        answers(200, seed=1, prefix="t"),
        answers(60, seed=2),
        answers(30, seed=3, prefix="h"),
    )
    fitted = {
        "majority": population_majority,
        "cell-majority": cell_majority,
        "shuffled-truth": shuffled_truth,
    }
    predictions = {}
    for seed in (1, 2):
        predictions["lora", seed, 0] = {
            s: random_predictions(f, seed=seed) for s, f in (("test", test), ("heldout", heldout))
        }
        predictions["cuma", seed, 0] = {"test": perfect(test), "heldout": perfect(heldout)}
        for name, fit in fitted.items():
            predictions[name, seed, 0] = {
                s: fit(train, f, FIELDS, BaselineConfig(seed=seed))
                for s, f in (("test", test), ("heldout", heldout))
            }
    everyone = pd.concat([train, test, heldout]).rename(columns={"target_code": "code"})
    profiles = {
        r: {"country": c, "sex": s}
        for r, c, s in everyone[["respondent_id", "country", "sex"]].drop_duplicates().itertuples(index=False)
    }
    evidence = comparison_evidence(
        predictions, FIELDS, BootstrapConfig(200, 0.9, 0), 50, population_frame(everyone, profiles, FIELDS)
    )
    runs = [method_run(method, seed, 0.5) for method, seed, _ in predictions]
    out = tmp_path_factory.mktemp("report")
    first = {method: frames for (method, seed, _), frames in predictions.items() if seed == 1}
    figures, _ = make_figures(out, first, {}, "country", 1, evidence)
    base = minimal_results(runs=runs)
    done = dataclasses.replace(base, evidence=evidence, table=results_table(runs, evidence), figures=figures)
    write_report(done, out)
    return done, out


def test_results_json_reads_back_the_evidence(results):
    done, out = results
    again = ComparisonResults.read(out / "results.json")
    assert again.evidence == done.evidence and again.table == done.table


def test_every_table_cell_is_an_evidence_number(results):
    done, out = results
    rows = markdown_table(done.table)
    assert "\n".join(rows) in (out / "report.md").read_text()
    evidence = done.evidence.splits
    for row in done.table.rows:
        for column, cell in zip(TABLE_COLUMNS, row[1:], strict=True):
            split, _, metric = column.key.rpartition(".")
            if row[0] == FLOOR_ROW:
                value = evidence[split].floors.get(metric) if split in evidence and not column.gain else None
                numbers = [value.mean, value.low, value.high] if value else []
            elif column.gain:
                value = evidence[split].gains[column.gain].get(row[0], {}).get(metric)
                numbers = [value.estimate, value.low, value.high] if value else []
                assert cell.endswith(" *") == bool(value and value.excludes_zero), (row[0], column.name)
            elif split:
                value = evidence[split].values[row[0]][metric]
                numbers = [value.estimate, value.low, value.high] if value.estimate is not None else []
            else:
                continue
            shown = [float(n.replace(",", "")) for n in re.findall(NUMBER, cell)]
            assert shown == pytest.approx(numbers, abs=0.6 * 10**-column.digits), (row[0], column.name)


def test_a_perfect_method_gains_over_the_majority_and_calibration_rows_are_shown(results):
    done, _ = results
    rows = {row[0]: row for row in done.table.rows}
    gain = [col.name for col in TABLE_COLUMNS].index("test.accuracy_gain_majority") + 1
    assert rows["cuma"][gain].startswith("0.") and rows["cuma"][gain].endswith(" *")
    assert rows["majority"][gain] == "—"  # no gain over itself
    assert "shuffled-truth" in rows and FLOOR_ROW in rows


def test_values_within_the_noise_floor_are_marked(results):
    done, _ = results
    split = done.evidence.splits["test"]
    floor = split.floors["prob_js_group_mean"]
    column = [col.name for col in TABLE_COLUMNS].index("test.prob_js_group_mean") + 1
    for row in done.table.rows[:-1]:
        value = split.values[row[0]]["prob_js_group_mean"].estimate
        assert row[column].endswith(" †") == (value <= floor.high), row[0]
    assert any(row[column].endswith(" †") for row in done.table.rows[:-1])  # cuma's perfect answers


def test_difference_tables_show_each_split_and_baseline_with_tests(results):
    done, out = results
    titles = [title for title, _ in difference_tables(done.evidence)]
    assert titles == [
        "random test split: method − lora",
        "random test split: method − majority",
        "held-out profile cells: method − lora",
        "held-out profile cells: method − majority",
    ]
    table = dict(difference_tables(done.evidence))["random test split: method − lora"]
    cuma = next(row for row in table.rows if row[0] == "cuma")
    accuracy = done.evidence.splits["test"].differences["lora"]["cuma"]["accuracy"]
    assert (
        cuma[3]
        == f"{accuracy.estimate:.3f} [{accuracy.low:.3f}, {accuracy.high:.3f}] * (p={accuracy.p_value:.2g})"
    )
    page, text = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "Paired differences" in page and cuma[3] in page and cuma[3] in text
    assert "pooled over 2 (training seed, data seed) runs" in text


def test_results_csv_carries_the_intervals_differences_and_floors(results):
    done, out = results
    csv = pd.read_csv(out / "results.csv").set_index("method")
    test = done.evidence.splits["test"]
    assert csv.loc["cuma", "test.accuracy_low"] == pytest.approx(test.values["cuma"]["accuracy"].low)
    assert csv.loc["cuma", "test.log_loss_minus_lora_p"] == pytest.approx(
        test.differences["lora"]["cuma"]["log_loss"].p_value
    )
    assert csv.loc["cuma", "test.brier_gain_cell-majority_estimate"] == pytest.approx(
        test.gains["cell-majority"]["cuma"]["brier"].estimate
    )
    assert csv.loc[FLOOR_ROW, "test.sigma_inequity_high"] == pytest.approx(test.floors["sigma_inequity"].high)


def test_the_difference_figure_is_drawn_first(results):
    done, out = results
    assert done.figures[0].file == "figures/differences-vs-lora.png"
    assert (out / done.figures[0].file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    panels = difference_panels(done.evidence, "test", "lora")
    assert list(panels) == [
        "accuracy (higher is better): method − lora",
        "log-loss (lower is better): method − lora",
    ]
    methods = set(panels["accuracy (higher is better): method − lora"]["method"])
    assert methods == {"cuma", "majority", "cell-majority"}  # calibration rows are in the table only
