"""Chat-template rendering with a loss mask that covers exactly the assistant answer.

The answer's character span is known from rendering the prompt (ending at the generation prompt)
and the full conversation; the tokens inside that span are found through the offset mapping of a
fast tokenizer, so no marker string is searched for and any chat template works, Qwen3's included
(thinking is switched off).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cuma.data.errors import DataError

IGNORE_INDEX = -100
TEMPLATE_KWARGS = {"enable_thinking": False}


@dataclass(frozen=True)
class Rendered:
    """A tokenized training row: ``labels`` is ``IGNORE_INDEX`` outside the answer tokens."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int


def prompt_text(tokenizer: Any, prompt_messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt rendered up to and including the assistant generation prompt."""
    return tokenizer.apply_chat_template(
        list(prompt_messages), tokenize=False, add_generation_prompt=True, **TEMPLATE_KWARGS
    )


def render_prompt(tokenizer: Any, prompt_messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of the prompt, ending at the generation prompt (for scoring and generation)."""
    return tokenizer(prompt_text(tokenizer, prompt_messages), add_special_tokens=False)["input_ids"]


def render_training(
    tokenizer: Any,
    prompt_messages: Sequence[Mapping[str, str]],
    answer: str,
    *,
    include_end_of_turn: bool = False,
    where: object = None,
) -> Rendered:
    """Token ids of prompt + answer, with labels on the answer tokens only.

    Args:
        include_end_of_turn: also train on what the template writes after the answer (e.g.
            ``<|im_end|>``), so a generative model learns to stop.
        where: names the example in error messages.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            "a fast tokenizer is needed: the answer tokens are found through the offset mapping, which "
            "slow tokenizers do not return; load the tokenizer with use_fast=True",
            source=where,
            value=type(tokenizer).__name__,
        )
    if not answer:
        raise DataError("empty assistant answer", source=where)
    prompt = prompt_text(tokenizer, prompt_messages)
    full = tokenizer.apply_chat_template(
        [*prompt_messages, {"role": "assistant", "content": answer}], tokenize=False, **TEMPLATE_KWARGS
    )
    if not full.startswith(prompt):
        raise DataError(
            "the chat template renders the conversation differently from its prompt, so the answer "
            "cannot be located",
            source=where,
            value=prompt[-60:],
        )
    start = len(prompt)
    if not full.startswith(answer, start):
        raise DataError(
            "the chat template writes something between the generation prompt and the answer, so "
            "training and scoring prompts would differ (is enable_thinking honoured?)",
            source=where,
            value=full[start : start + 40],
        )
    end = len(full.rstrip()) if include_end_of_turn else start + len(answer)
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    labels, first = [], None
    for i, (token, (lo, hi)) in enumerate(zip(ids, offsets, strict=True)):
        if lo < start < hi or lo < end < hi:
            raise DataError(
                "a token straddles the answer boundary, so prompt and answer cannot be separated",
                source=where,
                value=full[lo:hi],
            )
        inside = start <= lo and hi <= end and hi > lo
        if inside and first is None:
            first = i
        labels.append(token if inside else IGNORE_INDEX)
    if first is None:
        raise DataError("no token covers the answer", source=where, value=answer)
    return Rendered(input_ids=list(ids), labels=labels, prompt_length=first)


def letter_token_ids(tokenizer: Any, letters: Sequence[str]) -> list[int]:
    """The single token id of each option letter; raise if a letter is not exactly one token."""
    ids = []
    for letter in letters:
        tokens = tokenizer.encode(letter, add_special_tokens=False)
        if len(tokens) != 1:
            name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
            raise DataError(
                f"option letter is {len(tokens)} tokens for tokenizer {name!r}; it must be one token",
                value=letter,
            )
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise DataError("two option letters map to the same token", value=list(letters))
    return ids
