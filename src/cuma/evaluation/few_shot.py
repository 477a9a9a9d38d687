"""Few-shot prompting: k answered questions from training respondents of the same group go before the query.

The shots come from respondents who share the query's value of one profile field (``eval.main_group``;
the authors' baseline used the country, see docs/design.md) and are inserted after the system message
as (user question, assistant letter) turns. The draw is seeded per query, so it is reproducible and does
not depend on the order or batching of the other queries.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np

from cuma.data.examples import SurveyExample


def add_shots(
    examples: Sequence[SurveyExample], pool: Sequence[SurveyExample], k: int, field: str, seed: int = 0
) -> list[SurveyExample]:
    """Copies of ``examples`` whose prompt carries ``k`` shots drawn from ``pool`` (training examples).

    Shots share the query's ``field`` value and differ from its question; when fewer than ``k`` such
    shots exist the rest of the pool (other questions) is used.
    """
    if k < 1:
        raise ValueError(f"eval.few_shot must be >= 1 for the few-shot method, got {k}")
    if len(pool) < k:
        raise ValueError(f"few-shot needs at least {k} training examples, got {len(pool)}")
    by_group: dict[str | None, list[int]] = {}
    for i, ex in enumerate(pool):
        by_group.setdefault(ex.profile.get(field), []).append(i)
    everyone = np.arange(len(pool))
    result = []
    for ex in examples:
        rng = np.random.default_rng([seed, zlib.crc32(f"{ex.respondent_id}\x00{ex.question_id}".encode())])
        same = [i for i in by_group.get(ex.profile.get(field), []) if pool[i].question_id != ex.question_id]
        chosen = list(rng.choice(same, size=min(k, len(same)), replace=False)) if same else []
        if len(chosen) < k:
            taken = set(chosen)
            rest = [i for i in everyone if i not in taken and pool[i].question_id != ex.question_id]
            chosen += list(rng.choice(rest, size=k - len(chosen), replace=False))
        system, *query = ex.prompt_messages
        shots = []
        for i in chosen:
            shot = pool[i]
            shots += [shot.prompt_messages[-1], {"role": "assistant", "content": shot.target_letter}]
        result.append(dataclasses.replace(ex, prompt_messages=(system, *shots, *query)))
    return result
