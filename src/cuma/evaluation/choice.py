"""CA-Acc, the paper's discrimination task: which of K candidate responses did this person choose?

Each choice set (`cuma.data.community_alignment`: a prompt, K candidate responses, the annotator's
choice and profile) is shown with its candidates in a permuted order, lettered A, B, ...; the profile is
in the system prompt when the method uses the persona. The model's probabilities of the K letters at the
answer position (one forward pass per prompt, left-padded, position ids from the mask, only the last
position projected; a profile-routed method gets each row's vector) give the prediction, mapped back
through the permutation to the candidate's original index, and `cuma.metrics.preference.choice_accuracy`
scores it against the annotator's choice (chance 1/K) with a bootstrap interval.

An example's permutation comes from ``choice_seed`` and the example's id alone, so it is the same
whatever the batching or the order of the examples; the per-example table records it, so any row can be
checked by hand. Permuting removes the candidates' given order (the annotator's choice may correlate with
it) from what the model can exploit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cuma.config import PreferenceEvalConfig
from cuma.data.collate import PromptCollator
from cuma.data.community_alignment import CHOICE_FORMAT
from cuma.data.errors import DataError
from cuma.data.examples import SurveyExample, group_fields
from cuma.data.prompt import PromptFormat
from cuma.evaluation.preference import bootstrap_settings, inference
from cuma.methods import PreparedModel
from cuma.metrics.preference import ChoiceAccuracy, choice_accuracy

CHOICE_COLUMNS = (
    "respondent_id",
    "question_id",
    "permutation",
    "option_letters",
    "probs",
    "predicted_letter",
    "target_letter",
    "predicted",
    "target",
    "correct",
)
"""Columns of the CA-Acc table before the profile fields. ``permutation[j]`` is the original index of
the candidate shown at ``option_letters[j]``; ``probs`` follow the shown letters and sum to 1;
``predicted`` and ``target`` are original candidate indices, ``predicted_letter`` and ``target_letter``
the shown letters."""


@dataclass(frozen=True)
class ChoiceEvaluation:
    """What `evaluate_choice_accuracy` finds.

    Attributes:
        accuracy: CA-Acc, its chance level and its bootstrap interval over choice sets.
        table: one row per choice set: `CHOICE_COLUMNS` and one column per profile field.
    """

    accuracy: ChoiceAccuracy
    table: pd.DataFrame


def _where(example: SurveyExample) -> str:
    return f"respondent_id={example.respondent_id}, question_id={example.question_id}"


def choice_permutation(example: SurveyExample, seed: int) -> tuple[int, ...]:
    """The example's option order: ``permutation[j]`` is the original index of the option shown at
    letter j, drawn from ``seed`` and the example's (respondent_id, question_id)."""
    key = f"{example.respondent_id}\x1f{example.question_id}".encode()
    digest = int.from_bytes(hashlib.sha256(key).digest()[:8], "little")
    rng = np.random.default_rng([seed, digest])
    return tuple(int(i) for i in rng.permutation(len(example.option_labels)))


def permute_choice(
    example: SurveyExample,
    permutation: Sequence[int],
    *,
    persona: bool,
    fmt: PromptFormat = CHOICE_FORMAT,
) -> SurveyExample:
    """``example`` with its options shown in ``permutation``'s order and its system prompt rebuilt with
    or without the persona; letters stay A, B, ... and the target letter follows its option.

    ``fmt`` must be the format the loader wrote the prompt with: the question is read back from the user
    message by removing the options block ``fmt`` writes.
    """
    k = len(example.option_labels)
    if sorted(permutation) != list(range(k)):
        raise ValueError(f"{_where(example)}: {list(permutation)} is not a permutation of its {k} options")
    user = [m for m in example.prompt_messages if m["role"] == "user"]
    options = fmt.user_prompt("", example.option_labels)
    if len(user) != 1 or not user[0]["content"].endswith(options):
        raise DataError(
            "the choice prompt is not one user message ending with its options as the given PromptFormat "
            "writes them; pass the format the loader used",
            source=_where(example),
        )
    question = user[0]["content"][: -len(options)]
    labels = tuple(example.option_labels[i] for i in permutation)
    target = example.option_letters.index(example.target_letter)
    return replace(
        example,
        prompt_messages=fmt.messages(question, labels, example.profile_text, persona),
        option_labels=labels,
        option_codes=tuple(example.option_codes[i] for i in permutation),
        target_letter=example.option_letters[list(permutation).index(target)],
    )


