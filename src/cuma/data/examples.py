"""Survey answers as multiple-choice training and evaluation examples, in any option order.

An example keeps its options in the question's own order (the survey spec's, which the predictions and
every metric use) and records the order they are shown in (``permutation``), each option carrying the
letter it is shown with. The scorer reads the letters' probabilities in the example's ``option_letters``
order, so they come back in the question's order whatever was shown, and the predictions stay comparable
across orders (`average_orders` joins the same examples scored in several).

A question with a non-substantive option whose place on a questionnaire is fixed ("Other", "Don't know",
"Hard to say": `FIXED_POSITION_LABEL`) cannot be shown in another order; `check_arrangeable` says so,
naming the question, before any model work.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cuma.data.errors import DataError
from cuma.data.profiles import Profile
from cuma.data.prompt import PromptFormat, option_letters, option_permutation
from cuma.data.survey import Survey
from cuma.metrics.frame import make_predictions

FIXED_POSITION_LABEL = re.compile(
    r"^\W*(other\b|none of (the above|these)\b|(i )?(don'?t|do not) know\b|not sure\b|hard to say\b"
    r"|can'?t (choose|say)\b|cannot (choose|say)\b|no opinion\b|no answer\b|refused?\b|prefer not\b)",
    re.IGNORECASE,
)
"""Option labels that mark a non-substantive answer kept at its place on a questionnaire (matched at the
label's start, so "Do good to other people" is a substantive option)."""


@dataclass(frozen=True)
class SurveyExample:
    """One (respondent, question) pair: the prompt, the lettered options and the answer.

    ``profile_text`` is the profile rendered with the dataset's template; the same text is shown
    in the prompt (when the persona is on) and fed to the demographic encoder. ``embedding`` is
    the encoder's vector for it once `attach_embeddings` has run.

    ``option_codes``, ``option_labels`` and ``option_letters`` are aligned in the question's own option
    order; ``option_letters[i]`` is the letter option i is shown with. ``permutation[j]`` is the index of
    the option shown at letter j (`cuma.data.prompt.option_permutation`); None: shown in the question's
    order, lettered A, B, ...
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
    permutation: tuple[int, ...] | None = None

    @property
    def shown_order(self) -> tuple[int, ...]:
        """The index of the option shown at each letter, A first."""
        return tuple(range(len(self.option_codes))) if self.permutation is None else self.permutation

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
    arrangement: str = "fixed",
    seed: int = 0,
) -> list[SurveyExample]:
    """One example per answer of ``survey``, in answer-table order.

    Args:
        persona: put the rendered profile in the system prompt (the paper's persona prompting);
            off by default because CuMA receives the profile through the encoder.
        prompt: wording; defaults to the survey's own `PromptFormat`.
        questions: restrict to these question ids.
        arrangement: the options' order, one of `cuma.data.prompt.ARRANGEMENTS` (see `arrange`).
        seed: the seed of the ``shuffled`` arrangement.
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
                permutation=tuple(range(len(q.codes))),
            )
        )
    if arrangement == "fixed":
        return examples
    return arrange(examples, survey, arrangement, seed=seed, persona=persona, prompt=prompt)


def check_arrangeable(survey: Survey, asked: str, questions: Iterable[str] | None = None) -> None:
    """Raise `DataError` naming the first question (of ``questions``, default all) with an option whose
    label marks a fixed position (`FIXED_POSITION_LABEL`); ``asked`` names what wanted another order."""
    for qid in survey.questions if questions is None else questions:
        q = survey.questions[qid]
        for code, label in zip(q.codes, q.labels, strict=True):
            if FIXED_POSITION_LABEL.match(label):
                raise DataError(
                    f"{asked}: question {qid!r} has option {code} {label!r}, a non-substantive answer whose "
                    "place on the questionnaire is fixed, so its options cannot be reordered; use "
                    "data.option_order=fixed, or drop those answers (list the code under the question's "
                    "missing codes in the survey spec)",
                    source=survey.source,
                    column=qid,
                    value=label,
                )


