"""WorldValuesBench (WVS wave 7) as laid out by its own ``data_preparation.py``.

The WVS answers cannot be redistributed: point the loader at your own prepared copy. It reads
``question_metadata.json``, ``{split}/{split}_value_qa.tsv`` and ``{split}_demographic_qa.tsv``
(split = full, train, valid or test) from the ``WorldValuesBench/`` folder, and
``codebook.json`` and ``answer_adjustment.json`` from ``dataset_construction/``.

Unlike the authors' code (see docs/design.md), the option lists get the same answer adjustments as the
answers (15 questions: Q56 swaps two labels, Q119 moves "Hard to say" to the middle, Q241-Q249 fold the
spontaneous 0 into 1, Q111/Q221/Q222/Q254 lose an option), so every answer has its own label and none is
dropped silently; an answer outside its question's options is an error.

The preparation script writes a demographic's codebook label, or its raw code when the codebook
has no label for it. Such a value becomes missing and is counted per column in the summary
(``profile values``), so one unlisted code does not block the whole dataset.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cuma.data.errors import DataError, first_true
from cuma.data.profiles import WVB_PERSONA, Profile, ProfileTemplate, is_missing
from cuma.data.summary import LoadSummary
from cuma.data.survey import Question, Survey, answers_frame, check_ids

ID = "D_INTERVIEW"
WVB_SPLITS = ("full", "train", "valid", "test")
"""The splits WorldValuesBench's preparation script writes (``split`` of `load_worldvaluesbench`)."""
FIELDS = {
    "country": "B_COUNTRY",
    "age_group": "X003R",
    "gender": "Q260",
    "education": "Q275",
    "marital_status": "Q273",
    "religion": "Q289",
    "ethnicity": "Q290",
    "employment": "Q279",
}
"""The paper's eight profile fields -> WVS variables."""


def _find(root: Path, name: str, explicit: str | Path | None) -> Path:
    if explicit is not None:
        candidates = [Path(explicit)]
    else:
        candidates = [
            root / name,
            root / "WorldValuesBench" / name,
            root / "dataset_construction" / name,
            root.parent / "dataset_construction" / name,
        ]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(
        f"WorldValuesBench file {name} not found; looked in {[str(p) for p in candidates]}", source=root
    )


def _data_dir(root: Path) -> Path:
    return root / "WorldValuesBench" if (root / "WorldValuesBench").is_dir() else root


def _read_json(path: Path) -> Mapping[str, Any]:
    try:
        return _object(json.loads(path.read_text()), path)
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON: {err}", source=path) from err


def _object(
    raw: Any, path: Path, key: str | None = None, required: tuple[str, ...] = ()
) -> Mapping[str, Any]:
    """``raw`` as a JSON object with the ``required`` keys, or a `DataError` naming the file and entry."""
    if not isinstance(raw, Mapping):
        raise DataError(f"expected a JSON object, found a {type(raw).__name__}", source=path, column=key)
    absent = [k for k in required if k not in raw]
    if absent:
        raise DataError("entry lacks a required key", source=path, column=key, value=absent[0])
    return raw


