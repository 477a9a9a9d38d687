"""Bring-your-own survey: a table (CSV, TSV, Parquet or DataFrame) plus a small YAML spec.

A spec names the id column(s), the demographic columns (with value labels, values that mean
missing, and numeric bins such as age groups) and the question columns (text, ordered options
as ``code: label``, codes that mean missing). Example::

    name: my-survey
    id: respondent                # or a list of columns, joined with "-"
    template: {prefix: "You are a person from Norway, ", suffix: ".", parts: {age: "age {value}"}}
    demographics:
      age: {column: age_years, bins: [{min: 18, max: 29, label: 18-29}, {min: 30, max: 99, label: 30+}]}
      gender: {column: sex, labels: {1: male, 2: female}, missing: [9]}
    option_sets:
      agree5: {1: Strongly agree, 2: Agree, 3: Neither, 4: Disagree, 5: Strongly disagree}
    questions:
      q1: {text: "Immigration is good for the economy.", options: agree5, missing: [8, 9]}

Every problem is a `DataError` naming the spec or table file, the row or column, and the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cuma.data.errors import DataError, first_true
from cuma.data.profiles import KEY_VALUE, Profile, ProfileTemplate, is_missing
from cuma.data.prompt import PromptFormat
from cuma.data.summary import LoadSummary
from cuma.data.survey import Question, Survey, answers_frame, check_ids
from cuma.yamlio import YAMLFileError, read_yaml

_SPEC_KEYS = {
    "name",
    "description",
    "source",
    "id",
    "template",
    "prompt",
    "demographics",
    "option_sets",
    "questions",
}
_DEMOGRAPHIC_KEYS = {"column", "labels", "bins", "missing"}
_QUESTION_KEYS = {"column", "text", "options", "ordinal", "missing"}


def _plain(value: Any) -> Any:
    """Integral floats as int, so 1.0 in a table matches the ``1:`` of a spec."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


@dataclass(frozen=True)
class Bin:
    """An inclusive numeric range ``[min, max]`` and its label."""

    min: float
    max: float
    label: str


@dataclass(frozen=True)
class DemographicSpec:
    """How one profile field is read.

    Attributes:
        name: the profile field.
        columns: source column(s); with several, the first non-missing value is used (for
            tables that spell one variable differently per wave or country).
        labels: raw value -> label; when given, every other non-missing value is an error.
        bins: numeric ranges -> label (e.g. age groups); a value in no bin is an error.
        missing: raw values that mean "missing".
    """

    name: str
    columns: tuple[str, ...]
    labels: Mapping[Any, str] | None = None
    bins: tuple[Bin, ...] = ()
    missing: frozenset[Any] = frozenset()


@dataclass(frozen=True)
class QuestionSpec:
    """A question column: its `Question` and the codes that mean missing (dropped and counted)."""

    column: str
    question: Question
    missing: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SurveySpec:
    """A parsed survey spec (see the module docstring for the YAML layout)."""

    name: str
    id_columns: tuple[str, ...]
    demographics: tuple[DemographicSpec, ...]
    questions: tuple[QuestionSpec, ...]
    template: ProfileTemplate = KEY_VALUE
    prompt: PromptFormat = field(default_factory=PromptFormat)
    description: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)
    path: str = "<spec>"

    @classmethod
    def from_yaml(cls, path: str | Path) -> SurveySpec:
        path = Path(path)
        try:
            raw = read_yaml(path, "survey spec")
        except YAMLFileError as err:
            raise DataError(str(err)) from None
        return cls.from_dict(raw, path=str(path))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], path: str = "<spec>") -> SurveySpec:
        if not isinstance(raw, Mapping):
            raise DataError("a survey spec must be a mapping", source=path, value=type(raw).__name__)
        _check_keys(raw, _SPEC_KEYS, path, "spec")
        for key in ("name", "id", "questions"):
            if key not in raw:
                raise DataError(f"spec lacks the required key {key!r}", source=path)
        option_sets = _mapping(raw.get("option_sets") or {}, path, "option_sets", "the spec section")
        demographics = _mapping(raw.get("demographics") or {}, path, "demographics", "the spec section")
        ids = raw["id"]
        return cls(
            name=str(raw["name"]),
            id_columns=tuple(str(c) for c in ids) if isinstance(ids, list) else (str(ids),),
            demographics=tuple(
                _demographic(n, _mapping(d or {}, path, n, "a demographic"), path)
                for n, d in demographics.items()
            ),
            questions=tuple(
                _question(q, _mapping(d or {}, path, q, "a question"), option_sets, path)
                for q, d in _mapping(raw["questions"], path, "questions", "the spec section").items()
            ),
            template=_build(ProfileTemplate, raw["template"], path) if raw.get("template") else KEY_VALUE,
            prompt=_build(PromptFormat, raw["prompt"], path) if raw.get("prompt") else PromptFormat(),
            description=str(raw.get("description", "")),
            source=raw.get("source") or {},
            path=path,
        )

    @property
    def columns(self) -> list[str]:
        """Every table column the spec reads."""
        cols = [*self.id_columns, *(c for d in self.demographics for c in d.columns)]
        return list(dict.fromkeys([*cols, *(q.column for q in self.questions)]))


