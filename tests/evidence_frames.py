"""Synthetic survey answers and predictions for the evidence tests (no model: frames built directly)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cuma.metrics import make_predictions

GROUP_SHARES = {"x": [0.6, 0.2, 0.1, 0.1], "y": [0.1, 0.2, 0.3, 0.4], "z": [0.25, 0.25, 0.25, 0.25]}
"""Each country's true answer distribution over options 1..4 of every ordinal question."""

FIELDS = ["country", "sex"]


def answers(respondents: int, questions: int = 6, seed: int = 0, prefix: str = "r") -> pd.DataFrame:
    """Answer rows (`cuma.metrics.PREDICTION_INPUT_COLUMNS` plus country and sex) of ``respondents``
    people to ``questions`` questions: ordinal 1..4 drawn from their country's `GROUP_SHARES`, and one
    nominal three-option question listed out of code order; every 7th sex is missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(questions):
        nominal = q == questions - 1
        codes = [3, 1, 2] if nominal else [1, 2, 3, 4]
        for i in range(respondents):
            country = list(GROUP_SHARES)[i % 3]
            shares = np.ones(3) / 3 if nominal else GROUP_SHARES[country]
            rows.append(
                {
                    "respondent_id": f"{prefix}{i}",
                    "question_id": f"q{q}",
                    "target_code": codes[int(rng.choice(len(codes), p=shares))],
                    "option_codes": codes,
                    "option_letters": list("ABCD")[: len(codes)],
                    "scale_min": 1,
                    "scale_max": 3 if nominal else 4,
                    "ordinal": not nominal,
                    "country": country,
                    "sex": None if i % 7 == 6 else ("f" if i % 2 else "m"),
                }
            )
    return pd.DataFrame(rows)


def random_predictions(frame: pd.DataFrame, seed: int = 1, concentration: float = 1.0) -> pd.DataFrame:
    """Predictions with Dirichlet-random probabilities."""
    rng = np.random.default_rng(seed)
    return make_predictions(
        frame, [rng.dirichlet(np.full(len(c), concentration)) for c in frame["option_codes"]]
    )


def one_hot(frame: pd.DataFrame, codes: Sequence[int]) -> pd.DataFrame:
    """Predictions that put probability 1 on ``codes`` (one per row)."""
    probs = [
        np.eye(len(options))[list(options).index(code)]
        for options, code in zip(frame["option_codes"], codes, strict=True)
    ]
    return make_predictions(frame, probs)


def perfect(frame: pd.DataFrame) -> pd.DataFrame:
    return one_hot(frame, frame["target_code"])
