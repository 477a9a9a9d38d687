"""WorldValuesBench EMD: parity with the benchmark's own outputs, and the threshold curve."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from cuma.metrics import THRESHOLDS, argmax_emd, emd_coverage, emd_summary, make_predictions, wvb_emd

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "test-vectors" / "wvb-emd"
needs_vectors = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"test vectors not found at {VECTORS}")
CASES = sorted(path.stem for path in (VECTORS / "preds").glob("*.csv"))


@pytest.fixture(scope="module")
def answers() -> pd.DataFrame:
    return pd.read_csv(VECTORS / "full" / "full_value_qa.tsv", sep="\t", index_col="D_INTERVIEW")


@pytest.fixture(scope="module")
def metadata() -> dict:
    return json.loads((VECTORS / "question_metadata.json").read_text())


@needs_vectors
def test_every_vector_file_is_checked():
    assert {"constant", "random", "perfect", "noisy_with_invalid"} <= set(CASES)


@needs_vectors
@pytest.mark.parametrize("case", CASES)
def test_matches_official_evaluate(case, answers, metadata):
    predictions = pd.read_csv(VECTORS / "preds" / f"{case}.csv")
    expected = json.loads((VECTORS / "preds" / f"{case}.expected.json").read_text())
    result = wvb_emd(predictions, answers, metadata)
    assert list(result) == list(expected)
    for question, value in expected.items():
        assert result[question] == pytest.approx(value, abs=1e-9), question


@needs_vectors
def test_invalid_scores_shrink_only_the_model_sample(answers, metadata):
    predictions = pd.read_csv(VECTORS / "preds" / "noisy_with_invalid.csv", dtype={"SCORE": str})
    rows = predictions[predictions["QUESTION_ID"] == "natspac"]
    valid = pd.to_numeric(rows["SCORE"], errors="coerce").dropna().astype(int)
    assert len(valid) < len(rows)
    truth = answers.loc[rows["PARTICIPANT_ID"], "natspac"].astype(int)
    expected = wasserstein_distance((truth - 1) / 2, (valid - 1) / 2)
    assert wvb_emd(rows, answers, metadata)["natspac"] == pytest.approx(expected, abs=1e-12)


@needs_vectors
def test_project_frame_agrees_with_benchmark_format(answers, metadata):
    wvb = pd.read_csv(VECTORS / "preds" / "random.csv")
    truth = [int(answers.at[p, q]) for p, q in zip(wvb["PARTICIPANT_ID"], wvb["QUESTION_ID"], strict=True)]
    rows = pd.DataFrame(
        {
            "respondent_id": wvb["PARTICIPANT_ID"],
            "question_id": wvb["QUESTION_ID"],
            "target_code": truth,
            "option_codes": [[1, 2, 3]] * len(wvb),
            "option_letters": [["A", "B", "C"]] * len(wvb),
            "scale_min": 1,
            "scale_max": 3,
            "ordinal": True,
        }
    )
    probs = np.eye(3)[wvb["SCORE"].to_numpy() - 1]
    assert argmax_emd(make_predictions(rows, probs)) == pytest.approx(wvb_emd(wvb, answers, metadata))


def test_unknown_participant_is_named():
    answers = pd.DataFrame({"q": [1, 2]}, index=pd.Index([10, 11], name="D_INTERVIEW"))
    predictions = pd.DataFrame({"QUESTION_ID": ["q"], "PARTICIPANT_ID": [99], "SCORE": [1]})
    with pytest.raises(ValueError, match="participant 99"):
        wvb_emd(predictions, answers, {"q": {"answer_scale_min": 1, "answer_scale_max": 2}})


def test_coverage_and_auc_by_hand():
    emds = {"a": 0.0, "b": 0.1, "c": 0.7}
    coverage = emd_coverage(emds)
    assert len(THRESHOLDS) == 13
    assert coverage[0] == pytest.approx(1 / 3)  # t = 0
    assert coverage[1] == pytest.approx(1 / 3)  # t = 0.05
    assert coverage[2:] == pytest.approx([2 / 3] * 11)  # 0.1 .. 0.6
    summary = emd_summary(emds)
    # Trapezoid: 0.05 * (100/3) for the first step, 0.05 * (100/3 + 200/3) / 2, then 10 steps at 200/3.
    auc_pct = 0.05 * 100 / 3 + 0.05 * 50 + 0.5 * 200 / 3
    assert summary["auc_pct"] == pytest.approx(auc_pct)
    assert summary["auc_norm"] == pytest.approx(auc_pct / 60)
    assert summary["mean"] == pytest.approx(0.8 / 3)
    assert summary["median"] == pytest.approx(0.1)


def test_perfect_emds_give_full_auc():
    summary = emd_summary({"a": 0.0, "b": 0.0})
    assert summary["auc_pct"] == pytest.approx(60)
    assert summary["auc_norm"] == pytest.approx(1)
