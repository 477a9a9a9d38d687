"""Few-shot prompting: answered questions of training respondents from the same group, before the query.

As in the reference few-shot baseline (reference notes 4.8): k examples are drawn from the training pool
of the query respondent's main group (any group when that one has too few), and their (user question,
assistant letter) pairs are inserted after the system message. Unlike the reference, the draw is seeded
by the query's ids with a string seed, so it is the same in every process and under any PYTHONHASHSEED.

Public API::

    add_few_shot(examples, pool, k, group_field, seed=0) -> list[SurveyExample]
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def add_few_shot(
    examples: Sequence[Any], pool: Sequence[Any], k: int, group_field: str, seed: int = 0
) -> list[Any]:
    """Copies of ``examples`` whose prompts carry ``k`` solved examples drawn from ``pool``.

    Examples are dataclasses with ``respondent_id``, ``question_id``, ``profile`` (a mapping),
    ``prompt_messages`` (system message first, the query's user message last) and ``answer``.
    A pool example of the query's own respondent is never drawn.
    """
    if k < 0:
        raise ValueError(f"eval.few_shot={k}: must be >= 0")
    if k and len(pool) < k + 1:
        raise ValueError(f"few-shot needs more than {k} training examples in the pool, got {len(pool)}")
    by_group: dict[Any, list[Any]] = defaultdict(list)
    for ex in pool:
        if group_field not in ex.profile:
            raise KeyError(
                f"few-shot group field {group_field!r} is not in the profile of {ex.respondent_id}"
            )
        by_group[ex.profile[group_field]].append(ex)
    return [_with_shots(ex, _draw(ex, by_group, pool, k, group_field, seed)) for ex in examples]


def _draw(
    ex: Any, by_group: dict[Any, list[Any]], pool: Sequence[Any], k: int, field: str, seed: int
) -> list[Any]:
    rng = random.Random(f"{seed}:{ex.respondent_id}:{ex.question_id}")
    same = [p for p in by_group.get(ex.profile.get(field), []) if p.respondent_id != ex.respondent_id]
    candidates = same if len(same) >= k else [p for p in pool if p.respondent_id != ex.respondent_id]
    return rng.sample(candidates, k)


def _with_shots(ex: Any, shots: list[Any]) -> Any:
    system, *rest = ex.prompt_messages
    if system["role"] != "system":
        raise ValueError(f"few-shot expects a system message first in {ex.respondent_id}/{ex.question_id}")
    pairs = []
    for shot in shots:
        pairs += [dict(shot.prompt_messages[-1]), {"role": "assistant", "content": shot.answer}]
    return dataclasses.replace(ex, prompt_messages=(system, *pairs, *rest))
