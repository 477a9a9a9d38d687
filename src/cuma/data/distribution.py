"""Human answer distributions per question and per demographic group."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cuma.data.examples import SurveyExample, examples_frame


def human_distribution(
    examples: Sequence[SurveyExample] | pd.DataFrame, by: str | Sequence[str] = ()
) -> pd.DataFrame:
    """Answer counts and shares per question (and per group of ``by`` profile fields).

    Args:
        examples: survey examples, or a frame from `examples_frame` (or the predictions frame).
        by: profile field(s) to group by; a missing value forms its own group (``None``).

    Returns:
        A long frame with columns ``question_id, *by, code, count, share``: one row per option
        code of each (question, group), zero counts included, options in presentation order;
        shares sum to 1 within each (question, group).
    """
    by = [by] if isinstance(by, str) else list(by)
    frame = examples if isinstance(examples, pd.DataFrame) else examples_frame(examples)
    missing = [c for c in ["question_id", "target_code", "option_codes", *by] if c not in frame.columns]
    if missing:
        raise KeyError(f"cannot compute distributions: no column(s) {missing}; have {list(frame.columns)}")
    keys = ["question_id", *by]
    frame = frame.astype({name: object for name in by})
    options = frame.drop_duplicates("question_id").set_index("question_id")["option_codes"]
    counts = frame.groupby([*keys, "target_code"], dropna=False, sort=False).size()
    rows = []
    for group, size in frame.groupby(keys, dropna=False, sort=False).size().items():
        group = group if isinstance(group, tuple) else (group,)
        for code in options[group[0]]:
            count = int(counts.get((*group, code), 0))
            rows.append((*group, int(code), count, count / size))
    out = pd.DataFrame(rows, columns=[*keys, "code", "count", "share"])
    return out.sort_values(keys, kind="stable", key=lambda s: s.astype(str)).reset_index(drop=True)
