"""The report's metrics as functions of per-respondent sums, so that a bootstrap replicate is a product.

Every metric of `REPLICATED_METRICS` is a function of sums over answers of per-answer features (counts
of true and argmax options per question and group, option probabilities, scores). `RespondentTotals`
holds those sums per respondent as a sparse matrix S [respondents, features]; a bootstrap replicate
that draws respondent r ``w[r]`` times has totals ``w @ S``, and `RespondentTotals.metrics` turns a
batch of such weight vectors into every metric at once. With all weights 1 the values are those of
`cuma.metrics.summarize` (up to float rounding, which can move a per-question EMD lying exactly on a
coverage threshold to the other side of it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from cuma.metrics.distribution import js_distances
from cuma.metrics.emd import THRESHOLDS
from cuma.metrics.frame import group_values, iter_questions, require_columns
from cuma.metrics.proper import answer_scores

REPLICATED_METRICS = (
    "log_loss",
    "brier",
    "accuracy",
    "macro_f1",
    "wvb_argmax_emd_mean",
    "wvb_argmax_emd_auc_norm",
    "prob_emd_mean",
    "sigma_inequity",
    "collapse_rate",
    "prob_js_group_mean",
)
"""The `cuma.metrics.summarize` keys a bootstrap replicate recomputes (the report table's metrics)."""

_CHUNK_CELLS = 4_000_000
"""Replicates are computed in batches of about this many totals (replicates x features) at a time."""


@dataclass(frozen=True)
class _Layout:
    """Where each feature block starts in the feature columns, and the shapes behind them."""

    letters: int  # distinct option letters (macro-F1 pools them across questions)
    questions: int
    options: int  # widest question; narrower ones are padded with empty slots
    groups: int  # (field, value) pairs over every group field
    group_field: np.ndarray  # [groups] index of each group's field
    gaps: np.ndarray  # [questions, options - 1] distance between neighbouring slots on the [0, 1] scale
    ordinal: np.ndarray  # [questions] bool

    def blocks(self) -> dict[str, tuple[int, ...]]:
        q, k, g, n_letters = self.questions, self.options, self.groups, self.letters
        return {
            "scores": (4,),  # answers, log-loss, Brier, correct
            "true_letter": (n_letters,),
            "pred_letter": (n_letters,),
            "hit_letter": (n_letters,),
            "true_hist": (q, k),
            "pred_hist": (q, k),
            "prob_sum": (q, k),
            "group_n": (g,),
            "group_correct": (g,),
            "cell_true": (q, g, k),
            "cell_prob": (q, g, k),
        }

    def offsets(self) -> dict[str, int]:
        offsets, start = {}, 0
        for name, shape in self.blocks().items():
            offsets[name] = start
            start += int(np.prod(shape))
        offsets["end"] = start
        return offsets


@dataclass(frozen=True)
class RespondentTotals:
    """One predictions frame as per-respondent feature sums (see the module docstring).

    Attributes:
        matrix: sparse [respondents, features] sums, rows in the order of the ``respondents`` given.
        layout: what the feature columns are.
        min_count: smallest group (in answers) of sigma-inequity and group JS, as in `summarize`.
        scores: `cuma.metrics.proper.answer_scores` of the frame, indexed by (respondent_id, question_id),
            for the paired tests.
    """

    matrix: sparse.csr_matrix
    layout: _Layout
    min_count: int
    scores: pd.DataFrame

    @classmethod
    def build(
        cls,
        predictions: pd.DataFrame,
        respondents: pd.Index,
        group_fields: Sequence[str],
        min_count: int = 5,
    ) -> RespondentTotals:
        """Sum the features of ``predictions`` per respondent; ``respondents`` fixes the row order."""
        require_columns(predictions, ["respondent_id", "target_letter", "predicted_letter", *group_fields])
        frame = predictions.reset_index(drop=True)
        owner = respondents.get_indexer(frame["respondent_id"])
        if (owner < 0).any():
            row = int(np.flatnonzero(owner < 0)[0])
            raise ValueError(
                f"predictions row {row}: respondent_id={frame.at[row, 'respondent_id']!r} is not among the "
                f"{len(respondents)} respondents being resampled"
            )
        blocks = list(iter_questions(frame))
        letters = pd.Index(
            sorted(set(frame["target_letter"].astype(str)) | set(frame["predicted_letter"].astype(str)))
        )
        group_ids, group_field = _group_ids(frame, group_fields)
        width = max(len(block.option_codes) for block in blocks)
        layout = _Layout(
            letters=len(letters),
            questions=len(blocks),
            options=width,
            groups=len(group_field),
            group_field=group_field,
            gaps=np.stack(
                [_gaps(block.option_codes, block.scale_min, block.scale_max, width) for block in blocks]
            ),
            ordinal=np.array([block.ordinal for block in blocks]),
        )
        at = layout.offsets()
        per_answer = answer_scores(frame)
        scores = per_answer.to_numpy()
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []

        def add(positions: np.ndarray, columns: np.ndarray, values: np.ndarray | float = 1.0) -> None:
            rows.append(owner[positions])
            cols.append(columns)
            vals.append(np.broadcast_to(np.asarray(values, dtype=float), columns.shape))

        everyone = np.arange(len(frame))
        for j in range(4):
            add(everyone, np.full(len(frame), at["scores"] + j), 1.0 if j == 0 else scores[:, j - 1])
        true_letter = letters.get_indexer(frame["target_letter"].astype(str))
        correct = scores[:, 2] > 0
        add(everyone, at["true_letter"] + true_letter)
        add(everyone, at["pred_letter"] + letters.get_indexer(frame["predicted_letter"].astype(str)))
        add(everyone[correct], at["hit_letter"] + true_letter[correct])
        for q, block in enumerate(blocks):
            positions = block.rows.index.to_numpy()
            slot = np.argsort(np.argsort(block.option_codes, kind="stable"), kind="stable")
            target, predicted = slot[block.target], slot[block.predicted]
            probs = np.zeros((len(positions), width))
            probs[:, slot] = block.probs
            add(positions, at["true_hist"] + q * width + target)
            add(positions, at["pred_hist"] + q * width + predicted)
            spread = np.repeat(positions, width)
            add(spread, at["prob_sum"] + q * width + np.tile(np.arange(width), len(positions)), probs.ravel())
            for ids in group_ids:
                member = ids[positions] >= 0
                where, group = positions[member], ids[positions][member]
                cell = (q * layout.groups + group) * width
                add(where, at["cell_true"] + cell + target[member])
                add(
                    np.repeat(where, width),
                    at["cell_prob"] + np.repeat(cell, width) + np.tile(np.arange(width), len(where)),
                    probs[member].ravel(),
                )
        for ids in group_ids:
            member = ids >= 0
            add(everyone[member], at["group_n"] + ids[member])
            add(everyone[member], at["group_correct"] + ids[member], scores[member, 2])
        matrix = sparse.coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(respondents), at["end"]),
        ).tocsr()
        per_answer.index = pd.MultiIndex.from_frame(frame[["respondent_id", "question_id"]].astype(str))
        return cls(matrix, layout, min_count, per_answer)

    def metrics(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric of `REPLICATED_METRICS` for each row of ``weights`` [replicates, respondents]."""
        weights = np.atleast_2d(np.asarray(weights, dtype=float))
        if weights.shape[1] != self.matrix.shape[0]:
            raise ValueError(
                f"weights have {weights.shape[1]} respondents, the totals {self.matrix.shape[0]}"
            )
        chunk = max(1, _CHUNK_CELLS // self.matrix.shape[1])
        transposed = self.matrix.T.tocsr()
        parts = [
            self._reduce(np.asarray(transposed @ weights[start : start + chunk].T).T)
            for start in range(0, len(weights), chunk)
        ]
        return {name: np.concatenate([part[name] for part in parts]) for name in REPLICATED_METRICS}

    def _reduce(self, totals: np.ndarray) -> dict[str, np.ndarray]:
        layout, at = self.layout, self.layout.offsets()
        b = len(totals)

        def block(name: str) -> np.ndarray:
            shape = layout.blocks()[name]
            return totals[:, at[name] : at[name] + int(np.prod(shape))].reshape(b, *shape)

        scores = block("scores")
        n = scores[:, 0]
        result = {"log_loss": scores[:, 1] / n, "brier": scores[:, 2] / n, "accuracy": scores[:, 3] / n}
        result["macro_f1"] = _macro_f1(block("true_letter"), block("pred_letter"), block("hit_letter"))
        true_hist, pred_hist, prob_sum = block("true_hist"), block("pred_hist"), block("prob_sum")
        answered = true_hist.sum(axis=2)  # [b, q]
        present = answered > 0
        emd = _emd(true_hist, pred_hist, answered, layout.gaps)
        result["wvb_argmax_emd_mean"] = _masked_mean(emd, present)
        coverage = np.stack([_masked_mean(emd <= t, present) for t in THRESHOLDS], axis=1)
        span = THRESHOLDS[-1] - THRESHOLDS[0]
        result["wvb_argmax_emd_auc_norm"] = np.trapezoid(coverage, THRESHOLDS, axis=1) / span
        result["prob_emd_mean"] = _masked_mean(
            _emd(true_hist, prob_sum, answered, layout.gaps), present & layout.ordinal[None, :]
        )
        result["collapse_rate"] = _masked_mean((pred_hist > 0).sum(axis=2) == 1, present)
        result["sigma_inequity"] = self._sigma(block("group_n"), block("group_correct"))
        result["prob_js_group_mean"] = self._group_js(block("cell_true"), block("cell_prob"))
        return result

    def _sigma(self, group_n: np.ndarray, group_correct: np.ndarray) -> np.ndarray:
        """Mean over fields of the population std of group accuracies (groups of >= min_count answers)."""
        kept = group_n >= max(self.min_count, 1)
        accuracy = np.where(kept, group_correct / np.where(kept, group_n, 1), 0.0)
        spreads, fields = [], np.unique(self.layout.group_field)
        for field in fields:
            mine = self.layout.group_field == field
            count = kept[:, mine].sum(axis=1)
            mean = accuracy[:, mine].sum(axis=1) / np.maximum(count, 1)
            deviation = np.where(kept[:, mine], accuracy[:, mine] - mean[:, None], 0.0)
            std = np.sqrt((deviation**2).sum(axis=1) / np.maximum(count, 1))
            spreads.append(np.where(count > 1, std, np.nan))
        if not spreads:
            return np.full(len(group_n), np.nan)
        return _nanmean_rows(np.stack(spreads, axis=1))

    def _group_js(self, cell_true: np.ndarray, cell_prob: np.ndarray) -> np.ndarray:
        """Mean Jensen–Shannon distance (base 2) over (question, group) cells of >= min_count answers."""
        n = cell_true.sum(axis=3)
        kept = n >= max(self.min_count, 1)
        safe = np.where(kept, n, 1)[..., None]
        distance = js_distances(cell_true / safe, cell_prob / safe)
        return _masked_mean(distance, kept)


def _group_ids(frame: pd.DataFrame, fields: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Per field, each row's global group index (-1 when missing), and each group's field index."""
    ids, owners, start = [], [], 0
    for f, field in enumerate(fields):
        codes, uniques = pd.factorize(group_values(frame, field), sort=True)
        ids.append(np.where(codes >= 0, codes + start, -1))
        owners += [f] * len(uniques)
        start += len(uniques)
    return ids, np.asarray(owners, dtype=int)


def _gaps(codes: np.ndarray, scale_min: float, scale_max: float, width: int) -> np.ndarray:
    """Distances between consecutive option codes (sorted) on the scale mapped onto [0, 1], zero-padded."""
    if scale_max <= scale_min:
        raise ValueError(f"answer scale must have scale_max > scale_min, got [{scale_min}, {scale_max}]")
    gaps = np.zeros(width - 1)
    gaps[: len(codes) - 1] = np.diff(np.sort(codes)) / (scale_max - scale_min)
    return gaps


def _emd(first: np.ndarray, second: np.ndarray, n: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """1-D Wasserstein distance per question between two [b, q, k] histograms over sorted slots."""
    safe = np.where(n > 0, n, 1)[..., None]
    difference = np.cumsum(first / safe - second / safe, axis=2)[:, :, :-1]
    return (np.abs(difference) * gaps[None]).sum(axis=2)


def _macro_f1(true: np.ndarray, predicted: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """sklearn's macro-F1 (zero_division=0) over the letters that occur as answer or prediction."""
    denominator = true + predicted
    present = denominator > 0
    f1 = np.where(present, 2 * hits / np.where(present, denominator, 1), 0.0)
    return f1.sum(axis=1) / present.sum(axis=1)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over every axis but the first of the entries where ``mask`` holds; NaN where none does."""
    mask = np.broadcast_to(mask, values.shape)
    axes = tuple(range(1, values.ndim))
    count = mask.sum(axis=axes)
    total = np.where(mask, values, 0.0).sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    return _masked_mean(np.where(finite, values, 0.0), finite)
