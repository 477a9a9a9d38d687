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
      country: {column: cntry, labels: {NA: Namibia, NO: Norway}}
    option_sets:
      agree5: {1: Strongly agree, 2: Agree, 3: Neither, 4: Disagree, 5: Strongly disagree}
    questions:
      q1: {text: "Immigration is good for the economy.", options: agree5, missing: [8, 9, DK]}

The spec is checked as a whole when it is read, before any table: unknown keys, values of the wrong
type, bins with min > max or that overlap, labels given twice, a missing code that is also an option
or a label, an option set that is not defined, a template part for a field the spec does not have,
a format string with an unknown placeholder. Each error names the spec file and the key path, e.g.
``gss.yaml: demographics.age.bins[2]: min 40 > max 30``.

Values mean what the spec says, not what a CSV reader guesses:

- CSV and TSV cells are read as text, and only an empty (or blank) cell is missing by itself (in
  Parquet files and DataFrames, also a null or NaN). A
  cell and a spec value are compared as numbers when both read as numbers (``1``, ``1.0`` and
  ``"1"`` are one code) and as text otherwise, so ``NA`` is the country Namibia and ``None`` a
  religion. Any other word for missing (``NA``, ``-9``, ``DK``) is listed under ``missing``.
- A free-text field (no labels, no bins) holding a word that tools write for missing (``NA``,
  ``NULL``, ``None``, ``NaN``, ``N/A``, ...) is an error unless the field has a ``missing`` list:
  the list says which words mean missing, and the others are then values.
- In YAML a bare ``null`` or ``~`` (or an empty key) is no value at all, so as a label key, a label
  or a ``missing`` entry it is an error asking to quote it (``"null"``) if the text is meant; a
  blank cell is always missing and needs no entry. ``NA``, ``None`` and ``NO`` are text in YAML
  (`cuma.yamlio`). A label must be quoted text when it looks like a number or a boolean.
- Several id columns are joined with ``-``; two different rows whose parts join to the same id
  (because a value contains ``-``) are an error naming both rows.

Every problem in the table is a `DataError` naming the table file, the row, the column and the value.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cuma.data.errors import DataError
from cuma.data.profiles import KEY_VALUE, Profile, ProfileTemplate, is_missing
from cuma.data.prompt import PromptFormat
from cuma.data.spec_values import NA_WORDS, SpecFile, describe, plain, value_key
from cuma.data.summary import LoadSummary
from cuma.data.survey import Question, Survey, answers_frame, check_ids
from cuma.yamlio import YAMLFileError, read_yaml

_SPEC_KEYS = (
    "name",
    "description",
    "source",
    "id",
    "template",
    "prompt",
    "demographics",
    "option_sets",
    "questions",
)
_DEMOGRAPHIC_KEYS = ("column", "labels", "bins", "missing")
_QUESTION_KEYS = ("column", "text", "options", "ordinal", "missing")
_BIN_KEYS = ("min", "max", "label")
_TEMPLATE_TEXT = ("prefix", "sep", "suffix")
_PROMPT_FORMATS = {
    "system": (),
    "persona_system": ("profile", "system"),
    "option": ("letter", "label"),
    "instruction": (),
}
"""PromptFormat fields and the placeholders each is formatted with (none: plain text)."""

