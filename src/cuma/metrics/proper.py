"""Individual-level proper scores: how much probability each respondent's own answer got.

A proper score is optimised in expectation only by the respondent's true answer distribution, so unlike
the distribution metrics (`cuma.metrics.distribution`, `cuma.metrics.emd`) it cannot be won by matching
the question's marginal distribution while ignoring who answers. Scores are per answer, then averaged
over every scored answer (micro).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cuma.metrics.frame import iter_questions

EPS = float(np.finfo(np.float64).eps)
"""Probabilities are clipped to ``[EPS, 1 - EPS]`` before the log, as ``sklearn.metrics.log_loss`` (1.9)
does, so a one-hot prediction that misses costs ``-log(EPS)`` (about 36.0) instead of infinity."""

SCORE_COLUMNS = ("log_loss", "brier", "correct")


def answer_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per answer (the predictions' index): ``log_loss``, ``brier`` and ``correct``.

    ``log_loss`` is ``-ln p(true option)`` with p clipped at `EPS`; ``brier`` is the sum over the
    question's options of ``(p_k - y_k)^2`` (range 0..2); ``correct`` is 1.0 when the argmax option is the
    answer.
    """
    frame = predictions.reset_index(drop=True)  # positions, whatever the index
    scores = np.empty((len(frame), len(SCORE_COLUMNS)))
    for block in iter_questions(frame):
        rows = np.arange(len(block.rows))
        truth = np.zeros_like(block.probs)
        truth[rows, block.target] = 1.0
        scores[block.rows.index, 0] = -np.log(np.clip(block.probs[rows, block.target], EPS, 1 - EPS))
        scores[block.rows.index, 1] = ((block.probs - truth) ** 2).sum(axis=1)
        scores[block.rows.index, 2] = block.predicted == block.target
    return pd.DataFrame(scores, columns=list(SCORE_COLUMNS), index=predictions.index)


def log_loss(predictions: pd.DataFrame) -> float:
    """Mean negative natural log of the probability given to the respondent's answer (lower is better).

    Equals ``sklearn.metrics.log_loss`` over the same rows (each question's options as its labels).
    """
    return float(answer_scores(predictions)["log_loss"].mean())


def brier_score(predictions: pd.DataFrame, half: bool = False) -> float:
    """Mean multi-class Brier score: per answer the sum over options of the squared error (0..2).

    This is Brier's (1950) definition and ``sklearn.metrics.brier_score_loss`` for more than two classes.
    ``half=True`` gives the other convention, half of it (0..1), customary for binary outcomes (where it
    is the squared error of the positive class); the report uses the sum.
    """
    value = float(answer_scores(predictions)["brier"].mean())
    return value / 2 if half else value