def _build(cls: type, raw: Any, path: str) -> Any:
    allowed = {f.name for f in fields(cls)}
    if not isinstance(raw, Mapping):
        raise DataError(f"{cls.__name__} must be a mapping", source=path, value=raw)
    _check_keys(raw, allowed, path, cls.__name__)
    return cls(**raw)


def _mapping(raw: Any, path: str, column: str, what: str) -> Mapping[Any, Any]:
    if not isinstance(raw, Mapping):
        raise DataError(
            f"{what} must be a mapping, not a {type(raw).__name__}", source=path, column=column, value=raw
        )
    return raw


def _codes(raw: Any, path: str, column: str) -> frozenset[Any]:
    """The ``missing:`` list of a demographic or question."""
    if not isinstance(raw, list):
        raise DataError("missing must be a list of values", source=path, column=column, value=raw)
    return frozenset(_plain(v) for v in raw)


def _check_keys(raw: Mapping[str, Any], allowed: set[str], path: str, what: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DataError(f"unknown key in {what}; allowed: {sorted(allowed)}", source=path, value=unknown[0])


def _demographic(name: str, raw: Mapping[str, Any], path: str) -> DemographicSpec:
    _check_keys(raw, _DEMOGRAPHIC_KEYS, path, f"demographic {name!r}")
    columns = raw.get("column", name)
    bins = raw.get("bins") or []
    if not isinstance(bins, list):
        raise DataError("bins must be a list of {min, max, label}", source=path, column=name, value=bins)
    for b in bins:
        if not isinstance(b, Mapping) or set(b) != {"min", "max", "label"}:
            raise DataError("a bin needs exactly min, max and label", source=path, column=name, value=b)
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in (b["min"], b["max"])):
            raise DataError("bin min and max must be numbers", source=path, column=name, value=b)
    labels = raw.get("labels")
    if labels is not None:
        labels = {_plain(k): str(v) for k, v in _mapping(labels, path, name, "labels").items()}
    return DemographicSpec(
        name=name,
        columns=tuple(str(c) for c in columns) if isinstance(columns, list) else (str(columns),),
        labels=labels,
        bins=tuple(Bin(float(b["min"]), float(b["max"]), str(b["label"])) for b in bins),
        missing=_codes(raw.get("missing") or [], path, name),
    )


def _question(qid: str, raw: Mapping[str, Any], option_sets: Mapping[str, Any], path: str) -> QuestionSpec:
    _check_keys(raw, _QUESTION_KEYS, path, f"question {qid!r}")
    options = raw.get("options")
    if isinstance(options, str):
        if options not in option_sets:
            raise DataError(
                f"unknown option set; known: {sorted(option_sets)}", source=path, column=qid, value=options
            )
        options = option_sets[options]
    if not isinstance(options, Mapping) or not options:
        raise DataError(
            "a question needs options as a mapping code: label", source=path, column=qid, value=options
        )
    codes = []
    for code in options:
        if not isinstance(_plain(code), int):
            raise DataError("option codes must be integers", source=path, column=qid, value=code)
        codes.append(_plain(code))
    if "text" not in raw:
        raise DataError("question has no text", source=path, column=qid)
    question = Question(
        id=str(qid),
        text=str(raw["text"]),
        codes=tuple(codes),
        labels=tuple(str(v) for v in options.values()),
        ordinal=bool(raw.get("ordinal", True)),
    )
    question.validate(path)
    missing = _codes(raw.get("missing") or [], path, str(qid))
    return QuestionSpec(column=str(raw.get("column", qid)), question=question, missing=missing)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet file as a DataFrame."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", low_memory=False)
    raise DataError("unsupported table format; use .csv, .tsv or .parquet", source=path, value=suffix)