ID_SEPARATOR = "-"
"""Joins the parts of a respondent id read from several columns."""


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
        columns: source column(s); with several, the first non-blank value is used (for
            tables that spell one variable differently per wave or country).
        labels: raw value (as `value_key`) -> label; when given, every other non-missing value is an error.
        bins: numeric ranges -> label (e.g. age groups); a value in no bin is an error.
        missing: raw values (as `value_key`) that mean "missing".
        missing_listed: whether the spec gives a ``missing`` list; without one, a free-text value that is
            one of `NA_WORDS` is an error (is it missing or a value?).
    """

    name: str
    columns: tuple[str, ...]
    labels: Mapping[Any, str] | None = None
    bins: tuple[Bin, ...] = ()
    missing: frozenset[Any] = frozenset()
    missing_listed: bool = False


@dataclass(frozen=True)
class QuestionSpec:
    """A question column: its `Question` and the codes or words that mean missing (dropped and counted)."""

    column: str
    question: Question
    missing: frozenset[int | str] = frozenset()


@dataclass(frozen=True)
class SurveySpec:
    """A parsed, validated survey spec (see the module docstring for the YAML layout)."""

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
        """Parse and check a spec (see the module docstring); ``path`` names it in messages."""
        sf = SpecFile(path)
        raw = sf.mapping(raw, "")
        sf.keys(raw, _SPEC_KEYS, "")
        for key in ("name", "id", "questions"):
            if key not in raw:
                raise sf.error("", f"spec lacks the required key {key!r}")
        option_sets = {
            sf.name(name, "option_sets"): _options(sf, options, f"option_sets.{name}")
            for name, options in sf.section(raw, "option_sets").items()
        }
        demographics = tuple(
            _demographic(sf, sf.name(name, "demographics"), d)
            for name, d in sf.section(raw, "demographics").items()
        )
        questions = sf.mapping(raw["questions"], "questions")
        if not questions:
            raise sf.error("questions", "the spec has no questions")
        names = [d.name for d in demographics]
        return cls(
            name=sf.text(raw["name"], "name"),
            id_columns=sf.columns(raw["id"], "id"),
            demographics=demographics,
            questions=tuple(
                _question(sf, sf.name(q, "questions"), d, option_sets) for q, d in questions.items()
            ),
            template=_template(sf, raw["template"], names) if raw.get("template") is not None else KEY_VALUE,
            prompt=_prompt(sf, raw["prompt"]) if raw.get("prompt") is not None else PromptFormat(),
            description=sf.text(raw.get("description") or "", "description", blank=True),
            source=sf.section(raw, "source"),
            path=path,
        )

    @property
    def columns(self) -> list[str]:
        """Every table column the spec reads."""
        cols = [*self.id_columns, *(c for d in self.demographics for c in d.columns)]
        return list(dict.fromkeys([*cols, *(q.column for q in self.questions)]))


def _labels(sf: SpecFile, raw: Any, key: str) -> dict[Any, str]:
    """``value: label`` pairs; two values may not share a label (that would merge two groups unnoticed)."""
    labels: dict[Any, str] = {}
    spelled: dict[Any, Any] = {}
    owner: dict[str, Any] = {}
    for value, label in sf.mapping(raw, key).items():
        where = f"{key}.{value}" if value is not None else key
        code = sf.value(value, where)
        if code in labels:
            raise sf.error(key, f"{spelled[code]!r} and {value!r} are the same value")
        text = sf.text(label, where)
        if text in owner:
            raise sf.error(
                key,
                f"label {text!r} is given to both {owner[text]!r} and {value!r}; each label names one value "
                "(recode the table if they are one group)",
            )
        labels[code], spelled[code], owner[text] = text, value, value
    if not labels:
        raise sf.error(key, "is empty")
    return labels


def _missing(sf: SpecFile, raw: Any, key: str, codes: bool) -> frozenset[Any]:
    """The ``missing:`` list; a question's entries are integer codes or words."""
    found = set()
    for i, entry in enumerate(sf.sequence(raw, key)):
        value = sf.value(entry, f"{key}[{i}]")
        if codes and isinstance(value, float):
            raise sf.error(f"{key}[{i}]", f"answer codes are integers, got {describe(entry)}")
        found.add(value)
    return frozenset(found)