def adjusted_options(
    qid: str, choices: Mapping[str, str], adjustment: Mapping[str, str], source: object
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """A question's options after the benchmark's answer adjustment, in code order.

    Codebook codes < 0 (don't know, no answer, ...) are not options. An adjusted code of ""
    removes the option (the answers were blanked the same way). When two codes fold into one,
    the label of the code that kept its number wins (Q241: "It is against democracy" joins
    "Not an essential characteristic of democracy").
    """
    folded: dict[int, list[tuple[bool, str]]] = {}
    for raw, label in choices.items():
        try:
            code = int(raw)
        except ValueError:
            raise DataError("non-numeric codebook code", source=source, column=qid, value=raw) from None
        if code < 0:
            continue
        new = adjustment.get(str(code), str(code))
        if new == "":
            continue
        folded.setdefault(int(new), []).append((int(new) == code, str(label)))
    codes = tuple(sorted(folded))
    labels = tuple(max(folded[c], key=lambda kept_label: kept_label[0])[1] for c in codes)
    return codes, labels


def _clean(column: str, label: str) -> str:
    """Paper-style age groups ("16-24 years old"); ethnicity labels without their country prefix."""
    if column == "X003R" and label.endswith("years"):
        return f"{label} old"
    return re.sub(r"^[A-Z]{2}: ", "", label) if column == "Q290" else label


def load_worldvaluesbench(
    root: str | Path,
    split: str = "full",
    *,
    fields: Mapping[str, str] = FIELDS,
    template: ProfileTemplate = WVB_PERSONA,
    question_text: str = "metadata",
    question_metadata: str | Path | None = None,
    codebook: str | Path | None = None,
    answer_adjustment: str | Path | None = None,
) -> Survey:
    """Load one split of a prepared WorldValuesBench directory as a `Survey`.

    Args:
        root: the WorldValuesBench repository (or its ``WorldValuesBench/`` data folder).
        split: ``full``, ``train``, ``valid`` or ``test`` (the benchmark's participant split).
        fields: profile field -> demographic column; the paper's eight by default.
        template: profile rendering; the paper's persona sentence by default.
        question_text: ``metadata`` (the natural-language question with its scale) or
            ``codebook`` (the short codebook label, as the authors' code used).
        question_metadata, codebook, answer_adjustment: explicit paths overriding the layout.
    """
    root = Path(root)
    if split not in WVB_SPLITS:
        raise ValueError(f"split must be one of {WVB_SPLITS}, got {split!r}")
    if question_text not in ("metadata", "codebook"):
        raise ValueError(f"question_text must be 'metadata' or 'codebook', got {question_text!r}")
    meta_path = _find(root, "question_metadata.json", question_metadata)
    book_path = _find(root, "codebook.json", codebook)
    adjust_path = _find(root, "answer_adjustment.json", answer_adjustment)
    meta, book, adjust = _read_json(meta_path), _read_json(book_path), _read_json(adjust_path)
    questions = _questions(meta, book, adjust, question_text, (meta_path, book_path, adjust_path))

    folder = _data_dir(root) / split
    values_path = folder / f"{split}_value_qa.tsv"
    people_path = folder / f"{split}_demographic_qa.tsv"
    for path in (values_path, people_path):
        if not path.is_file():
            raise DataError(
                f"WorldValuesBench {split} file missing (run the benchmark's data_preparation.py)",
                source=path,
            )
    values = pd.read_csv(values_path, sep="\t", low_memory=False)
    people = pd.read_csv(people_path, sep="\t", dtype=str, keep_default_na=False)
    summary = LoadSummary(str(folder))
    respondents = _profiles(people, fields, _labels(meta, book, fields, book_path), people_path, summary)
    answers = _answers(values, questions, respondents, values_path, summary)
    answered = set(answers["respondent_id"])
    kept = {rid: p for rid, p in respondents.items() if rid in answered}
    summary.add(
        "respondents",
        len(respondents),
        len(kept),
        {"answered no value question": len(respondents) - len(kept)},
    )
    return Survey(
        name=f"worldvaluesbench-{split}",
        questions=questions,
        respondents=kept,
        answers=answers,
        template=template,
        source=str(values_path),
        summary=summary,
    )


def _questions(
    meta: Mapping[str, Any],
    book: Mapping[str, Any],
    adjust: Mapping[str, Any],
    question_text: str,
    paths: tuple[Path, Path, Path],
) -> dict[str, Question]:
    meta_path, book_path, adjust_path = paths
    questions = {}
    for qid, info in meta.items():
        if _object(info, meta_path, qid).get("use_case") != "value":
            continue
        _object(
            info, meta_path, qid, ("question", "answer_data_type", "answer_scale_min", "answer_scale_max")
        )
        if qid not in book:
            raise DataError("value question missing from the codebook", source=book_path, column=qid)
        entry = _object(book[qid], book_path, qid, ("question", "choices"))
        choices = _object(entry["choices"], book_path, qid)
        codes, labels = adjusted_options(
            qid, choices, _object(adjust.get(qid, {}), adjust_path, qid), book_path
        )
        ordinal = info["answer_data_type"] == "ordinal"
        if ordinal and (codes[0], codes[-1]) != (info["answer_scale_min"], info["answer_scale_max"]):
            raise DataError(
                f"adjusted codebook options {list(codes)} disagree with the metadata scale "
                f"{info['answer_scale_min']}..{info['answer_scale_max']}",
                source=meta_path,
                column=qid,
            )
        text = str(info["question"]).strip() if question_text == "metadata" else f"{entry['question']}?"
        questions[qid] = Question(qid, text, codes, labels, ordinal=ordinal)
    return questions


def _labels(
    meta: Mapping[str, Any], book: Mapping[str, Any], fields: Mapping[str, str], path: Path
) -> dict[str, tuple[set[str], set[str]]]:
    """Column -> (its codebook labels, the labels of its negative codes, which mean missing).

    Only non-ordinal columns with a codebook entry: the preparation script writes labels for
    those and plain numbers for ordinal ones (income decile).
    """
    labels = {}
    for col in fields.values():
        if col not in book or meta.get(col, {}).get("answer_data_type") == "ordinal":
            continue
        choices = _object(_object(book[col], path, col, ("choices",))["choices"], path, col)
        labels[col] = (
            {str(v) for k, v in choices.items() if not str(k).startswith("-")},
            {str(v) for k, v in choices.items() if str(k).startswith("-")},
        )
    return labels


def _profiles(
    people: pd.DataFrame,
    fields: Mapping[str, str],
    labels: Mapping[str, tuple[set[str], set[str]]],
    path: Path,
    summary: LoadSummary,
) -> dict[str, Profile]:
    """Respondent id -> profile; blank, negative-code and unlabelled values are missing (counted)."""
    absent = [c for c in [ID, *fields.values()] if c not in people.columns]
    if absent:
        raise DataError("demographic file lacks a column", source=path, column=absent[0])
    check_ids(people[ID], path, ID)
    columns: dict[str, list[str | None]] = {}
    missing_in_file, unlabelled = 0, {}
    for name, col in fields.items():
        known, missing = labels.get(col, (None, set()))
        values = people[col]
        blank = values.str.strip().eq("") | values.isin(missing)
        stray = ~blank & ~values.isin(known) if known is not None else pd.Series(False, index=values.index)
        missing_in_file += int(blank.sum())
        unlabelled[f"{col}: code without a codebook label"] = int(stray.sum())
        gone = (blank | stray).tolist()
        columns[name] = [None if g else _clean(col, v) for v, g in zip(values, gone, strict=True)]
    dropped = {"missing in the file (blank or a negative code)": missing_in_file, **unlabelled}
    total = len(people) * len(fields)
    summary.add("profile values", total, total - sum(dropped.values()), dropped)
    frame = pd.DataFrame(columns)
    return {
        rid: Profile(dict(zip(fields, row, strict=True)))
        for rid, row in zip(people[ID], frame.itertuples(index=False, name=None), strict=True)
    }


def _respondent_id(value: object) -> str | None:
    """D_INTERVIEW as text: ``156070001``, also where pandas read the column as floats."""
    if is_missing(value):
        return None
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _answers(
    values: pd.DataFrame,
    questions: Mapping[str, Question],
    respondents: Mapping[str, Profile],
    path: Path,
    summary: LoadSummary,
) -> pd.DataFrame:
    qids = [q for q in questions if q in values.columns]
    absent = [q for q in questions if q not in values.columns]
    if ID not in values.columns or absent:
        raise DataError(
            "value file lacks a column", source=path, column=ID if ID not in values.columns else absent[0]
        )
    ids = values[ID].map(_respondent_id)
    check_ids(ids, path, ID)
    stranger = ~ids.isin(respondents.keys())
    if stranger.any():
        i = first_true(stranger)
        raise DataError(
            "respondent not in the demographic file", source=path, row=i + 1, column=ID, value=ids.iloc[i]
        )
    numbers = values[qids].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    raw = values[qids]
    text = raw.notna().to_numpy() & np.isnan(numbers)
    if text.any():
        r, c = np.argwhere(text)[0]
        raise DataError("answer is not a number", source=path, row=r + 1, column=qids[c], value=raw.iat[r, c])
    for c, qid in enumerate(qids):
        column = numbers[:, c]
        bad = ~np.isnan(column) & ~np.isin(column, questions[qid].codes)
        if bad.any():
            r = first_true(bad)
            raise DataError(
                f"answer outside the question's adjusted options {list(questions[qid].codes)}",
                source=path,
                row=r + 1,
                column=qid,
                value=column[r],
            )
    rows, cols = np.nonzero(~np.isnan(numbers))
    codes = numbers[rows, cols]
    frame = answers_frame(
        {
            "respondent_id": ids.to_numpy()[rows],
            "question_id": np.asarray(qids)[cols],
            "code": codes,
            "row": rows + 1,
        }
    )
    summary.add("answers", numbers.size, len(frame), {"not answered (blank)": numbers.size - len(frame)})
    return frame
