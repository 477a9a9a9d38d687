"""WorldValuesBench (WVS wave 7) as laid out by its own ``data_preparation.py``.

The WVS answers cannot be redistributed: point the loader at your own prepared copy. It reads
``question_metadata.json``, ``{split}/{split}_value_qa.tsv`` and ``{split}_demographic_qa.tsv``
(split = full, train, valid or test) from the ``WorldValuesBench/`` folder, and
``codebook.json`` and ``answer_adjustment.json`` from ``dataset_construction/``.

Unlike the reference code, the option lists get the same answer adjustments as the answers
(15 questions: Q56 swaps two labels, Q119 moves "Hard to say" to the middle, Q241-Q249 fold the
spontaneous 0 into 1, Q111/Q221/Q222/Q254 lose an option), so every answer has its own label
and none is dropped silently; an answer outside its question's options is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cuma.data.errors import DataError
from cuma.data.profiles import WVB_PERSONA, Profile, ProfileTemplate
from cuma.data.summary import LoadSummary
from cuma.data.survey import Question, Survey, answers_frame

ID = "D_INTERVIEW"
SPLITS = ("full", "train", "valid", "test")
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON: {err}", source=path) from err


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
            ``codebook`` (the short codebook label, as the reference code used).
        question_metadata, codebook, answer_adjustment: explicit paths overriding the layout.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if question_text not in ("metadata", "codebook"):
        raise ValueError(f"question_text must be 'metadata' or 'codebook', got {question_text!r}")
    meta_path = _find(root, "question_metadata.json", question_metadata)
    book_path = _find(root, "codebook.json", codebook)
    adjust_path = _find(root, "answer_adjustment.json", answer_adjustment)
    meta, book, adjust = _read_json(meta_path), _read_json(book_path), _read_json(adjust_path)
    questions = _questions(meta, book, adjust, question_text, book_path, meta_path)

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
    respondents = _profiles(people, fields, book, people_path)
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
    book_path: Path,
    meta_path: Path,
) -> dict[str, Question]:
    questions = {}
    for qid, info in meta.items():
        if info.get("use_case") != "value":
            continue
        if qid not in book:
            raise DataError("value question missing from the codebook", source=book_path, column=qid)
        codes, labels = adjusted_options(qid, book[qid]["choices"], adjust.get(qid, {}), book_path)
        ordinal = info.get("answer_data_type") == "ordinal"
        if ordinal and (codes[0], codes[-1]) != (info["answer_scale_min"], info["answer_scale_max"]):
            raise DataError(
                f"adjusted codebook options {list(codes)} disagree with the metadata scale "
                f"{info['answer_scale_min']}..{info['answer_scale_max']}",
                source=meta_path,
                column=qid,
            )
        text = info["question"].strip() if question_text == "metadata" else f"{book[qid]['question']}?"
        questions[qid] = Question(qid, text, codes, labels, ordinal=ordinal)
    return questions


def _profiles(
    people: pd.DataFrame, fields: Mapping[str, str], book: Mapping[str, Any], path: Path
) -> dict[str, Profile]:
    missing = [c for c in [ID, *fields.values()] if c not in people.columns]
    if missing:
        raise DataError("demographic file lacks a column", source=path, column=missing[0])
    _check_ids(people[ID], path)
    columns = {}
    for name, col in fields.items():
        # the preparation script writes codebook labels; its labels for negative codes mean missing
        missing_labels = {v for k, v in book.get(col, {}).get("choices", {}).items() if k.startswith("-")}
        missing_labels.add("")
        columns[name] = [None if v in missing_labels else _clean(col, v) for v in people[col]]
    frame = pd.DataFrame(columns)
    return {
        rid: Profile(dict(zip(fields, row, strict=True)))
        for rid, row in zip(people[ID], frame.itertuples(index=False, name=None), strict=True)
    }


def _check_ids(ids: pd.Series, path: Path) -> None:
    blank = (ids.astype(str).str.strip() == "") | ids.isna()
    if blank.any():
        raise DataError("missing D_INTERVIEW", source=path, row=int(np.flatnonzero(blank.to_numpy())[0]) + 1)
    dup = ids.astype(str).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError("duplicate respondent id", source=path, row=i + 1, column=ID, value=str(ids.iloc[i]))


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
    ids = values[ID].map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    _check_ids(ids, path)
    stranger = ~ids.isin(respondents.keys())
    if stranger.any():
        i = int(np.flatnonzero(stranger.to_numpy())[0])
        raise DataError(
            "respondent not in the demographic file", source=path, row=i + 1, column=ID, value=ids.iloc[i]
        )
    numbers = values[qids].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    raw = values[qids]
    text = raw.notna().to_numpy() & np.isnan(numbers)
    if text.any():
        r, c = np.argwhere(text)[0]
        raise DataError("answer is not a number", source=path, row=r + 1, column=qids[c], value=raw.iat[r, c])
    rows, cols = np.nonzero(~np.isnan(numbers))
    codes = numbers[rows, cols]
    for c, qid in enumerate(qids):
        mine = cols == c
        bad = mine & ~np.isin(codes, questions[qid].codes)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"answer outside the question's adjusted options {list(questions[qid].codes)}",
                source=path,
                row=int(rows[k]) + 1,
                column=qid,
                value=float(codes[k]),
            )
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
