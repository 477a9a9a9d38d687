"""Batch collators: padding, the answer-only label mask, and each row's demographic vector.

`SFTCollator` and `PromptCollator` take a list of examples (`SurveyExample`, `ChatExample`, or anything with
``prompt_messages``, ``answer``, ``profile_text`` and ``embedding``) and return a dict whose
tensors line up row by row, so the model always receives the embedding of the right row:

- ``input_ids``, ``attention_mask`` (long [B, T]);
- ``labels`` (`SFTCollator` only; -100 everywhere except the answer tokens);
- ``demographic_embeds`` (float32 [B, D]) when the examples carry precomputed vectors;
- ``profile_texts`` (list[str], not a tensor: pop it before calling the model).

`PromptCollator` also returns ``answer_positions`` (long [B], the last non-pad position whose
logits predict the answer) and, for multiple-choice rows, ``option_token_ids`` (list[list[int]])
and ``target_indices`` (long [B], index of the target letter among the options).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cuma.data.errors import DataError
from cuma.data.render import IGNORE_INDEX, Rendered, letter_token_ids, render_prompt, render_training


def _where(example: Any) -> str:
    keys = ("respondent_id", "question_id", "conversation_id", "turn")
    return ", ".join(f"{k}={getattr(example, k)}" for k in keys if hasattr(example, k)) or "example"


def _pad(rows: Sequence[Sequence[int]], value: int, side: str) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if side == "right":
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        else:
            out[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
    return out


def _embeddings(examples: Sequence[Any]) -> dict[str, torch.Tensor]:
    present = [getattr(ex, "embedding", None) is not None for ex in examples]
    if not any(present):
        return {}
    if not all(present):
        missing = next(ex for ex, p in zip(examples, present, strict=True) if not p)
        raise DataError(
            "some rows of the batch have a demographic embedding and others do not", source=_where(missing)
        )
    rows = [torch.as_tensor(ex.embedding, dtype=torch.float32) for ex in examples]
    return {"demographic_embeds": torch.stack(rows)}


@dataclass
class _Collator:
    tokenizer: Any
    padding_side: str
    max_length: int | None = None
    _letter_ids: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token first")

    def letter_ids(self, letters: Sequence[str]) -> list[int]:
        todo = [x for x in letters if x not in self._letter_ids]
        if todo:
            self._letter_ids.update(zip(todo, letter_token_ids(self.tokenizer, todo), strict=True))
        return [self._letter_ids[x] for x in letters]

    def check_length(self, ids: Sequence[int], example: Any) -> None:
        if self.max_length is not None and len(ids) > self.max_length:
            raise DataError(
                f"rendered example is longer than max_length={self.max_length}",
                source=_where(example),
                value=len(ids),
            )


@dataclass
class SFTCollator(_Collator):
    """Renders prompt + answer, pads, and labels only the answer tokens.

    Attributes:
        tokenizer: a tokenizer with a chat template and a pad token.
        padding_side: ``"right"`` (usual for training) or ``"left"``.
        max_length: raise on longer rows instead of truncating the answer away.
        include_end_of_turn: also label the template's end-of-turn tokens after the answer.
    """

    padding_side: str = "right"
    include_end_of_turn: bool = False

    def check_letter(self, rendered: Rendered, example: Any) -> None:
        """A multiple-choice answer must be the letter's own token, which scoring reads."""
        n_labels = sum(t != IGNORE_INDEX for t in rendered.labels)
        first = rendered.input_ids[rendered.prompt_length]
        if first != self.letter_ids([example.answer])[0] or (n_labels != 1 and not self.include_end_of_turn):
            raise DataError(
                "the answer letter is not a single token after the generation prompt",
                source=_where(example),
                value=self.tokenizer.decode(rendered.input_ids[rendered.prompt_length :]),
            )

    def __call__(self, examples: Sequence[Any]) -> dict[str, Any]:
        ids, labels = [], []
        for ex in examples:
            rendered = render_training(
                self.tokenizer,
                ex.prompt_messages,
                ex.answer,
                include_end_of_turn=self.include_end_of_turn,
                where=_where(ex),
            )
            if getattr(ex, "option_letters", None):
                self.check_letter(rendered, ex)
            self.check_length(rendered.input_ids, ex)
            ids.append(rendered.input_ids)
            labels.append(rendered.labels)
        input_ids = _pad(ids, self.tokenizer.pad_token_id, self.padding_side)
        return {
            "input_ids": input_ids,
            "attention_mask": _pad([[1] * len(r) for r in ids], 0, self.padding_side),
            "labels": _pad(labels, IGNORE_INDEX, self.padding_side),
            **_embeddings(examples),
            "profile_texts": [ex.profile_text for ex in examples],
        }


