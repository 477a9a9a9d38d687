"""Few-shot prompts: k shots of the query's group, other questions, after the system message, reproducible."""

from __future__ import annotations

import dataclasses

import pytest

from cuma.data.profiles import Profile
from cuma.evaluation.few_shot import add_shots
from test_evaluation_scoring import make_examples


def tagged(n: int) -> list:
    """Examples whose user message names the respondent, so a shot can be traced to its source."""
    return [
        dataclasses.replace(
            ex,
            prompt_messages=(
                ex.prompt_messages[0],
                {"role": "user", "content": f"{ex.prompt_messages[1]['content']} [{ex.respondent_id}]"},
            ),
        )
        for ex in make_examples(n)
    ]


def test_shots_come_from_the_same_group_and_other_questions():
    pool = tagged(30)
    queries = make_examples(6)
    shot = add_shots(queries, pool, k=2, field="sex", seed=0)
    user_of = {ex.prompt_messages[-1]["content"]: ex for ex in pool}
    for query, result in zip(queries, shot, strict=True):
        system, *turns, last = result.prompt_messages
        assert system == query.prompt_messages[0] and last == query.prompt_messages[-1]
        assert [t["role"] for t in turns] == ["user", "assistant"] * 2
        for user, answer in zip(turns[::2], turns[1::2], strict=True):
            source = user_of[user["content"]]
            assert source.question_id != query.question_id
            assert source.profile["sex"] == query.profile["sex"]
            assert answer["content"] in source.option_letters
    assert add_shots(queries, pool, k=2, field="sex", seed=0) == shot
    assert add_shots(queries[::-1], pool, k=2, field="sex", seed=0) == shot[::-1]  # order-independent


def test_a_small_group_borrows_shots_from_the_rest_of_the_pool():
    pool = make_examples(12)
    lonely = dataclasses.replace(make_examples(1)[0], profile=Profile(sex="other"))
    (result,) = add_shots([lonely], pool, k=3, field="sex")
    assert len(result.prompt_messages) == 2 + 2 * 3


def test_bad_settings_are_errors():
    with pytest.raises(ValueError, match="few_shot must be >= 1"):
        add_shots(make_examples(2), make_examples(5), k=0, field="sex")
    with pytest.raises(ValueError, match="at least 4 training examples"):
        add_shots(make_examples(2), make_examples(3), k=4, field="sex")
