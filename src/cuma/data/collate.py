"""Batch collators: padding, the answer-only label mask, and each row's demographic vector.

`SFTCollator`, `PromptCollator` and `PreferenceCollator` take a list of examples (`SurveyExample`,
`ChatExample`, or anything with ``prompt_messages``, ``answer``, ``profile_text`` and ``embedding``) and
return a dict whose tensors line up row by row, so the model always receives the embedding of the right
row. Its keys are fixed by the collator and its settings, never by which rows a batch happens to hold
(a batch mixing rows with and without an embedding, or with and without option letters, is an error):

- ``input_ids``, ``attention_mask`` (long [B, T]);
- ``labels`` (`SFTCollator` only; -100 everywhere except the answer tokens);
- ``demographic_embeds`` (float32 [B, D]) when the examples carry precomputed vectors;
- ``profile_texts`` (list[str], not a tensor: pop it before calling the model).

`RolloutCollator` (GRPO prompts) returns the left-padded prompts, the vectors and the ``examples``.

`PromptCollator` also returns ``position_ids`` (long [B, T], from the attention mask: a padded row sees
the positions it would see alone), ``answer_positions`` (long [B], the last prompt position, whose
logits predict the answer) and, for multiple-choice rows, ``option_token_ids`` (list[list[int]], each
option letter's token) and ``target_indices`` (long [B], index of the target letter among the options).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import torch

from cuma.config import PaddingSide
from cuma.data.errors import DataError
from cuma.data.render import IGNORE_INDEX, Rendered, letter_token_ids, render_prompt, render_training

PADDING_SIDES: tuple[str, ...] = get_args(PaddingSide)
"""Where padding goes: ``"left"`` or ``"right"`` (the values ``eval.padding_side`` allows)."""


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


def pad_token_rows(
    rows: Sequence[Sequence[int]], pad_token_id: int, side: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows padded on ``side`` to the longest, and the attention mask (1 on real tokens), long
    [B, T]: the padding of every collator here and of the server's batches."""
    return _pad(rows, pad_token_id, side), _pad([[1] * len(r) for r in rows], 0, side)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over attended tokens only, so a padded row sees the positions it would alone."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def answer_positions_from_mask(attention_mask: torch.Tensor, padding_side: str) -> torch.Tensor:
    """Each row's last attended position: the last column with left padding, ``sum - 1`` with right."""
    if padding_side == "left":
        return torch.full(
            (attention_mask.shape[0],), attention_mask.shape[1] - 1, device=attention_mask.device
        )
    return attention_mask.long().sum(dim=1) - 1


def _embeddings(examples: Sequence[Any]) -> dict[str, torch.Tensor]:
    """The rows' vectors when every row has one, nothing when none has; a mixed batch is an error."""
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
        if self.padding_side not in PADDING_SIDES:
            raise ValueError(f"padding_side must be one of {PADDING_SIDES}, got {self.padding_side!r}")
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
        input_ids, attention_mask = pad_token_rows(ids, self.tokenizer.pad_token_id, self.padding_side)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": _pad(labels, IGNORE_INDEX, self.padding_side),
            **_embeddings(examples),
            "profile_texts": [ex.profile_text for ex in examples],
        }


@dataclass(frozen=True)
class EncodedPrompt:
    """One example's prompt, rendered and checked, before padding (`PromptCollator.encode`).

    Attributes:
        example: the example it came from.
        input_ids: prompt token ids, ending at the generation prompt.
        option_token_ids: each option letter's single token, in option order; None without options.
    """

    example: Any
    input_ids: list[int]
    option_token_ids: list[int] | None


@dataclass
class PromptCollator(_Collator):
    """Renders prompts that end at the assistant generation prompt, for scoring and generation.

    Collating is two steps, `encode` (render and check one example) and `collate` (pad encoded rows), so
    that a caller can render every example once and then batch them by length; calling the collator on
    examples does both.

    Attributes:
        tokenizer: a tokenizer with a chat template and a pad token.
        padding_side: ``"left"`` (needed for generation) or ``"right"``; ``answer_positions`` and
            ``position_ids`` are correct either way.
        max_length: raise on longer prompts.
        demographics: ``None`` passes ``demographic_embeds`` when the examples carry vectors; ``True``
            requires a vector on every row (for a model that routes on them) and ``False`` never passes
            one (for a model that does not take them).
    """

    padding_side: str = "left"
    demographics: bool | None = None

    def encode(self, example: Any) -> EncodedPrompt:
        """Render one example's prompt and check its length, its letters and, if required, its vector."""
        ids = render_prompt(self.tokenizer, example.prompt_messages)
        self.check_length(ids, example)
        if self.demographics and getattr(example, "embedding", None) is None:
            raise DataError(
                "no demographic embedding; encode the profiles before scoring or generating with a model "
                "that routes on them",
                source=_where(example),
            )
        letters = getattr(example, "option_letters", None)
        return EncodedPrompt(example, ids, self.letter_ids(letters) if letters else None)

    def collate(self, rows: Sequence[EncodedPrompt]) -> dict[str, Any]:
        """Pad encoded prompts into one batch (keys in the module docstring)."""
        if not rows:
            raise ValueError("cannot collate an empty batch")
        ids = [row.input_ids for row in rows]
        examples = [row.example for row in rows]
        input_ids, mask = pad_token_rows(ids, self.tokenizer.pad_token_id, self.padding_side)
        batch: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "position_ids": position_ids_from_mask(mask),
            "answer_positions": answer_positions_from_mask(mask, self.padding_side),
        }
        with_options = [row.option_token_ids is not None for row in rows]
        if all(with_options):
            batch["option_token_ids"] = [row.option_token_ids for row in rows]
            batch["target_indices"] = torch.tensor(
                [ex.option_letters.index(ex.target_letter) for ex in examples], dtype=torch.long
            )
        elif any(with_options):
            odd = rows[with_options.index(False)].example
            raise DataError(
                "some rows of the batch have option letters and others do not", source=_where(odd)
            )
        embeds = {} if self.demographics is False else _embeddings(examples)
        return {**batch, **embeds, "profile_texts": [ex.profile_text for ex in examples]}

    def __call__(self, examples: Sequence[Any]) -> dict[str, Any]:
        return self.collate([self.encode(ex) for ex in examples])


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
            input_ids, attention_mask = pad_token_rows(ids, self.tokenizer.pad_token_id, self.padding_side)
            batch[f"{side}_input_ids"] = input_ids
            batch[f"{side}_attention_mask"] = attention_mask
            batch[f"{side}_labels"] = _pad(labels, IGNORE_INDEX, self.padding_side)
        return {**batch, **_embeddings(pairs), "profile_texts": [p.profile_text for p in pairs]}


@dataclass
class RolloutCollator(_Collator):
    """For GRPO rollouts: each example's prompt, left-padded (generation appends on the right), its
    ``demographic_embeds`` row, and the ``examples`` themselves, whose answers the rewards read."""

    padding_side: str = "left"

    def __call__(self, examples: Sequence[Any]) -> dict[str, Any]:
        rows = []
        for ex in examples:
            ids = render_prompt(self.tokenizer, ex.prompt_messages)
            self.check_length(ids, ex)
            rows.append(ids)
        input_ids, attention_mask = pad_token_rows(rows, self.tokenizer.pad_token_id, self.padding_side)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "examples": list(examples)}
        return {**batch, **_embeddings(examples)}