def arrange(
    examples: Iterable[SurveyExample],
    survey: Survey,
    arrangement: str,
    *,
    seed: int,
    persona: bool,
    prompt: PromptFormat | None = None,
) -> list[SurveyExample]:
    """Copies of ``survey``'s examples shown in ``arrangement``'s order, with the system prompt rebuilt with
    or without the persona; letters stay A, B, ... in the order shown and each option keeps its code.

    ``arrangement`` is one of `cuma.data.prompt.ARRANGEMENTS`; a ``shuffled`` order comes from ``seed`` and
    the example's ids alone (`cuma.data.prompt.option_permutation`). Any order but ``fixed`` is refused
    for a question `check_arrangeable` refuses.
    """
    examples = list(examples)
    if arrangement != "fixed":
        asked = f"option arrangement {arrangement!r}"
        check_arrangeable(survey, asked, dict.fromkeys(ex.question_id for ex in examples))
    prompt = prompt or survey.prompt
    shown = []
    for ex in examples:
        order = option_permutation(
            arrangement,
            len(ex.option_codes),
            seed=seed,
            respondent_id=ex.respondent_id,
            question_id=ex.question_id,
        )
        letters = [""] * len(order)
        for letter, i in zip(option_letters(len(order)), order, strict=True):
            letters[i] = letter
        question = survey.questions[ex.question_id].text
        labels = [ex.option_labels[i] for i in order]
        shown.append(
            dataclasses.replace(
                ex,
                prompt_messages=prompt.messages(question, labels, ex.profile_text, persona),
                option_letters=tuple(letters),
                target_letter=letters[ex.option_codes.index(ex.target_code)],
                permutation=order,
            )
        )
    return shown


def group_fields(examples: Iterable[SurveyExample]) -> list[str]:
    """Profile field names present in ``examples``, in order of first appearance."""
    return list(dict.fromkeys(name for ex in examples for name in ex.profile))


def examples_frame(examples: Sequence[SurveyExample]) -> pd.DataFrame:
    """One row per example with the columns predictions are joined on, plus one column per profile field.

    The columns are the answer columns of the predictions schema (``PREDICTION_INPUT_COLUMNS`` in
    `cuma.metrics.frame`, which `make_predictions` checks), ``target_letter`` and ``permutations`` (the
    orders the example is shown in, one here: see `SurveyExample.permutation`), then the fields of
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
        "permutations": [[list(ex.shown_order)] for ex in examples],
    }
    fields = group_fields(examples)
    clash = sorted(set(fields) & columns.keys())
    if clash:
        raise ValueError(
            f"profile fields {clash} clash with the frame's own columns; rename them in the loader"
        )
    return pd.DataFrame({**columns, **{name: [ex.profile.get(name) for ex in examples] for name in fields}})


def average_orders(predictions: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One predictions frame from the same examples scored in several option orders (the ``both`` order).

    Each row's probabilities (in the question's option order, whatever was shown) are averaged, the
    argmax and letters derived again (`make_predictions`), and ``permutations`` lists every order shown;
    the letters are those of the first frame's order.
    """
    if not predictions:
        raise ValueError("no predictions to average over option orders")
    first = predictions[0]
    ids = _row_keys(first)
    for k, other in enumerate(predictions[1:], start=1):
        if _row_keys(other) != ids:
            raise ValueError(
                f"predictions {k} are not the examples of predictions 0 (respondent_id, question_id and "
                "option_codes must agree row by row): score one list of examples in each order"
            )
    probs = np.mean([np.stack(frame["probs"].map(np.asarray).tolist()) for frame in predictions], axis=0)
    joined = first.copy()
    joined["permutations"] = [
        [order for frame in predictions for order in frame["permutations"].iloc[row]]
        for row in range(len(first))
    ]
    return make_predictions(joined, list(probs))


def _row_keys(frame: pd.DataFrame) -> list[tuple[str, str, tuple[int, ...]]]:
    rows = zip(frame["respondent_id"], frame["question_id"], frame["option_codes"], strict=True)
    return [(rid, qid, tuple(codes)) for rid, qid, codes in rows]