def _bins(sf: SpecFile, raw: Any, key: str) -> tuple[Bin, ...]:
    """Inclusive ranges that do not overlap (gaps are allowed: a value in none is an error)."""
    bins = []
    for i, entry in enumerate(sf.sequence(raw, key)):
        where = f"{key}[{i}]"
        entry = sf.mapping(entry, where)
        if set(entry) != set(_BIN_KEYS):
            raise sf.error(where, f"a bin needs exactly min, max and label, got keys {list(entry)}")
        low, high = sf.number(entry["min"], f"{where}.min"), sf.number(entry["max"], f"{where}.max")
        if low > high:
            raise sf.error(where, f"min {entry['min']} > max {entry['max']}")
        bins.append(Bin(low, high, sf.text(entry["label"], f"{where}.label")))
    if not bins:
        raise sf.error(key, "is empty")
    order = sorted(range(len(bins)), key=lambda i: (bins[i].min, bins[i].max))
    for a, b in itertools.pairwise(order):
        if bins[b].min <= bins[a].max:
            first, second = (f"[{plain(bins[i].min)}, {plain(bins[i].max)}]" for i in (a, b))
            raise sf.error(f"{key}[{a}] and {key}[{b}]", f"overlap: {first} and {second}")
    return tuple(bins)


def _demographic(sf: SpecFile, name: str, raw: Any) -> DemographicSpec:
    key = f"demographics.{name}"
    raw = sf.mapping(raw if raw is not None else {}, key)
    sf.keys(raw, _DEMOGRAPHIC_KEYS, key)
    labels = _labels(sf, raw["labels"], f"{key}.labels") if "labels" in raw else None
    bins = _bins(sf, raw["bins"], f"{key}.bins") if "bins" in raw else ()
    if labels is not None and bins:
        raise sf.error(key, "has both labels and bins; a field is either labelled or binned")
    missing = _missing(sf, raw["missing"], f"{key}.missing", codes=False) if "missing" in raw else frozenset()
    both = sorted(missing & set(labels or ()), key=str)
    if both:
        raise sf.error(f"{key}.missing", f"{both[0]!r} also has a label in {key}.labels")
    return DemographicSpec(
        name=name,
        columns=sf.columns(raw.get("column", name), f"{key}.column"),
        labels=labels,
        bins=bins,
        missing=missing,
        missing_listed="missing" in raw,
    )


