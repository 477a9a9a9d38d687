"""The comparison report's figures, drawn with matplotlib's Agg backend (no display needed) as PNG files."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend must be chosen first
import numpy as np
import pandas as pd

from cuma.atomic import atomic_path

DPI = 110


def emd_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """Share of questions with argmax EMD <= t against t, one line per method (higher is better)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, (thresholds, coverage) in curves.items():
        ax.plot(thresholds, coverage, marker="o", markersize=3, label=method)
    ax.set(
        xlabel="EMD threshold t", ylabel="share of questions with EMD ≤ t", title=_wrap(title), ylim=(0, 1.02)
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def group_accuracy(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Grouped bars: accuracy per group (x) and method (bar); ``table`` has method, group, n, accuracy."""
    methods = list(dict.fromkeys(table["method"]))
    groups = list(dict.fromkeys(table["group"]))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups) * max(1, len(methods) / 3)), 4))
    pivot = table.pivot_table(index="group", columns="method", values="accuracy", sort=False)
    x = np.arange(len(groups))
    for i, method in enumerate(methods):
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, pivot.loc[groups, method], width, label=method)
    counts = table.drop_duplicates("group").set_index("group")["n"]
    ax.set_xticks(x, [_text(f"{g}\n(n={counts[g]})") for g in groups], fontsize=7)
    ax.set(ylabel="accuracy (argmax)", title=_wrap(title), ylim=(0, 1))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(methods), 4))
    return _save(fig, path)


def entropy_scatter(tables: Mapping[str, pd.DataFrame], path: Path, title: str) -> Path:
    """Per question, entropy of the argmax answers across respondents vs the humans' answer entropy.

    One panel per method; points under the diagonal answer more uniformly than people do, the signature
    of mean collapse (a fully collapsed question sits at 0).
    """
    columns = min(len(tables), 4)
    rows = -(-len(tables) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows + 0.6), squeeze=False)
    top = max(float(t[["human_entropy", "pred_entropy"]].to_numpy().max()) for t in tables.values()) or 1.0
    for ax, (method, table) in zip(axes.flat, tables.items(), strict=False):
        ax.scatter(table["human_entropy"], table["pred_entropy"], s=12, alpha=0.7)
        ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1)
        ax.set(title=method, xlim=(-0.05, top * 1.05), ylim=(-0.05, top * 1.05))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(tables) :]:
        ax.axis("off")
    fig.supxlabel("human answer entropy (bits)")
    fig.supylabel("prediction entropy (bits, argmax)")
    fig.suptitle(_wrap(title))
    return _save(fig, path)


def difference_forest(panels: Mapping[str, pd.DataFrame], path: Path, title: str) -> Path:
    """One panel per metric: each method's paired difference as a dot with its interval as a bar.

    ``panels`` maps a panel title to rows ``method, estimate, low, high, excludes_zero``; intervals that
    exclude 0 are drawn solid, the others faded, around a dashed line at 0.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.35 * _longest(panels) + 1.6))
    for ax, (name, rows) in zip(np.atleast_1d(axes), panels.items(), strict=True):
        y = np.arange(len(rows))[::-1]
        for position, row in zip(y, rows.itertuples(), strict=True):
            alpha = 1.0 if row.excludes_zero else 0.35
            if row.low is not None and row.high is not None:
                ax.plot([row.low, row.high], [position, position], color="C0", alpha=alpha, linewidth=2)
            ax.plot([row.estimate], [position], "o", color="C0", alpha=alpha)
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(y, [_text(method) for method in rows["method"]], fontsize=8)
        ax.set(title=_wrap(name, 40))
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(_wrap(title, 80))
    return _save(fig, path)


def _longest(panels: Mapping[str, pd.DataFrame]) -> int:
    return max((len(rows) for rows in panels.values()), default=1)


def routing_heatmap(matrix: pd.DataFrame, path: Path, title: str) -> Path:
    """Groups x experts mean routing weight."""
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * matrix.shape[1] + 3), max(3, 0.28 * matrix.shape[0] + 1)))
    image = ax.imshow(matrix.to_numpy(), aspect="auto", cmap="viridis")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), [_text(i) for i in matrix.index], fontsize=7)
    ax.set(xlabel="expert", title=_wrap(title, 50))
    fig.colorbar(image, ax=ax, label="mean routing weight")
    return _save(fig, path)


def routing_projection(projection: pd.DataFrame, path: Path, title: str) -> Path:
    """Groups placed by the first two principal components of their mean routing vectors."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for field, part in projection.groupby("field", sort=False):
        ax.scatter(part["pc1"], part["pc2"], s=20 + 80 * part["n"] / projection["n"].max(), label=field)
        for _, row in part.iterrows():
            ax.annotate(_text(row["group"]), (row["pc1"], row["pc2"]), fontsize=6, alpha=0.8)
    explained = projection.attrs.get("explained", [float("nan")] * 2)
    ax.set(xlabel=f"PC1 ({explained[0]:.0%})", ylabel=f"PC2 ({explained[1]:.0%})", title=_wrap(title))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="field")
    return _save(fig, path)


def _wrap(title: str, width: int = 55) -> str:
    return textwrap.fill(title, width)


def _text(label: object) -> str:
    """A data label drawn literally: matplotlib would read "$20,000 to $39,999" as mathtext."""
    return str(label).replace("$", r"\$")


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI)
    finally:
        plt.close(fig)
    return path
