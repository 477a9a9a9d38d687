"""The report's figures from the first seed's predictions and routing, and the topology numbers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from cuma.atomic import atomic_path
from cuma.compare import plots
from cuma.compare.results import Figure, Topology
from cuma.data.experiment import EVAL_SPLITS, SPLITS
from cuma.evaluation.topology import RoutingTrace, expert_usage, group_projection, usage_matrix
from cuma.metrics import THRESHOLDS, argmax_emd, emd_coverage, entropy_table, group_accuracy_table
from cuma.metrics.evidence import Evidence
from cuma.reference_baselines import CALIBRATION_BASELINES

DIFFERENCE_PANELS = {"accuracy": "accuracy (higher is better)", "log_loss": "log-loss (lower is better)"}
"""The metrics of the difference figure, and how its panels name them."""

MIN_GROUP_ANSWERS = 5
"""Smallest group (in answers) drawn in the per-group and routing figures, as in sigma-inequity."""


def make_figures(
    out: Path,
    predictions: Mapping[str, Mapping[str, pd.DataFrame]],
    routing: Mapping[str, RoutingTrace],
    main_group: str,
    seed: int,
    evidence: Evidence | None = None,
) -> tuple[list[Figure], dict[str, Topology]]:
    """Write every figure under ``out/figures``; return them, and each routed method's topology.

    With ``evidence`` the first figures are each method's paired accuracy and log-loss difference
    against each baseline on the test split, with their intervals (`difference_panels`).
    """
    folder = out / "figures"
    figures: list[Figure] = []

    def add(title: str, path: Path) -> None:
        figures.append(Figure(title, path.relative_to(out).as_posix()))

    if evidence is not None and "test" in evidence.splits:
        for baseline in evidence.splits["test"].differences:
            title = (
                f"Paired difference vs {baseline}, {SPLITS['test']}, with {evidence.confidence:.0%} "
                "bootstrap intervals (faded: the interval includes 0; calibration rows in the table only)"
            )
            panels = difference_panels(evidence, "test", baseline)
            add(title, plots.difference_forest(panels, folder / f"differences-vs-{baseline}.png", title))

    for split in EVAL_SPLITS:
        curves = {
            method: (THRESHOLDS, emd_coverage(argmax_emd(preds[split])))
            for method, preds in predictions.items()
            if split in preds
        }
        if curves:
            title = f"Share of questions with argmax EMD ≤ t, {SPLITS[split]} (seed {seed})"
            add(title, plots.emd_curves(curves, folder / f"emd-curves-{split}.png", title))
    tables = []
    for method, preds in predictions.items():
        table = group_accuracy_table(preds["test"], [main_group])
        tables.append(table[table["n"] >= MIN_GROUP_ANSWERS].assign(method=method))
    title = f"Accuracy by {main_group}, random test split (argmax, seed {seed})"
    add(
        title,
        plots.group_accuracy(pd.concat(tables, ignore_index=True), folder / "group-accuracy.png", title),
    )
    title = f"Prediction entropy vs human entropy per question, random test split (seed {seed})"
    entropies = {method: entropy_table(preds["test"]) for method, preds in predictions.items()}
    add(title, plots.entropy_scatter(entropies, folder / "entropy.png", title))

    topology: dict[str, Topology] = {}
    for method, trace in routing.items():
        usage = expert_usage(trace.vectors, trace.groups)
        matrix = usage_matrix(usage, min_count=MIN_GROUP_ANSWERS)
        projection = group_projection(trace.vectors, trace.groups, min_count=MIN_GROUP_ANSWERS)
        title = (
            f"{method}: mean routing weight per group and expert, averaged over {len(trace.vectors)} routers"
        )
        add(title, plots.routing_heatmap(matrix, folder / f"routing-heatmap-{method}.png", title))
        title = f"{method}: groups by mean routing vector (PCA over all routers)"
        add(title, plots.routing_projection(projection, folder / f"routing-projection-{method}.png", title))
        with atomic_path(out / f"routing-usage-{method}.csv") as tmp:
            usage.to_csv(tmp, index=False)
        topology[method] = Topology(
            routers=list(trace.vectors),
            experts=int(matrix.shape[1]),
            mean_weight={str(label): [float(w) for w in row] for label, row in matrix.iterrows()},
            projection=projection.to_dict(orient="records"),
            explained_variance=projection.attrs["explained"],
        )
    return figures, topology


def difference_panels(evidence: Evidence, split: str, baseline: str) -> dict[str, pd.DataFrame]:
    """Panel title -> rows ``method, estimate, low, high, excludes_zero`` of the methods' differences.

    The calibration rows are left out: their one-hot log-losses (about 36 per miss) would set the scale.
    """
    methods = evidence.splits[split].differences[baseline]
    return {
        f"{title}: method − {baseline}": pd.DataFrame.from_records(
            [
                {
                    "method": method,
                    "estimate": diffs[metric].estimate,
                    "low": diffs[metric].low,
                    "high": diffs[metric].high,
                    "excludes_zero": diffs[metric].excludes_zero,
                }
                for method, diffs in methods.items()
                if diffs[metric].estimate is not None and method not in CALIBRATION_BASELINES
            ],
            columns=["method", "estimate", "low", "high", "excludes_zero"],
        )
        for metric, title in DIFFERENCE_PANELS.items()
    }
