"""The survey data model shared by every survey loader: respondents, questions and answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cuma.data.errors import DataError, first_true
from cuma.data.profiles import KEY_VALUE, Profile, ProfileTemplate, is_missing
from cuma.data.prompt import LETTERS, PromptFormat
from cuma.data.summary import LoadSummary

ANSWER_COLUMNS = ("respondent_id", "question_id", "code")


@dataclass(frozen=True)
class Question:
    """A closed question with ordered options.

    Attributes:
        id: question id (the column name in the source table).
        text: the question as shown to the model.
        codes: numeric answer code of each option, in the order the options are shown.
        labels: option labels, aligned with ``codes``.
        ordinal: whether the codes are on an ordered scale (monotonic in option order), which
            the distributional metrics (EMD) rely on.
    """

    id: str
    text: str
    codes: tuple[int, ...]
    labels: tuple[str, ...]
    ordinal: bool = True

    @property
    def scale_min(self) -> int:
        return min(self.codes)

    @property
    def scale_max(self) -> int:
        return max(self.codes)

    def validate(self, source: object, where: str | None = None) -> None:
        """Raise `DataError` naming the source and question if the options are inconsistent.

        ``where`` (a spec's key path, e.g. ``questions.q1.options``) replaces the question's column in
        the message when the question comes from a spec file.
        """

        def fail(message: str, value: object) -> DataError:
            if where is not None:
                return DataError(f"{where}: {message}", source=source, value=value)
            return DataError(message, source=source, column=self.id, value=value)

        if not self.text.strip():
            raise DataError("question has no text", source=source, column=self.id)
        if len(self.codes) != len(self.labels):
            raise fail(
                f"option label list does not match the codes: {len(self.labels)} labels for "
                f"{len(self.codes)} codes",
                {"codes": list(self.codes), "labels": list(self.labels)},
            )
        if len(set(self.codes)) != len(self.codes):
            raise fail("duplicate option codes", list(self.codes))
        if not 2 <= len(self.codes) <= len(LETTERS):
            raise fail(f"a question needs 2 to {len(LETTERS)} options", list(self.codes))
        if any(not str(label).strip() for label in self.labels):
            raise fail("empty option label", list(self.labels))
        steps = np.diff(self.codes)
        if self.ordinal and not (np.all(steps > 0) or np.all(steps < 0)):
            raise fail(
                "ordinal question whose option codes are not monotonic in option order (set ordinal: false "
                "if the options have no order)",
                list(self.codes),
            )


@dataclass
class Survey:
    """Respondents with profiles, questions, and one coded answer per (respondent, question).

    Attributes:
        name: dataset name.
        questions: question id -> `Question`, in presentation order.
        respondents: respondent id -> `Profile`, in source order.
        answers: DataFrame with columns ``respondent_id`` (str), ``question_id`` (str), ``code``
            (int), and optionally ``row`` (the source row, used in error messages).
        template: how profiles are rendered; the same text goes to the prompt and the encoder.
        prompt: the wording of the prompts built from this survey.
        source: where the data came from, for error messages.
        summary: what the loader read, kept and dropped.
    """

    name: str
    questions: dict[str, Question]
    respondents: dict[str, Profile]
    answers: pd.DataFrame
    template: ProfileTemplate = KEY_VALUE
    prompt: PromptFormat = field(default_factory=PromptFormat)
    source: str = "<memory>"
    summary: LoadSummary | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def profile_fields(self) -> list[str]:
        """Profile field names, in order of first appearance."""
        return list(dict.fromkeys(name for profile in self.respondents.values() for name in profile))

    def validate(self) -> None:
        """Check the answers against respondents and question scales; errors name the row and value."""
        for question in self.questions.values():
            question.validate(self.source)
        missing = [c for c in ANSWER_COLUMNS if c not in self.answers.columns]
        if missing:
            raise DataError(f"answer table lacks columns {missing}", source=self.source)
        answers = self.answers

        def row_of(i: int) -> object:
            return answers["row"].iloc[i] if "row" in answers.columns else i

        unknown = ~answers["respondent_id"].isin(self.respondents.keys())
        if unknown.any():
            i = first_true(unknown)
            raise DataError(
                "answer from an unknown respondent",
                source=self.source,
                row=row_of(i),
                column="respondent_id",
                value=answers["respondent_id"].iloc[i],
            )
        unknown = ~answers["question_id"].isin(self.questions.keys())
        if unknown.any():
            i = first_true(unknown)
            raise DataError(
                "answer to an unknown question",
                source=self.source,
                row=row_of(i),
                column="question_id",
                value=answers["question_id"].iloc[i],
            )
        for qid, codes in answers.groupby("question_id", sort=False)["code"]:
            bad = ~codes.isin(self.questions[qid].codes)
            if bad.any():
                i = answers.index.get_loc(codes.index[first_true(bad)])
                raise DataError(
                    f"answer outside the question's options {list(self.questions[qid].codes)}",
                    source=self.source,
                    row=row_of(i),
                    column=qid,
                    value=answers["code"].iloc[i],
                )
        dup = answers.duplicated(["respondent_id", "question_id"])
        if dup.any():
            i = first_true(dup)
            raise DataError(
                "two answers for the same respondent and question",
                source=self.source,
                row=row_of(i),
                column=answers["question_id"].iloc[i],
                value=answers["respondent_id"].iloc[i],
            )


def answers_frame(records: Mapping[str, list]) -> pd.DataFrame:
    """An answer table with the canonical dtypes (ids as str, codes as int)."""
    frame = pd.DataFrame(records)
    frame["respondent_id"] = frame["respondent_id"].astype(str)
    frame["question_id"] = frame["question_id"].astype(str)
    frame["code"] = frame["code"].astype(np.int64)
    return frame.reset_index(drop=True)


def check_ids(ids: pd.Series, source: object, column: str) -> None:
    """Raise `DataError` on a missing or repeated respondent id, naming its row (1-based)."""
    blank = ids.map(is_missing)
    if blank.any():
        raise DataError("missing respondent id", source=source, row=first_true(blank) + 1, column=column)
    text = ids.astype(str)
    dup = text.duplicated()
    if dup.any():
        i = first_true(dup)
        raise DataError(
            f"duplicate respondent id (first at row {first_true(text == text.iloc[i]) + 1})",
            source=source,
            row=i + 1,
            column=column,
            value=text.iloc[i],
        )
