"""The gradient-interference heatmap: one panel over every LoRA weight, then one per expert (PNG, Agg)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend must be chosen first
import numpy as np

from cuma.atomic import atomic_path
from cuma.evaluation.interference import ALL_WEIGHTS, GradientInterference

DPI = 110
ANNOTATE_UP_TO = 8
"""Groups up to which each cell shows its value."""


def plot_interference(result: GradientInterference, path: str | Path) -> Path:
    """Heatmaps of the group-gradient cosines (red: the groups pull apart, blue: together; grey: NaN).

    Groups are numbered on the axes, with the key below the panels, so long group names never overlap.
    """
    panels = [(f"{ALL_WEIGHTS}: {result.mean_cosine:+.2f}", result.cosine)]
    if result.expert_cosine is not None:
        means = result.expert_mean_cosine or []
        panels += [
            (f"expert {e}: {m:+.2f}", c)
            for e, (m, c) in enumerate(zip(means, result.expert_cosine, strict=True))
        ]
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    size = 1.6 + 0.35 * len(result.groups)
    fig, axes = plt.subplots(
        rows, columns, figsize=(columns * size + 1.2, rows * size + 1.2), squeeze=False, layout="constrained"
    )
    cmap = plt.get_cmap("RdBu").copy()
    cmap.set_bad("lightgrey")
    ticks = np.arange(len(result.groups))
    image = None
    for ax, (title, matrix) in zip(axes.flat, panels, strict=False):
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-1, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.set_xticks(ticks, [str(i) for i in ticks], fontsize=6)
        ax.set_yticks(ticks, [str(i) for i in ticks], fontsize=6)
        if len(result.groups) <= ANNOTATE_UP_TO:
            for (i, j), value in np.ndenumerate(matrix):
                if not np.isnan(value):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    key = ";  ".join(
        f"{i}: {_text(g)} (n={n})"
        for i, (g, n) in enumerate(zip(result.groups, result.examples, strict=True))
    )
    fig.suptitle(
        f"{result.method}: answer-loss gradient cosines by {result.field}, mean off-diagonal per panel",
        fontsize=9,
    )
    fig.supxlabel(textwrap.fill(key, 140), fontsize=6)
    fig.colorbar(image, ax=axes, shrink=0.6, label="cosine")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def _text(label: object) -> str:
    """A group name drawn literally: matplotlib would read "$20,000 to $39,999" as mathtext."""
    return str(label).replace("$", r"\$")
