"""Survey answers as multiple-choice training and evaluation examples."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from cuma.data.profiles import Profile
from cuma.data.prompt import PromptFormat, option_letters
from cuma.data.survey import Survey


@dataclass(frozen=True)
class SurveyExample:
    """One (respondent, question) pair: the prompt, the lettered options and the answer.

    ``profile_text`` is the profile rendered with the dataset's template; the same text is shown
    in the prompt (when the persona is on) and fed to the demographic encoder. ``embedding`` is
    the encoder's vector for it once `attach_embeddings` has run.
    """

    respondent_id: str
    question_id: str
    profile: Profile
    profile_text: str
    prompt_messages: tuple[dict[str, str], ...]
    option_letters: tuple[str, ...]
    option_codes: tuple[int, ...]
    option_labels: tuple[str, ...]
    target_letter: str
    target_code: int
    scale_min: int
    scale_max: int
    ordinal: bool
    embedding: Any = None

    @property
    def answer(self) -> str:
        """The assistant's answer text: the target letter."""
        return self.target_letter

    @property
    def messages(self) -> list[dict[str, str]]:
        """System, user and assistant messages."""
        return [*self.prompt_messages, {"role": "assistant", "content": self.answer}]


def build_examples(
    survey: Survey,
    *,
    persona: bool = False,
    prompt: PromptFormat | None = None,
    questions: Sequence[str] | None = None,
) -> list[SurveyExample]:
    """One example per answer of ``survey``, in answer-table order.

    Args:
        persona: put the rendered profile in the system prompt (the paper's persona prompting);
            off by default because CuMA receives the profile through the encoder.
        prompt: wording; defaults to the survey's own `PromptFormat`.
        questions: restrict to these question ids.
    """
    prompt = prompt or survey.prompt
    texts = {rid: survey.template.render(p) for rid, p in survey.respondents.items()}
    answers = survey.answers
    if questions is not None:
        unknown = sorted(set(questions) - survey.questions.keys())
        if unknown:
            raise KeyError(f"{survey.source}: unknown question ids {unknown}")
        answers = answers[answers["question_id"].isin(questions)]
    per_question = {}
    for qid, q in survey.questions.items():
        letters = option_letters(len(q.codes))
        user = prompt.user_prompt(q.text, q.labels)
        per_question[qid] = (q, letters, dict(zip(q.codes, letters, strict=True)), user)
    examples = []
    rows = zip(answers["respondent_id"], answers["question_id"], answers["code"], strict=True)
    for rid, qid, code in tqdm(rows, total=len(answers), desc=f"{survey.name} examples", leave=False):
        q, letters, letter_of, user = per_question[qid]
        system = prompt.system_prompt(texts[rid], persona)
        examples.append(
            SurveyExample(
                respondent_id=rid,
                question_id=qid,
                profile=survey.respondents[rid],
                profile_text=texts[rid],
                prompt_messages=({"role": "system", "content": system}, {"role": "user", "content": user}),
                option_letters=letters,
                option_codes=q.codes,
                option_labels=q.labels,
                target_letter=letter_of[int(code)],
                target_code=int(code),
                scale_min=q.scale_min,
                scale_max=q.scale_max,
                ordinal=q.ordinal,
            )
        )
    return examples


def group_fields(examples: Iterable[SurveyExample]) -> list[str]:
    """Profile field names present in ``examples``, in order of first appearance."""
    return list(dict.fromkeys(name for ex in examples for name in ex.profile))


def examples_frame(examples: Sequence[SurveyExample]) -> pd.DataFrame:
    """One row per example with the columns predictions are joined on, plus one column per profile field.

    The columns are the answer columns of the predictions schema (``PREDICTION_INPUT_COLUMNS`` in
    `cuma.metrics.frame`, which `make_predictions` checks) and ``target_letter``, then the fields of
    `group_fields`.
    """
    columns = {
        "respondent_id": [ex.respondent_id for ex in examples],
        "question_id": [ex.question_id for ex in examples],
        "target_code": pd.array([ex.target_code for ex in examples], dtype="int64"),
        "target_letter": [ex.target_letter for ex in examples],
        "option_codes": [list(ex.option_codes) for ex in examples],
        "option_letters": [list(ex.option_letters) for ex in examples],
        "scale_min": pd.array([ex.scale_min for ex in examples], dtype="int64"),
        "scale_max": pd.array([ex.scale_max for ex in examples], dtype="int64"),
        "ordinal": pd.array([ex.ordinal for ex in examples], dtype=bool),
    }
    fields = group_fields(examples)
    clash = sorted(set(fields) & columns.keys())
    if clash:
        raise ValueError(
            f"profile fields {clash} clash with the frame's own columns; rename them in the loader"
        )
    return pd.DataFrame({**columns, **{name: [ex.profile.get(name) for ex in examples] for name in fields}})
