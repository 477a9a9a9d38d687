"""Survey metrics: proper scores, accuracy and inequity, WorldValuesBench EMD, distributional alignment, mean
collapse; and the evidence behind the report's intervals (`cuma.metrics.evidence`)."""

from cuma.metrics.bootstrap import BootstrapConfig
from cuma.metrics.classification import (
    accuracy,
    group_accuracy_table,
    macro_f1,
    macro_group_accuracy,
    sigma_inequity,
)
from cuma.metrics.collapse import collapse_rate, collapse_summary, entropy_table, group_spread_table
from cuma.metrics.distribution import (
    POPULATION,
    distribution_summary,
    distribution_table,
    js_distance,
    ordinal_emd,
    total_variation,
)
from cuma.metrics.emd import THRESHOLDS, argmax_emd, emd_coverage, emd_summary, scaled_emd, wvb_emd
from cuma.metrics.evidence import Difference, Evidence, Interval, NoiseFloor, comparison_evidence
from cuma.metrics.frame import (
    PREDICTION_COLUMNS,
    PREDICTION_INPUT_COLUMNS,
    PREDICTIONS_SCHEMA,
    SchemaColumn,
    make_predictions,
)
from cuma.metrics.noise_floor import population_frame
from cuma.metrics.preference import (
    VERDICTS,
    ChoiceAccuracy,
    WinRate,
    choice_accuracy,
    group_win_rates,
    win_rate,
)
from cuma.metrics.proper import answer_scores, brier_score, log_loss
from cuma.metrics.summary import summarize

__all__ = [
    "POPULATION",
    "PREDICTIONS_SCHEMA",
    "PREDICTION_COLUMNS",
    "PREDICTION_INPUT_COLUMNS",
    "THRESHOLDS",
    "VERDICTS",
    "BootstrapConfig",
    "ChoiceAccuracy",
    "Difference",
    "Evidence",
    "Interval",
    "NoiseFloor",
    "SchemaColumn",
    "WinRate",
    "accuracy",
    "answer_scores",
    "argmax_emd",
    "brier_score",
    "choice_accuracy",
    "collapse_rate",
    "collapse_summary",
    "comparison_evidence",
    "distribution_summary",
    "distribution_table",
    "emd_coverage",
    "emd_summary",
    "entropy_table",
    "group_accuracy_table",
    "group_spread_table",
    "group_win_rates",
    "js_distance",
    "log_loss",
    "macro_f1",
    "macro_group_accuracy",
    "make_predictions",
    "ordinal_emd",
    "population_frame",
    "scaled_emd",
    "sigma_inequity",
    "summarize",
    "total_variation",
    "win_rate",
    "wvb_emd",
]