def evaluate_choice_accuracy(
    prepared: PreparedModel,
    tokenizer: Any,
    choice_sets: Sequence[SurveyExample],
    config: PreferenceEvalConfig,
    *,
    fmt: PromptFormat = CHOICE_FORMAT,
    desc: str = "CA-Acc",
) -> ChoiceEvaluation:
    """CA-Acc of ``prepared`` on ``choice_sets`` (`cuma.data.chat.ChatData.choice`), with the table.

    Every prompt is rendered and checked (``config.max_length``, single-token letters, the profile's
    vector for a profile-routed method) before the first forward pass. ``prepared.persona_in_prompt``
    decides whether the profile is in the system prompt.
    """
    if not choice_sets:
        raise ValueError(f"{desc}: no choice sets to score")
    fields = group_fields(choice_sets)
    clash = sorted(set(fields) & set(CHOICE_COLUMNS))
    if clash:
        raise ValueError(f"profile fields {clash} clash with the CA-Acc table's own columns; rename them")
    permutations = [choice_permutation(ex, config.choice_seed) for ex in choice_sets]
    shown = [
        permute_choice(ex, perm, persona=prepared.persona_in_prompt, fmt=fmt)
        for ex, perm in zip(choice_sets, permutations, strict=True)
    ]
    probs = _letter_probs(prepared, tokenizer, shown, config, desc)
    best = [int(np.argmax(p)) for p in probs]
    predicted = [perm[j] for perm, j in zip(permutations, best, strict=True)]
    targets = [ex.option_letters.index(ex.target_letter) for ex in choice_sets]
    accuracy = choice_accuracy(
        predicted, targets, [len(perm) for perm in permutations], bootstrap=bootstrap_settings(config)
    )
    table = pd.DataFrame(
        {
            "respondent_id": [ex.respondent_id for ex in choice_sets],
            "question_id": [ex.question_id for ex in choice_sets],
            "permutation": [list(perm) for perm in permutations],
            "option_letters": [list(ex.option_letters) for ex in shown],
            "probs": [p.tolist() for p in probs],
            "predicted_letter": [
                ex.option_letters[int(np.argmax(p))] for ex, p in zip(shown, probs, strict=True)
            ],
            "target_letter": [ex.target_letter for ex in shown],
            "predicted": predicted,
            "target": targets,
            "correct": [p == t for p, t in zip(predicted, targets, strict=True)],
            **{name: [ex.profile.get(name) for ex in choice_sets] for name in fields},
        }
    )
    return ChoiceEvaluation(accuracy, table)


def _letter_probs(
    prepared: PreparedModel,
    tokenizer: Any,
    examples: Sequence[SurveyExample],
    config: PreferenceEvalConfig,
    desc: str,
) -> list[np.ndarray]:
    """Each example's letter probabilities at its answer position (the last one: left padding),
    renormalised over its letters, in the examples' order; batches run longest first."""
    collator = PromptCollator(
        tokenizer, padding_side="left", max_length=config.max_length, demographics=prepared.uses_demographics
    )
    rows = [collator.encode(ex) for ex in tqdm(examples, desc="rendering", leave=False)]
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].input_ids))
    probs: list[np.ndarray] = [np.empty(0)] * len(rows)
    with inference(prepared) as device, tqdm(total=len(rows), desc=desc, unit="set", leave=False) as bar:
        for start in range(0, len(order), config.batch_size):
            chunk = order[start : start + config.batch_size]
            batch = collator.collate([rows[i] for i in chunk])
            embeds = batch.get("demographic_embeds")
            output = prepared(
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                demographic_embeds=None if embeds is None else embeds.to(device),
                position_ids=batch["position_ids"].to(device),
                logits_to_keep=1,
            )
            last = output.logits[:, -1].float()
            for row, i in enumerate(chunk):
                letters = torch.as_tensor(batch["option_token_ids"][row], device=last.device)
                probs[i] = torch.softmax(last[row, letters], dim=-1).cpu().numpy()
            bar.update(len(chunk))
    return probs
