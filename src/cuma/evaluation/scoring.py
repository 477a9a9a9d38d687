"""Multiple-choice scoring: one forward pass per prompt gives a probability over that question's options.

The prompt ends where the assistant's answer letter would start. The logits of the option letters' tokens
at that *answer position* are renormalised with a softmax over those letters only; the argmax is the
prediction. Only the answer position is projected onto the vocabulary (``logits_to_keep`` with one
position per row), so scoring costs one body pass and a [batch, hidden] x [hidden, vocab] product.

Padding is safe on either side: the answer position is the last column with left padding and
``attention_mask.sum - 1`` with right padding, and position ids are computed from the attention mask so
that a padded row sees exactly the positions it would see alone. (The reference read position
``sum - 1`` of left-padded batches, scoring a pad token for every row shorter than the longest.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from cuma.data.examples import SurveyExample, examples_frame
from cuma.data.render import letter_token_ids, render_prompt
from cuma.evaluation.topology import RoutingCollector
from cuma.metrics import make_predictions


def score_examples(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[SurveyExample],
    *,
    use_embeddings: bool = False,
    max_length: int | None = None,
    batch_size: int = 32,
    padding_side: str = "left",
    precision: str = "fp32",
    routing: RoutingCollector | None = None,
    desc: str = "scoring",
) -> pd.DataFrame:
    """Render each example's prompt with the tokenizer's chat template and `score` it.

    ``use_embeddings`` passes each example's ``embedding`` (the frozen encoder vector) as its row of
    ``demographic_embeds``; ``max_length`` makes a longer prompt an error instead of a silent truncation.
    """
    if not examples:
        raise ValueError(f"{desc}: no examples to score")
    prompts = [
        render_prompt(tokenizer, ex.prompt_messages) for ex in tqdm(examples, desc="rendering", leave=False)
    ]
    if max_length is not None:
        for ex, ids in zip(examples, prompts, strict=True):
            if len(ids) > max_length:
                raise ValueError(
                    f"prompt of respondent {ex.respondent_id!r}, question {ex.question_id!r} is {len(ids)} "
                    f"tokens, over data.max_length={max_length}"
                )
    letter_ids: dict[tuple[str, ...], list[int]] = {}
    for ex in examples:
        if ex.option_letters not in letter_ids:
            letter_ids[ex.option_letters] = letter_token_ids(tokenizer, ex.option_letters)
    embeds = _embeddings(examples) if use_embeddings else None
    # The pad id is never attended to; any id works, the tokenizer's own is the natural choice.
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return score(
        model,
        prompts,
        [letter_ids[ex.option_letters] for ex in examples],
        examples_frame(examples),
        pad_token_id=pad,
        demographic_embeds=embeds,
        batch_size=batch_size,
        padding_side=padding_side,
        precision=precision,
        routing=routing,
        desc=desc,
    )


def score(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    option_token_ids: Sequence[Sequence[int]],
    answers: pd.DataFrame,
    *,
    pad_token_id: int,
    demographic_embeds: torch.Tensor | None = None,
    batch_size: int = 32,
    padding_side: str = "left",
    precision: str = "fp32",
    routing: RoutingCollector | None = None,
    desc: str = "scoring",
) -> pd.DataFrame:
    """Score every prompt and return the predictions DataFrame (schema in notes/TEAM.md).

    Args:
        model: a causal LM (or a CuMA / PEFT wrapper) returning ``.logits``.
        prompts: token ids per row, ending right before the answer letter.
        option_token_ids: per row, the single token id of each option letter, in option order.
        answers: per row, the schema's answer columns and profile fields (see ``make_predictions``).
        pad_token_id: id used to pad batches (never attended to).
        demographic_embeds: [rows, dim] raw encoder vector per row, passed to the model per batch;
            None for models that do not route on demographics.
        padding_side: "left" or "right"; both give the same numbers.
        precision: "fp32", or "bf16" for bf16 autocast.
        routing: when given, each batch runs under ``model.record_routing()`` and the recorded
            weights are added to it.
    """
    n = len(prompts)
    if len(option_token_ids) != n or len(answers) != n:
        raise ValueError(
            f"scoring needs one entry per row: {n} prompts, {len(option_token_ids)} option-token lists, "
            f"{len(answers)} answer rows"
        )
    if demographic_embeds is not None and demographic_embeds.shape[0] != n:
        raise ValueError(f"demographic_embeds has {demographic_embeds.shape[0]} rows for {n} prompts")
    for row, ids in enumerate(prompts):
        if len(ids) == 0:
            raise ValueError(f"prompt of row {row} is empty")

    device = next(model.parameters()).device
    # Longest first: similar lengths share a batch (less padding) and memory peaks on the first batch.
    order = sorted(range(n), key=lambda i: -len(prompts[i]))
    probs: list[np.ndarray | None] = [None] * n
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=n, desc=desc, unit="q", leave=False) as bar:
            for rows in _chunks(order, batch_size):
                input_ids, attention_mask = _pad([prompts[i] for i in rows], pad_token_id, padding_side)
                input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
                embeds = None if demographic_embeds is None else demographic_embeds[rows].to(device)
                recorder = model.record_routing() if routing is not None else contextlib.nullcontext()
                with recorder as rec:
                    logits, answer_index = answer_logits(
                        model, input_ids, attention_mask, padding_side, embeds, precision
                    )
                if routing is not None:
                    routing.add(rows, rec.weights, attention_mask, answer_index)
                for i, row in enumerate(rows):
                    letters = torch.as_tensor(option_token_ids[row], device=logits.device)
                    probs[row] = torch.softmax(logits[i, letters].float(), dim=-1).cpu().numpy()
                bar.update(len(rows))
    finally:
        model.train(was_training)
    return make_predictions(answers, probs)


def answer_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    padding_side: str,
    demographic_embeds: torch.Tensor | None = None,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vocabulary logits [batch, vocab] at each row's answer position, and those positions [batch]."""
    if padding_side == "left":
        answer_index = torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, device=input_ids.device)
    else:
        answer_index = attention_mask.sum(dim=1) - 1
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    kwargs = {} if demographic_embeds is None else {"demographic_embeds": demographic_embeds}
    autocast = (
        torch.autocast(input_ids.device.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    with autocast:
        output = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=answer_index[:, None],
            use_cache=False,
            **kwargs,
        )
    return output.logits[:, -1, :], answer_index


def _embeddings(examples: Sequence[SurveyExample]) -> torch.Tensor:
    for i, ex in enumerate(examples):
        if ex.embedding is None:
            raise ValueError(
                f"example {i} (respondent {ex.respondent_id!r}, question {ex.question_id!r}) has no "
                "demographic embedding; encode the profiles before scoring a method that routes on them"
            )
    return torch.stack([torch.as_tensor(ex.embedding, dtype=torch.float32) for ex in examples])


def _pad(rows: Sequence[Sequence[int]], pad_token_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        span = slice(width - len(ids), width) if side == "left" else slice(0, len(ids))
        input_ids[i, span] = torch.as_tensor(ids, dtype=torch.long)
        attention_mask[i, span] = 1
    return input_ids, attention_mask


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