def _options(sf: SpecFile, raw: Any, key: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """``code: label`` pairs: integer codes, text labels, neither given twice."""
    codes: dict[int, Any] = {}
    owner: dict[str, Any] = {}
    for code, label in sf.mapping(raw, key).items():
        number = value_key(code)
        if not isinstance(number, int):
            raise sf.error(key, f"option code {code!r} is not an integer")
        if number in codes:
            raise sf.error(key, f"codes {codes[number]!r} and {code!r} are the same code")
        text = sf.text(label, f"{key}.{code}")
        if text in owner:
            raise sf.error(key, f"label {text!r} is given to both code {owner[text]!r} and code {code!r}")
        codes[number], owner[text] = code, code
    if not codes:
        raise sf.error(key, "is empty")
    return tuple(codes), tuple(owner)


def _question(sf: SpecFile, qid: str, raw: Any, option_sets: Mapping[str, Any]) -> QuestionSpec:
    key = f"questions.{qid}"
    raw = sf.mapping(raw, key)
    sf.keys(raw, _QUESTION_KEYS, key)
    for needed in ("text", "options"):
        if needed not in raw:
            raise sf.error(key, f"question has no {needed}")
    options = raw["options"]
    if isinstance(options, str):
        if options not in option_sets:
            raise sf.error(
                f"{key}.options", f"option set {options!r} is not defined; defined: {sorted(option_sets)}"
            )
        codes, labels = option_sets[options]
    else:
        codes, labels = _options(sf, options, f"{key}.options")
    ordinal = raw.get("ordinal", True)
    if not isinstance(ordinal, bool):
        raise sf.error(f"{key}.ordinal", f"expected true or false, got {describe(ordinal)}")
    text = sf.text(raw["text"], f"{key}.text")
    question = Question(id=qid, text=text, codes=codes, labels=labels, ordinal=ordinal)
    question.validate(sf.path, where=f"{key}.options")
    missing = _missing(sf, raw["missing"], f"{key}.missing", codes=True) if "missing" in raw else frozenset()
    both = sorted(set(codes) & missing)
    if both:
        raise sf.error(f"{key}.missing", f"{both[0]} is also an option code of the question")
    column = sf.text(raw.get("column", qid), f"{key}.column")
    return QuestionSpec(column=column, question=question, missing=missing)


def _template(sf: SpecFile, raw: Any, demographics: Sequence[str]) -> ProfileTemplate:
    """A profile template whose parts name demographics of the spec and format only ``{value}``."""
    raw = sf.mapping(raw, "template")
    sf.keys(raw, [f.name for f in fields(ProfileTemplate)], "template")
    values: dict[str, Any] = {
        k: sf.text(raw[k], f"template.{k}", blank=True) for k in _TEMPLATE_TEXT if k in raw
    }
    if raw.get("missing") is not None:
        values["missing"] = sf.text(raw["missing"], "template.missing", blank=True)
    parts = {}
    for name, fmt in sf.section(raw, "parts").items():
        where = f"template.parts.{name}"
        if name not in demographics:
            raise sf.error(where, f"not a demographic of the spec; demographics: {list(demographics)}")
        parts[name] = sf.text(fmt, where, blank=True)
        sf.format_string(parts[name], ("value",), where)
    return ProfileTemplate(parts=parts, **values)


def _prompt(sf: SpecFile, raw: Any) -> PromptFormat:
    raw = sf.mapping(raw, "prompt")
    sf.keys(raw, list(_PROMPT_FORMATS), "prompt")
    values = {k: sf.text(v, f"prompt.{k}", blank=True) for k, v in raw.items()}
    for k, names in _PROMPT_FORMATS.items():
        if k in values and names:
            sf.format_string(values[k], names, f"prompt.{k}")
    return PromptFormat(**values)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet file as a DataFrame; CSV and TSV cells as text, only empty cells missing."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".parquet"):
        raise DataError("unsupported table format; use .csv, .tsv or .parquet", source=path, value=suffix)
    if not path.is_file():
        raise FileNotFoundError(f"survey table not found: {path}")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        sep = "\t" if suffix == ".tsv" else ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"cannot read the table: {str(err).strip()}", source=path) from None


