"""`LocalJudge`: a Hugging Face causal LM as the judge, read off its next-token probabilities.

The judge prompt is rendered with the tokenizer's chat template and the answer is started with ``[[``;
the model's probabilities of ``A``, ``B`` and ``C`` at the next position, renormalised over the three,
are the verdict. Nothing is generated, so the verdict is deterministic and costs one forward pass.
"""

from __future__ import annotations

import inspect

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cuma.judges.base import Judge
from cuma.judges.parsing import VERDICT_LETTERS
from cuma.judges.prompt import JudgePrompt
from cuma.judges.verdict import JudgeItem, Verdict

ANSWER_PREFIX = "[["


class LocalJudge(Judge):
    """Verdicts from a causal LM's probabilities of the verdict letters after ``[[``.

    Args:
        model, tokenizer: any causal LM and its tokenizer, which must have a chat template.
        prompt: the judge prompt (default: the built-in one).
        batch_size: prompts per forward pass.
        max_length: longest judge prompt in tokens; longer ones fail with the reason. Default: the
            model's ``max_position_embeddings``.
        min_mass: least total probability the model must put on the three letters; below it the model
            is not answering in the verdict format and the verdict fails. 0 accepts any.
        progress: show a progress bar over the batches.

    ``raw`` records ``{"probs": {"A": p, "B": p, "C": p}, "mass": m}``: the renormalised probabilities
    (summing to 1) and the share of the full distribution they had.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompt: JudgePrompt | None = None,
        *,
        batch_size: int = 8,
        max_length: int | None = None,
        min_mass: float = 0.0,
        progress: bool = False,
    ) -> None:
        super().__init__(progress=progress)
        if not getattr(tokenizer, "chat_template", None):
            name = tokenizer.name_or_path
            raise ValueError(f"LocalJudge needs a tokenizer with a chat template; {name} has none")
        if batch_size < 1:
            raise ValueError(f"LocalJudge batch_size must be >= 1; got {batch_size}")
        if not 0.0 <= min_mass <= 1.0:
            raise ValueError(f"LocalJudge min_mass must be between 0 and 1; got {min_mass}")
        self.model, self.tokenizer = model, tokenizer
        self.prompt = prompt or JudgePrompt()
        self.batch_size, self.min_mass = batch_size, min_mass
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", None)
        self.letters = tuple(VERDICT_LETTERS)
        self.letter_ids = self._letter_ids()
        # Models that can compute logits at the last position only spare a [batch, length, vocab] tensor.
        self._last_only = "logits_to_keep" in inspect.signature(model.forward).parameters

    def _encode(self, item: JudgeItem) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            self.prompt.messages(item), tokenize=False, add_generation_prompt=True
        )
        return self.tokenizer.encode(text + ANSWER_PREFIX, add_special_tokens=False)

    def _letter_ids(self) -> list[int]:
        """The token of each letter right after the prefix; an error if the tokenizer merges them."""
        probe = self.tokenizer.apply_chat_template(
            self.prompt.messages(JudgeItem("Country: Norway", "Q?", "yes", "no")),
            tokenize=False,
            add_generation_prompt=True,
        )
        start = self.tokenizer.encode(probe + ANSWER_PREFIX, add_special_tokens=False)
        ids = []
        for letter in self.letters:
            full = self.tokenizer.encode(probe + ANSWER_PREFIX + letter, add_special_tokens=False)
            if len(full) != len(start) + 1 or full[: len(start)] != start:
                raise ValueError(
                    f"LocalJudge: the tokenizer {self.tokenizer.name_or_path} does not give {letter!r} its "
                    f"own token after {ANSWER_PREFIX!r}, so its probability cannot be read at one position"
                )
            ids.append(full[-1])
        return ids

    @torch.no_grad()
    def _judge_items(self, items: list[JudgeItem]) -> list[Verdict]:
        encoded = [self._encode(item) for item in items]
        verdicts: dict[int, Verdict] = {}
        scored = []
        for index, ids in enumerate(encoded):
            if self.max_length is not None and len(ids) > self.max_length:
                verdicts[index] = Verdict.failure(
                    f"the judge prompt is {len(ids)} tokens, over the judge's max_length {self.max_length}"
                )
            else:
                scored.append(index)
        batches = [scored[i : i + self.batch_size] for i in range(0, len(scored), self.batch_size)]
        for batch in tqdm(batches, desc="judging", disable=not self.progress, leave=False):
            probs, mass = self._letter_probs([encoded[i] for i in batch])
            self._counter.add(requests=len(batch))
            for index, row, row_mass in zip(batch, probs.tolist(), mass.tolist(), strict=True):
                verdicts[index] = self._verdict(row, row_mass)
        return [verdicts[index] for index in range(len(items))]

    def _letter_probs(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The letters' probabilities [len(rows), 3] at each row's next position, renormalised over the
        three, and their total probability [len(rows)] before renormalising.

        Rows are left-padded, so every row's next position is the last one, and get position ids that
        start at 0 on their first real token, so each row's logits are those it has alone.
        """
        device = next(self.model.parameters()).device
        width = max(len(ids) for ids in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(rows):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)
        output = self.model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            **({"logits_to_keep": 1} if self._last_only else {}),
        )
        last = output.logits[:, -1].float()
        letters = last[:, self.letter_ids]
        mass = (letters.logsumexp(dim=-1) - last.logsumexp(dim=-1)).exp()
        return letters.softmax(dim=-1).cpu(), mass.cpu()

    def _verdict(self, probs: list[float], mass: float) -> Verdict:
        raw = {"probs": dict(zip(self.letters, probs, strict=True)), "mass": mass}
        if mass < self.min_mass:
            reason = (
                f"the judge put {mass:.3g} probability on the verdict letters, under min_mass {self.min_mass}"
            )
            return Verdict.failure(reason, raw)
        best = max(range(len(probs)), key=probs.__getitem__)
        return Verdict(VERDICT_LETTERS[self.letters[best]], raw)
