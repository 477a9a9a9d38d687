"""Multiple-choice scoring: one forward pass per prompt gives a probability over that question's options.

The prompt ends where the assistant's answer letter would start. The logits of the option letters' tokens
at that *answer position* are renormalised with a softmax over those letters only; the argmax is the
prediction. Only the answer position is projected onto the vocabulary (``logits_to_keep`` with one
position per row), so scoring costs one body pass and a [batch, hidden] x [hidden, vocab] product.

Batches come from `cuma.data.collate.PromptCollator`: padding on either side, position ids from the
attention mask (a padded row sees exactly the positions it would see alone), the answer positions, the
option letters' token ids and the demographic vectors. Reading the answer position of every row, not the
last column of a batch whatever its padding, differs from the authors' code; see docs/design.md.

The model is called the way the trainer calls a method, ``model(input_ids, attention_mask,
demographic_embeds=..., position_ids=..., logits_to_keep=...)``: a `cuma.methods.PreparedModel` as it
is, any other causal LM (a bare Hugging Face model, a PEFT or CuMA model: the server's and the tests')
through `method_call`, which maps that call onto Hugging Face's keywords. Accepting either keeps one
scoring path for the comparison, the server and the tests without making every caller build a
`PreparedModel` (which needs a method spec and a base identity that a bare model does not have).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from cuma.data.collate import PromptCollator, answer_positions_from_mask, position_ids_from_mask
from cuma.data.examples import SurveyExample, examples_frame
from cuma.evaluation.topology import RoutingCollector
from cuma.methods import PreparedModel
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
    """Score every example and return the predictions DataFrame (`cuma.metrics.frame.PREDICTIONS_SCHEMA`).

    Every prompt is rendered and checked before the first forward pass, then batched longest first:
    similar lengths share a batch (less padding) and memory peaks on the first batch.

    Args:
        model: a `PreparedModel`, or any causal LM returning ``.logits`` (see the module docstring).
        tokenizer: the model's tokenizer, with a chat template and a pad token.
        examples: multiple-choice examples; their order is the predictions' order.
        use_embeddings: pass each example's ``embedding`` (the frozen encoder vector) as its row of
            ``demographic_embeds``; every example must have one.
        max_length: a longer prompt is an error instead of a silent truncation.
        padding_side: ``"left"`` or ``"right"``; both give the same numbers.
        precision: ``fp32``, or ``bf16`` for bf16 autocast (`cuma.config.Precision`).
        routing: when given, each batch runs under ``model.record_routing()`` and the recorded
            weights are added to it.
        desc: the progress bar's label.
    """
    if not examples:
        raise ValueError(f"{desc}: no examples to score")
    collator = PromptCollator(
        tokenizer, padding_side=padding_side, max_length=max_length, demographics=use_embeddings
    )
    rows = [collator.encode(ex) for ex in tqdm(examples, desc="rendering", leave=False)]
    for ex, row in zip(examples, rows, strict=True):
        if row.option_token_ids is None:
            raise ValueError(
                f"respondent {ex.respondent_id!r}, question {ex.question_id!r}: no option letters to score"
            )
    call = method_call(model)
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].input_ids))
    probs: list[np.ndarray | None] = [None] * len(rows)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(rows), desc=desc, unit="q", leave=False) as bar:
            for chunk in _chunks(order, batch_size):
                batch = collator.collate([rows[i] for i in chunk])
                recorder = model.record_routing() if routing is not None else contextlib.nullcontext()
                with recorder as rec:
                    logits = _forward_answers(call, _tensors_to(batch, device), precision)
                if routing is not None:
                    routing.add(chunk, rec.weights, batch["attention_mask"], batch["answer_positions"])
                for i, letters in enumerate(batch["option_token_ids"]):
                    picked = logits[i, torch.as_tensor(letters, device=logits.device)]
                    probs[chunk[i]] = torch.softmax(picked.float(), dim=-1).cpu().numpy()
                bar.update(len(chunk))
    finally:
        model.train(was_training)
    return make_predictions(examples_frame(examples), probs)


def answer_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    padding_side: str,
    demographic_embeds: torch.Tensor | None = None,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vocabulary logits [batch, vocab] at each row's answer position, and those positions [batch].

    For callers that pad their own batches (the server); positions come from the mask as the
    collator computes them.
    """
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids_from_mask(attention_mask),
        "answer_positions": answer_positions_from_mask(attention_mask, padding_side),
        "demographic_embeds": demographic_embeds,
    }
    return _forward_answers(method_call(model), batch, precision), batch["answer_positions"]


def _forward_answers(call: Callable[..., Any], batch: Mapping[str, Any], precision: str) -> torch.Tensor:
    """One forward pass of ``call`` (the `PreparedModel` call) on a `PromptCollator` batch, projecting
    only the answer positions: logits [batch, vocab]."""
    autocast = (
        torch.autocast(batch["input_ids"].device.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    with autocast:
        output = call(
            batch["input_ids"],
            batch["attention_mask"],
            demographic_embeds=batch.get("demographic_embeds"),
            position_ids=batch["position_ids"],
            logits_to_keep=batch["answer_positions"][:, None],
        )
    return output.logits[:, -1, :]


def method_call(model: nn.Module) -> Callable[..., Any]:
    """``model`` behind the `PreparedModel` call signature: a `PreparedModel` itself, any other model
    through `_hf_call` (Hugging Face keywords, no cache, ``demographic_embeds`` only when given)."""
    return model if isinstance(model, PreparedModel) else partial(_hf_call, model)


def _hf_call(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    demographic_embeds: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    logits_to_keep: int | torch.Tensor = 0,
) -> Any:
    # A bare causal LM has no demographic_embeds argument; a CuMA model takes it.
    extra = {} if demographic_embeds is None else {"demographic_embeds": demographic_embeds}
    return model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=logits_to_keep,
        use_cache=False,
        **extra,
    )


def _tensors_to(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()
    }


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
