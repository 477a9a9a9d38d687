"""Judges of which response a person with a given demographic profile would prefer.

Usage::

    judge = build_judge(JudgeConfig(kind="http", base_url="http://127.0.0.1:8000/v1", model="judge",
                                    api_key_env="JUDGE_API_KEY"))
    verdicts = judge.judge_many([(profile, prompt, response_a, response_b), ...])
    check_failure_share(verdicts, config.max_failure_share)

Every judge answers with `Verdict` ("a", "b", "tie" or "failed", plus the raw judge output) and keeps
`JudgeCounts`. The names below load on first use, so the HTTP judge and the config do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cuma.lazy import lazy_exports

if TYPE_CHECKING:
    from cuma.config import JudgeConfig
    from cuma.judges.base import Judge
    from cuma.judges.both_orders import BothOrdersJudge, combine_orders, judge_both_orders
    from cuma.judges.build import build_judge
    from cuma.judges.cache import VerdictCache
    from cuma.judges.callable_judge import CallableJudge
    from cuma.judges.counts import JudgeCounts
    from cuma.judges.failures import JudgeFailureError, check_failure_share
    from cuma.judges.http_judge import BUDGET_EXHAUSTED, HTTPJudge
    from cuma.judges.local_judge import LocalJudge
    from cuma.judges.parsing import parse_verdict
    from cuma.judges.prompt import PROMPTS, JudgePrompt, judge_prompt, load_prompt
    from cuma.judges.verdict import CHOICES, JudgeItem, Verdict

_HOMES = {
    "Judge": "cuma.judges.base",
    "BothOrdersJudge": "cuma.judges.both_orders",
    "combine_orders": "cuma.judges.both_orders",
    "judge_both_orders": "cuma.judges.both_orders",
    "build_judge": "cuma.judges.build",
    "VerdictCache": "cuma.judges.cache",
    "CallableJudge": "cuma.judges.callable_judge",
    "JudgeConfig": "cuma.config",
    "JudgeCounts": "cuma.judges.counts",
    "JudgeFailureError": "cuma.judges.failures",
    "check_failure_share": "cuma.judges.failures",
    "BUDGET_EXHAUSTED": "cuma.judges.http_judge",
    "HTTPJudge": "cuma.judges.http_judge",
    "LocalJudge": "cuma.judges.local_judge",
    "parse_verdict": "cuma.judges.parsing",
    "PROMPTS": "cuma.judges.prompt",
    "judge_prompt": "cuma.judges.prompt",
    "JudgePrompt": "cuma.judges.prompt",
    "load_prompt": "cuma.judges.prompt",
    "CHOICES": "cuma.judges.verdict",
    "JudgeItem": "cuma.judges.verdict",
    "Verdict": "cuma.judges.verdict",
}

__all__ = [
    "BUDGET_EXHAUSTED",
    "CHOICES",
    "PROMPTS",
    "BothOrdersJudge",
    "CallableJudge",
    "HTTPJudge",
    "Judge",
    "JudgeConfig",
    "JudgeCounts",
    "JudgeFailureError",
    "JudgeItem",
    "JudgePrompt",
    "LocalJudge",
    "Verdict",
    "VerdictCache",
    "build_judge",
    "check_failure_share",
    "combine_orders",
    "judge_both_orders",
    "judge_prompt",
    "load_prompt",
    "parse_verdict",
]
__getattr__ = lazy_exports("cuma.judges", _HOMES)