def load_survey_table(
    table: str | Path | pd.DataFrame, spec: SurveySpec | str | Path, *, source: str | None = None
) -> Survey:
    """Read a survey table with its spec, validating every value the spec names.

    Args:
        table: the data, a path or a DataFrame (rows = respondents).
        spec: a `SurveySpec` or the path of its YAML file (read and checked before the table).
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
    ids = _respondent_ids(frame, spec, source)
    profiles = {d.name: _demographic_values(frame, d, spec.path, source) for d in spec.demographics}
    summary = LoadSummary(source)
    records: dict[str, list] = {"respondent_id": [], "question_id": [], "code": [], "row": []}
    dropped: dict[str, int] = {}
    for qs in spec.questions:
        codes, reasons = _question_codes(frame[qs.column], qs, spec.path, source)
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


def _respondent_ids(frame: pd.DataFrame, spec: SurveySpec, source: str) -> list[str]:
    """One id per row: the id columns joined with `ID_SEPARATOR`; ``None`` where a part is missing."""
    columns = spec.id_columns
    parts = [[None if is_missing(v) else str(value_key(v)) for v in frame[col]] for col in columns]
    rows = list(zip(*parts, strict=True))
    ids = [None if None in row else ID_SEPARATOR.join(row) for row in rows]
    first: dict[str, int] = {}
    for i, joined in enumerate(ids):
        j = first.setdefault(joined, i) if joined is not None else i
        if rows[j] != rows[i]:
            a, b = (dict(zip(columns, rows[k], strict=True)) for k in (j, i))
            raise DataError(
                f"{spec.path}: id: the columns {list(columns)} joined with {ID_SEPARATOR!r} give rows "
                f"{j + 1} {a} and {i + 1} {b} the same respondent id {joined!r}, since a value contains "
                f"{ID_SEPARATOR!r}; give the table one id column whose values are unique",
                source=source,
            )
    check_ids(pd.Series(ids, dtype=object), source, "+".join(columns))
    return ids


def _demographic_values(
    frame: pd.DataFrame, spec: DemographicSpec, spec_path: str, source: str
) -> list[str | None]:
    values = list(frame[spec.columns[0]])
    origin = [spec.columns[0]] * len(values)
    for col in spec.columns[1:]:
        for i, value in enumerate(frame[col]):
            if is_missing(values[i]):
                values[i], origin[i] = value, col
    key = f"demographics.{spec.name}"
    out: list[str | None] = []
    for i, raw in enumerate(values):
        value = None if is_missing(raw) else value_key(raw)
        if value is None or value in spec.missing:
            out.append(None)
            continue
        hint = f"; if it means missing, list it under {key}.missing in {spec_path}"
        if spec.bins:
            out.append(_bin(value, spec, source, i, origin[i], hint))
        elif spec.labels is not None:
            if value not in spec.labels:
                raise DataError(
                    f"value has no label in {spec_path}: {key}.labels (labels: {list(spec.labels)}){hint}",
                    source=source,
                    row=i + 1,
                    column=origin[i],
                    value=raw,
                )
            out.append(spec.labels[value])
        elif isinstance(value, str) and value in NA_WORDS and not spec.missing_listed:
            raise DataError(
                f"{value!r} is a word often written for a missing value; list it under {key}.missing in "
                f"{spec_path} if it means missing, or give {key} a missing list without it if it is a value",
                source=source,
                row=i + 1,
                column=origin[i],
            )
        else:
            out.append(str(value))
    return out


def _bin(value: Any, spec: DemographicSpec, source: str, i: int, column: str, hint: str) -> str:
    if isinstance(value, str):
        raise DataError(
            f"a binned field needs a number{hint}", source=source, row=i + 1, column=column, value=value
        )
    for b in spec.bins:
        if b.min <= value <= b.max:
            return b.label
    raise DataError(f"value in no bin of {spec.name!r}", source=source, row=i + 1, column=column, value=value)


def _question_codes(
    values: pd.Series, qs: QuestionSpec, spec_path: str, source: str
) -> tuple[pd.Series, dict[str, int]]:
    """Valid codes (NaN where unanswered) and the count of each reason for no answer."""
    valid = set(qs.question.codes)
    codes = np.full(len(values), np.nan)
    empty = 0
    counts = dict.fromkeys(qs.missing, 0)
    for i, raw in enumerate(values.tolist()):
        if is_missing(raw):
            empty += 1
            continue
        value = value_key(raw)
        if value in counts:
            counts[value] += 1
            continue
        if isinstance(value, str):
            hint = f"; if it means no answer, list it under questions.{qs.question.id}.missing in {spec_path}"
            raise DataError(
                f"answer is not a number{hint}", source=source, row=i + 1, column=qs.column, value=raw
            )
        if not isinstance(value, int):
            raise DataError(
                "answer is not an integer code", source=source, row=i + 1, column=qs.column, value=raw
            )
        if value not in valid:
            raise DataError(
                f"answer outside the question's scale {list(qs.question.codes)}",
                source=source,
                row=i + 1,
                column=qs.column,
                value=value,
            )
        codes[i] = value
    reasons = {"not answered (empty)": empty}
    for code in sorted(counts, key=lambda c: (isinstance(c, str), c)):
        reasons[f"missing code {code}"] = counts[code]
    return pd.Series(codes, index=values.index), reasons