def load_survey_table(
    table: str | Path | pd.DataFrame, spec: SurveySpec | str | Path, *, source: str | None = None
) -> Survey:
    """Read a survey table with its spec, validating every value the spec names.

    Args:
        table: the data, a path or a DataFrame (rows = respondents).
        spec: a `SurveySpec` or the path of its YAML file.
        source: name used for the table in messages (defaults to the path, or ``<DataFrame>``).
    """
    spec = spec if isinstance(spec, SurveySpec) else SurveySpec.from_yaml(spec)
    if isinstance(table, pd.DataFrame):
        frame, source = table.reset_index(drop=True), source or "<DataFrame>"
    else:
        frame, source = read_table(table).reset_index(drop=True), source or str(table)
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"spec {spec.path} names a column the table does not have (columns: {list(frame.columns)})",
            source=source,
            column=missing[0],
        )
    ids = _respondent_ids(frame, spec.id_columns, source)
    profiles = {d.name: _demographic_values(frame, d, source) for d in spec.demographics}
    summary = LoadSummary(source)
    records: dict[str, list] = {"respondent_id": [], "question_id": [], "code": [], "row": []}
    dropped: dict[str, int] = {}
    for qs in spec.questions:
        codes, reasons = _question_codes(frame[qs.column], qs, source)
        for reason, n in reasons.items():
            dropped[reason] = dropped.get(reason, 0) + n
        keep = np.flatnonzero(codes.notna().to_numpy())
        records["respondent_id"] += [ids[i] for i in keep]
        records["question_id"] += [qs.question.id] * len(keep)
        records["code"] += codes.iloc[keep].astype(np.int64).tolist()
        records["row"] += (keep + 1).tolist()
    answers = answers_frame(records).sort_values("row", kind="stable").reset_index(drop=True)
    summary.add("answers", len(frame) * len(spec.questions), len(answers), dropped)
    answered = set(answers["respondent_id"])
    respondents = {
        rid: Profile({name: values[i] for name, values in profiles.items()})
        for i, rid in enumerate(ids)
        if rid in answered
    }
    summary.add(
        "respondents", len(ids), len(respondents), {"answered no question": len(ids) - len(respondents)}
    )
    return Survey(
        name=spec.name,
        questions={q.question.id: q.question for q in spec.questions},
        respondents=respondents,
        answers=answers,
        template=spec.template,
        prompt=spec.prompt,
        source=source,
        summary=summary,
    )


def _respondent_ids(frame: pd.DataFrame, columns: Sequence[str], source: str) -> list[str]:
    """One id per row: the id columns joined with "-"; ``None`` where a part is missing (an error)."""
    parts = [[None if is_missing(v) else str(_plain(v)) for v in frame[col]] for col in columns]
    ids = [None if None in row else "-".join(row) for row in zip(*parts, strict=True)]
    check_ids(pd.Series(ids, dtype=object), source, "+".join(columns))
    return ids


def _demographic_values(frame: pd.DataFrame, spec: DemographicSpec, source: str) -> list[str | None]:
    raw = frame[spec.columns[0]]
    for col in spec.columns[1:]:
        raw = raw.where(raw.notna(), frame[col])
    out: list[str | None] = []
    for i, value in enumerate(raw.tolist()):
        value = _plain(value)
        if is_missing(value) or value in spec.missing:
            out.append(None)
        elif spec.bins:
            out.append(_bin(value, spec, source, i))
        elif spec.labels is not None:
            if value not in spec.labels:
                raise DataError(
                    f"value has no label in the spec (labels: {list(spec.labels)})",
                    source=source,
                    row=i + 1,
                    column=spec.columns[0],
                    value=value,
                )
            out.append(spec.labels[value])
        else:
            out.append(str(value))
    return out


def _bin(value: Any, spec: DemographicSpec, source: str, i: int) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(
            "a binned field needs a number", source=source, row=i + 1, column=spec.columns[0], value=value
        ) from None
    for b in spec.bins:
        if b.min <= number <= b.max:
            return b.label
    raise DataError(
        f"value in no bin of {spec.name!r}", source=source, row=i + 1, column=spec.columns[0], value=value
    )


def _question_codes(values: pd.Series, qs: QuestionSpec, source: str) -> tuple[pd.Series, dict[str, int]]:
    """Valid codes (NaN where unanswered) and the count of each reason for no answer."""
    numeric = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & numeric.isna()
    if bad.any():
        i = first_true(bad)
        raise DataError(
            "answer is not a number", source=source, row=i + 1, column=qs.column, value=values.iloc[i]
        )
    fractional = numeric.notna() & (numeric != numeric.round())
    if fractional.any():
        i = first_true(fractional)
        raise DataError(
            "answer is not an integer code", source=source, row=i + 1, column=qs.column, value=values.iloc[i]
        )
    is_missing_code = numeric.isin(list(qs.missing))
    outside = numeric.notna() & ~is_missing_code & ~numeric.isin(list(qs.question.codes))
    if outside.any():
        i = first_true(outside)
        raise DataError(
            f"answer outside the question's scale {list(qs.question.codes)}",
            source=source,
            row=i + 1,
            column=qs.column,
            value=_plain(values.iloc[i]),
        )
    reasons = {"not answered (empty)": int(numeric.isna().sum())}
    for code in sorted(qs.missing):
        reasons[f"missing code {code}"] = int((numeric == code).sum())
    return numeric.where(~is_missing_code), reasons