@dataclass
class PromptCollator(_Collator):
    """Renders prompts that end at the assistant generation prompt, for scoring and generation.

    Attributes:
        tokenizer: a tokenizer with a chat template and a pad token.
        padding_side: ``"left"`` (needed for generation) or ``"right"``; ``answer_positions`` is
            correct either way.
        max_length: raise on longer prompts.
    """

    padding_side: str = "left"

    def __call__(self, examples: Sequence[Any]) -> dict[str, Any]:
        ids = []
        for ex in examples:
            row = render_prompt(self.tokenizer, ex.prompt_messages)
            self.check_length(row, ex)
            ids.append(row)
        mask = _pad([[1] * len(r) for r in ids], 0, self.padding_side)
        width = mask.shape[1]
        last = torch.tensor([len(r) - 1 if self.padding_side == "right" else width - 1 for r in ids])
        batch: dict[str, Any] = {
            "input_ids": _pad(ids, self.tokenizer.pad_token_id, self.padding_side),
            "attention_mask": mask,
            "answer_positions": last,
        }
        if all(getattr(ex, "option_letters", None) for ex in examples):
            batch["option_token_ids"] = [self.letter_ids(ex.option_letters) for ex in examples]
            batch["target_indices"] = torch.tensor(
                [ex.option_letters.index(ex.target_letter) for ex in examples], dtype=torch.long
            )
        return {**batch, **_embeddings(examples), "profile_texts": [ex.profile_text for ex in examples]}


@dataclass
class PreferenceCollator(_Collator):
    """For DPO: renders each `PreferencePair` twice (chosen, rejected), labels only the response.

    Returns ``chosen_input_ids``, ``chosen_attention_mask``, ``chosen_labels`` and the same for
    ``rejected_``, plus ``demographic_embeds`` and ``profile_texts`` (one per pair).

    Attributes:
        tokenizer: a tokenizer with a chat template and a pad token.
        padding_side: ``"right"`` or ``"left"``.
        max_length: raise on longer rows.
        include_end_of_turn: also label the template's end-of-turn tokens (default on: the
            responses are generated text, and the model should learn where they stop).
    """

    padding_side: str = "right"
    include_end_of_turn: bool = True

    def __call__(self, pairs: Sequence[Any]) -> dict[str, Any]:
        batch: dict[str, Any] = {}
        for side in ("chosen", "rejected"):
            ids, labels = [], []
            for pair in pairs:
                rendered = render_training(
                    self.tokenizer,
                    pair.prompt_messages,
                    getattr(pair, side),
                    include_end_of_turn=self.include_end_of_turn,
                    where=_where(pair),
                )
                self.check_length(rendered.input_ids, pair)
                ids.append(rendered.input_ids)
                labels.append(rendered.labels)
            batch[f"{side}_input_ids"] = _pad(ids, self.tokenizer.pad_token_id, self.padding_side)
            batch[f"{side}_attention_mask"] = _pad([[1] * len(r) for r in ids], 0, self.padding_side)
            batch[f"{side}_labels"] = _pad(labels, IGNORE_INDEX, self.padding_side)
        return {**batch, **_embeddings(pairs), "profile_texts": [p.profile_text for p in pairs]}
