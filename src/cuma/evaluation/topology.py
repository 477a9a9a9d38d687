"""Routing topology: which experts each demographic group uses, per layer (the paper's "cultural topology").

A CuMA router gives every token a weight over the experts of its layer. For a scored prompt we read the
weights at the *answer position*, the last prompt token, whose hidden state produces the answer letter:
these mixtures decide the prediction. ``tokens="prompt"`` instead averages over every non-pad prompt
token, which also mixes in the routing of the question text that every respondent shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
import torch

from cuma.atomic import atomic_path
from cuma.config import RoutingTokens

TOKEN_SCOPES: tuple[str, ...] = get_args(RoutingTokens)
"""Which tokens' routing a row's vector is read from (the values ``eval.routing_tokens`` allows)."""


class RoutingCollector:
    """Collects one routing vector per scored row and layer from a routing recorder's weights."""

    def __init__(self, tokens: str = "answer") -> None:
        if tokens not in TOKEN_SCOPES:
            raise ValueError(f"routing token scope must be one of {TOKEN_SCOPES}, got {tokens!r}")
        self.tokens = tokens
        self._rows: list[int] = []
        self._chunks: dict[str, list[np.ndarray]] = {}

    def add(
        self,
        rows: Sequence[int],
        weights: Mapping[str, torch.Tensor],
        attention_mask: torch.Tensor,
        answer_index: torch.Tensor,
    ) -> None:
        """Add a batch: ``weights`` is layer name -> [batch, seq, experts], ``rows`` the batch's row ids."""
        if not weights:
            raise ValueError("the routing recorder captured no layers; does this model have routers?")
        mask = attention_mask.detach().to("cpu", torch.float32)
        batch = torch.arange(mask.shape[0])
        for layer, value in weights.items():
            value = value.detach().to("cpu", torch.float32)
            if value.ndim != 3 or tuple(value.shape[:2]) != tuple(mask.shape):
                raise ValueError(
                    f"routing weights of {layer!r} have shape {tuple(value.shape)}; expected "
                    f"[batch, seq, experts] matching the attention mask {tuple(mask.shape)}"
                )
            if self.tokens == "answer":
                vectors = value[batch, answer_index.cpu()]
            else:
                vectors = (value * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            self._chunks.setdefault(layer, []).append(vectors.numpy())
        self._rows.extend(rows)

    def vectors(self) -> dict[str, np.ndarray]:
        """Layer name -> [rows, experts], ordered by row id."""
        order = np.argsort(self._rows, kind="stable")
        return {layer: np.concatenate(chunks)[order] for layer, chunks in self._chunks.items()}


@dataclass
class RoutingTrace:
    """Routing vectors of every scored row of one model, split after split, and the rows' groups.

    Attributes:
        vectors: layer -> [rows, experts].
        groups: one row per scored row: the profile fields and ``split`` (the split it came from).
    """

    vectors: dict[str, np.ndarray]
    groups: pd.DataFrame

    @classmethod
    def from_collectors(
        cls,
        collectors: Mapping[str, RoutingCollector],
        predictions: Mapping[str, pd.DataFrame],
        fields: Sequence[str],
        split_labels: Mapping[str, str] | None = None,
    ) -> RoutingTrace:
        """Join each split's collector with the profile ``fields`` of its predictions (same row order).

        ``split_labels`` names the splits in the ``split`` column (default: the split's key).
        """
        if not collectors:
            raise ValueError("no routing collectors to trace")
        labels = split_labels or {}
        parts: dict[str, list[np.ndarray]] = {}
        frames = []
        for split, collector in collectors.items():
            rows = predictions[split]
            for layer, matrix in collector.vectors().items():
                if len(matrix) != len(rows):
                    raise ValueError(
                        f"split {split!r}: layer {layer!r} has {len(matrix)} routing rows for {len(rows)} "
                        "predictions"
                    )
                parts.setdefault(layer, []).append(matrix)
            frames.append(rows[list(fields)].assign(split=labels.get(split, split)))
        vectors = {layer: np.concatenate(matrices) for layer, matrices in parts.items()}
        return cls(vectors, pd.concat(frames, ignore_index=True))

    def save(self, stem: Path) -> None:
        """Write ``<stem>.npz`` (the vectors) and ``<stem>.parquet`` (the groups), so a comparison that
        reuses a finished run can still draw its routing figures. Keys are ``<position>:<layer>``, which
        keeps the layers' order."""
        arrays = {f"{k}:{layer}": matrix for k, (layer, matrix) in enumerate(self.vectors.items())}
        with atomic_path(_with(stem, ".npz")) as tmp, tmp.open("wb") as handle:
            np.savez_compressed(handle, **arrays)  # top-k gates are mostly zeros
        with atomic_path(_with(stem, ".parquet")) as tmp:
            self.groups.to_parquet(tmp, index=False)

    @classmethod
    def load(cls, stem: Path) -> RoutingTrace:
        """The trace `save` wrote at ``stem``, layers in their saved order."""
        with np.load(_with(stem, ".npz"), allow_pickle=False) as saved:
            keys = sorted(saved.files, key=lambda key: int(key.split(":", 1)[0]))
            vectors = {key.split(":", 1)[1]: saved[key] for key in keys}
        return cls(vectors, pd.read_parquet(_with(stem, ".parquet")))


def expert_usage(vectors: Mapping[str, np.ndarray], groups: pd.DataFrame) -> pd.DataFrame:
    """Mean routing weight per (field, group, layer, expert), with the group's row count.

    Args:
        vectors: layer -> [rows, experts], e.g. ``RoutingCollector.vectors()``.
        groups: one row per routed row, one column per demographic field; missing values are skipped.

    Returns:
        a long table with columns ``field, group, layer, expert, weight, n``.
    """
    _check(vectors, groups)
    tables = []
    for field in groups.columns:
        labels = _labels(groups[field])
        for layer, matrix in vectors.items():
            grouped = pd.DataFrame(matrix).groupby(labels, sort=True)
            means = grouped.mean().rename_axis(index="group", columns="expert").stack().rename("weight")
            table = means.reset_index().merge(grouped.size().rename("n").rename_axis("group").reset_index())
            tables.append(table.assign(field=field, layer=layer))
    columns = ["field", "group", "layer", "expert", "weight", "n"]
    return pd.concat(tables, ignore_index=True)[columns]


def usage_matrix(usage: pd.DataFrame, layer: str | None = None, min_count: int = 1) -> pd.DataFrame:
    """Groups (``field=group``) x experts for one layer, or averaged over layers when ``layer`` is None."""
    part = usage if layer is None else usage[usage["layer"] == layer]
    part = part[part["n"] >= min_count]
    if part.empty:
        raise ValueError(f"no routing usage for layer {layer!r} with groups of >= {min_count} rows")
    label = part["field"].astype(str) + "=" + part["group"].astype(str)
    return part.assign(label=label).pivot_table(index="label", columns="expert", values="weight", sort=False)


def group_projection(
    vectors: Mapping[str, np.ndarray], groups: pd.DataFrame, min_count: int = 1
) -> pd.DataFrame:
    """2-D PCA of the groups by their mean routing vector (every layer's vector concatenated).

    Returns one row per group with ``field, group, n, pc1, pc2``; ``attrs["explained"]`` holds the share
    of the variance between groups that each component explains.
    """
    _check(vectors, groups)
    routing = pd.DataFrame(np.concatenate(list(vectors.values()), axis=1))
    means, meta = [], []
    for field in groups.columns:
        grouped = routing.groupby(_labels(groups[field]), sort=True)
        sizes = grouped.size()
        kept = sizes.index[sizes >= min_count]
        means.append(grouped.mean().loc[kept].to_numpy())
        meta += [(field, group, int(sizes[group])) for group in kept]
    points = np.concatenate(means)
    if len(points) < 2:
        raise ValueError(f"a projection needs at least 2 groups with >= {min_count} rows, got {len(points)}")
    centred = points - points.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    coords = np.zeros((len(points), 2))
    coords[:, : min(2, len(singular))] = centred @ components[:2].T
    variance = singular**2
    explained = np.zeros(2)
    if variance.sum() > 0:
        explained[: min(2, len(variance))] = variance[:2] / variance.sum()
    result = pd.DataFrame(meta, columns=["field", "group", "n"]).assign(pc1=coords[:, 0], pc2=coords[:, 1])
    result.attrs["explained"] = explained.tolist()
    return result


def _with(stem: Path, suffix: str) -> Path:
    return stem.parent / (stem.name + suffix)


def _labels(values: pd.Series) -> np.ndarray:
    values = values.reset_index(drop=True)
    return values.where(values.isna(), values.astype(str)).to_numpy(dtype=object)


def _check(vectors: Mapping[str, np.ndarray], groups: pd.DataFrame) -> None:
    if not vectors:
        raise ValueError("no routing vectors to summarise")
    for layer, matrix in vectors.items():
        if len(matrix) != len(groups):
            raise ValueError(
                f"layer {layer!r} has {len(matrix)} routing rows but there are {len(groups)} group rows"
            )
