"""Is a tree model of the profile a better reference than the logistic one? Validation log-loss, side by side.

The references' profile model is a regularised logistic regression per question (`cuma.reference_baselines`,
``logistic-pool``: fitted on every training-split answer, one C chosen on the validation answers). A
gradient-boosted or random-forest model of the same one-hot profile could capture interactions the
logistic model cannot; it earns a place among the references only if it predicts the validation answers
better. This fits both tree models per question on the same pool, chooses one setting of each from a small
grid by the summed validation log-loss (as `logistic-pool` chooses C, so all three are tuned on the same
answers), and prints each model's validation log-loss and accuracy beside the logistic reference's.
No test answer is read.

    python scripts/cell_model_check.py [--config configs/gss-science.yaml] [--data-seed 0]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small per-question fits; threads only add overhead

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.preprocessing import OneHotEncoder
from tqdm import tqdm

from cuma.config import ExperimentConfig
from cuma.data.examples import examples_frame
from cuma.data.experiment import prepare_data
from cuma.metrics.proper import EPS, answer_scores
from cuma.reference_baselines import BaselineConfig, logistic_pool

GRIDS: dict[str, list[dict]] = {
    "gradient boosting": [
        {"learning_rate": rate, "max_iter": iters, "max_depth": 3, "l2_regularization": 1.0}
        for rate in (0.03, 0.1)
        for iters in (50, 200)
    ],
    "random forest": [{"n_estimators": 200, "min_samples_leaf": leaf} for leaf in (5, 20, 50)],
}
MODELS: dict[str, Callable[..., object]] = {
    "gradient boosting": lambda **kw: HistGradientBoostingClassifier(random_state=0, **kw),
    "random forest": lambda **kw: RandomForestClassifier(random_state=0, n_jobs=1, **kw),
}


def _features(frame: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    return frame[fields].astype("object").where(frame[fields].notna(), "<missing>").astype(str)


def tree_scores(
    pool: pd.DataFrame, valid: pd.DataFrame, fields: list[str], name: str, setting: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Per validation answer: -log p(answer) and whether the argmax is the answer, one model per question."""
    losses, hits = np.empty(len(valid)), np.empty(len(valid), dtype=bool)
    for question, rows in valid.groupby("question_id", sort=False):
        fit = pool[pool["question_id"] == question]
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        x_fit = encoder.fit_transform(_features(fit, fields))
        codes = sorted(set(fit["target_code"]))
        model = MODELS[name](**setting).fit(x_fit, fit["target_code"].to_numpy())
        probs = model.predict_proba(encoder.transform(_features(rows, fields)))
        # Light smoothing towards uniform, so an option no training row chose is not a log(0).
        probs = (probs * len(fit) + 1.0 / len(codes)) / (len(fit) + 1.0)
        index = np.searchsorted(model.classes_, rows["target_code"].to_numpy())
        known = np.isin(rows["target_code"].to_numpy(), model.classes_)
        picked = np.where(known, probs[np.arange(len(rows)), np.minimum(index, len(codes) - 1)], EPS)
        positions = valid.index.get_indexer(rows.index)
        losses[positions] = -np.log(np.clip(picked, EPS, 1 - EPS))  # as cuma.metrics.proper
        hits[positions] = model.classes_[probs.argmax(1)] == rows["target_code"].to_numpy()
    return losses, hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/gss-science.yaml"))
    parser.add_argument("--data-seed", type=int, default=None, help="default: the config's first data seed")
    args = parser.parse_args()
    config = ExperimentConfig.from_yaml(args.config)
    seed = config.data_seed_list[0] if args.data_seed is None else args.data_seed
    data = prepare_data(config.with_data_seed(seed).data)
    fields = list(data.survey.profile_fields)
    pool, valid = examples_frame(data.pool), examples_frame(data.valid)
    print(f"{args.config} data seed {seed}: {len(pool)} pool answers, {len(valid)} validation answers")
    logistic = logistic_pool(pool, valid, fields, BaselineConfig(), valid=valid, pool=pool)
    scores = answer_scores(logistic)
    C = logistic["C"].dropna().iloc[0]
    rows = [("logistic-pool", f"C={C:g}", scores["log_loss"].mean(), scores["correct"].mean())]
    for name, grid in GRIDS.items():
        tried = [(s, *tree_scores(pool, valid, fields, name, s)) for s in tqdm(grid, desc=name)]
        setting, losses, hits = min(tried, key=lambda item: item[1].mean())
        rows.append((name, ", ".join(f"{k}={v}" for k, v in setting.items()), losses.mean(), hits.mean()))
    print("| model | setting (chosen on validation) | validation log-loss | validation accuracy |")
    print("|---|---|---|---|")
    for model, setting, loss, accuracy in rows:
        print(f"| {model} | {setting} | {loss:.4f} | {accuracy:.3f} |")


if __name__ == "__main__":
    main()
