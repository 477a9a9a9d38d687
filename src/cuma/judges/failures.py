"""Stopping a run whose judge fails too often, instead of training or scoring on a handful of verdicts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from cuma.errors import CumaError
from cuma.judges.verdict import Verdict


class JudgeFailureError(CumaError, RuntimeError):
    """More judge verdicts failed than a run allows."""


def check_failure_share(verdicts: Sequence[Verdict], max_share: float) -> float:
    """The share of failed verdicts; raises ``JudgeFailureError`` naming the commonest reasons when it
    is over ``max_share``. No verdicts is a share of 0."""
    if isinstance(max_share, bool) or not isinstance(max_share, (int, float)) or not 0 <= max_share <= 1:
        raise ValueError(f"max_share must be a share between 0 and 1; got {max_share!r}")
    failed = [v.reason for v in verdicts if v.failed]
    share = len(failed) / len(verdicts) if verdicts else 0.0
    if share > max_share:
        reasons = "; ".join(f"{count}x {reason}" for reason, count in Counter(failed).most_common(3))
        raise JudgeFailureError(
            f"{len(failed)} of {len(verdicts)} judge verdicts failed ({share:.1%}, more than the allowed "
            f"{max_share:.1%}); commonest reasons: {reasons}"
        )
    return share
