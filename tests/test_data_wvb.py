"""WorldValuesBench loader on synthetic answers laid out like the benchmark's prepared files."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cuma.data.errors import DataError
from cuma.data.examples import build_examples
from cuma.data.wvb import FIELDS, load_worldvaluesbench

METADATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "worldvaluesbench-metadata"


def prepared_answer(raw: int, adjustment: dict) -> str:
    """What the benchmark's preparation writes for a raw code: adjusted; blank if removed or negative."""
    new = adjustment.get(str(raw), str(raw))
    return "" if new == "" or int(new) < 0 else str(int(new))


def make_wvb(root: Path, meta: dict, book: dict, adjust: dict, n: int, seed: int = 0) -> dict:
    """Write a WorldValuesBench layout with ``n`` synthetic participants; return their raw codes."""
    rng = np.random.default_rng(seed)
    data, construction = root / "WorldValuesBench", root / "dataset_construction"
    (data / "full").mkdir(parents=True)
    construction.mkdir()
    (data / "question_metadata.json").write_text(json.dumps(meta))
    (construction / "codebook.json").write_text(json.dumps(book))
    (construction / "answer_adjustment.json").write_text(json.dumps(adjust))
    ids = [str(156070000 + i) for i in range(n)]
    raw, values, people = {}, {"D_INTERVIEW": ids}, {"D_INTERVIEW": ids}
    for qid, info in meta.items():
        if qid == "D_INTERVIEW":
            continue
        codes = [int(c) for c in book[qid]["choices"]]
        picks = rng.choice(codes, size=n)
        if info["use_case"] == "value":
            raw[qid] = picks
            values[qid] = [prepared_answer(int(c), adjust.get(qid, {})) for c in picks]
        else:
            people[qid] = [book[qid]["choices"][str(c)] for c in picks]
    pd.DataFrame(people).to_csv(data / "full" / "full_demographic_qa.tsv", sep="\t", index=False)
    pd.DataFrame(values).to_csv(data / "full" / "full_value_qa.tsv", sep="\t", index=False)
    return {"ids": ids, "raw": raw}


def mini_metadata():
    """A three-question stand-in for the real files, in their format."""
    meta = {"D_INTERVIEW": {"use_case": "demographic", "answer_data_type": "non_ordinal", "question": "id"}}
    book = {}
    for name, col in FIELDS.items():
        meta[col] = {"use_case": "demographic", "answer_data_type": "non_ordinal", "question": name}
        book[col] = {"question": name, "choices": {"1": f"{name} one", "2": f"{name} two", "-2": "No answer"}}
    book["X003R"]["choices"] = {"1": "16-24 years", "6": "65 and over", "-5": "Missing; Not available"}
    book["Q290"]["choices"] = {"32001": "AR: White", "32004": "AR: Black", "-4": "Not asked"}
    scale = {"use_case": "value", "answer_data_type": "ordinal", "category": "c"}
    meta["Q56"] = {
        **scale,
        "question": "Compared with your parents, are you better off?",
        "answer_scale_min": 1,
        "answer_scale_max": 3,
    }
    book["Q56"] = {
        "question": "Standard of living",
        "choices": {"1": "Better off", "2": "Worse off", "3": "Or about the same", "-1": "Don't know"},
    }
    meta["Q241"] = {**scale, "question": "Tax the rich?", "answer_scale_min": 1, "answer_scale_max": 10}
    book["Q241"] = {
        "question": "Democracy: tax the rich",
        "choices": {
            "0": "It is against democracy (spontaneous)",
            "1": "Not an essential characteristic of democracy",
            **{str(i): str(i) for i in range(2, 10)},
            "10": "An essential characteristic of democracy",
            "-2": "No answer",
        },
    }
    meta["Q111"] = {
        **scale,
        "question": "Environment or growth?",
        "answer_scale_min": 1,
        "answer_scale_max": 2,
    }
    book["Q111"] = {
        "question": "Environment vs growth",
        "choices": {
            "1": "A: Protect environment",
            "2": "B: Economic growth",
            "3": "Other answer",
            "-1": "Don't know",
        },
    }
    adjust = {"Q56": {"2": "3", "3": "2"}, "Q241": {"0": "1"}, "Q111": {"3": ""}}
    return meta, book, adjust


def real_metadata():
    if not METADATA.exists():
        pytest.skip("WorldValuesBench metadata not in ../shared/data")
    return [
        json.loads((METADATA / f).read_text())
        for f in ("question_metadata.json", "codebook.json", "answer_adjustment.json")
    ]


def check_labels_follow_the_raw_answers(survey, made, book, adjust):
    """Every example's target label is the codebook label of the participant's raw answer."""
    examples = {(ex.respondent_id, ex.question_id): ex for ex in build_examples(survey)}
    checked = 0
    for qid, picks in made["raw"].items():
        for rid, code in zip(made["ids"], picks, strict=True):
            if prepared_answer(int(code), adjust.get(qid, {})) == "":
                assert (rid, qid) not in examples
                continue
            ex = examples[(rid, qid)]
            label = ex.option_labels[ex.option_letters.index(ex.target_letter)]
            expected = book[qid]["choices"][str(code)]
            folded = adjust.get(qid, {}).get(str(code)) not in (None, str(code))
            assert label == expected or (folded and ex.target_code in ex.option_codes)
            checked += 1
    assert checked == len(examples)


def test_mini_layout(tmp_path):
    meta, book, adjust = mini_metadata()
    made = make_wvb(tmp_path, meta, book, adjust, n=40)
    survey = load_worldvaluesbench(tmp_path)
    assert survey.questions["Q56"].labels == ("Better off", "Or about the same", "Worse off")
    assert survey.questions["Q241"].codes == tuple(range(1, 11))
    assert survey.questions["Q241"].labels[0] == "Not an essential characteristic of democracy"
    assert survey.questions["Q111"].codes == (1, 2)
    check_labels_follow_the_raw_answers(survey, made, book, adjust)
    blanks = sum(prepared_answer(int(c), adjust.get(q, {})) == "" for q, p in made["raw"].items() for c in p)
    assert survey.summary.units["answers"].dropped == {"not answered (blank)": blanks}
    profiles = list(survey.respondents.values())
    assert {p["age_group"] for p in profiles} <= {"16-24 years old", "65 and over", None}
    assert {p["ethnicity"] for p in profiles} <= {"White", "Black", None}
    assert not any("No answer" in str(v) or "Missing" in str(v) for p in profiles for v in p.values())
    assert "unknown" in " ".join(survey.template.render(p) for p in profiles)


def test_real_metadata_options_agree_with_the_recoded_scale(tmp_path):
    meta, book, adjust = real_metadata()
    made = make_wvb(tmp_path, meta, book, adjust, n=12, seed=1)
    survey = load_worldvaluesbench(tmp_path)
    assert len(survey.questions) == 239
    q = survey.questions
    assert q["Q56"].labels == ("Better off", "Or about the same", "Worse off")
    assert q["Q119"].codes == (1, 2, 3, 4, 5) and q["Q119"].labels[2] == "Hard to say"
    assert q["Q254"].codes == (1, 2, 3, 4) and q["Q221"].codes == (1, 2, 3)
    for qid in (f"Q{i}" for i in range(241, 250)):
        assert q[qid].codes == tuple(range(1, 11))
    for qid, question in q.items():
        assert (question.scale_min, question.scale_max) == (
            meta[qid]["answer_scale_min"],
            meta[qid]["answer_scale_max"],
        )
    check_labels_follow_the_raw_answers(survey, made, book, adjust)
    ex = build_examples(survey, persona=True)[0]
    assert ex.messages[0]["content"].startswith("You are a person from ")


def test_train_split_files_and_codebook_question_text(tmp_path):
    meta, book, adjust = mini_metadata()
    make_wvb(tmp_path, meta, book, adjust, n=10)
    shutil.copytree(tmp_path / "WorldValuesBench" / "full", tmp_path / "WorldValuesBench" / "train")
    for f in (tmp_path / "WorldValuesBench" / "train").iterdir():
        f.rename(f.with_name(f.name.replace("full_", "train_")))
    survey = load_worldvaluesbench(tmp_path / "WorldValuesBench", split="train", question_text="codebook")
    assert survey.questions["Q56"].text == "Standard of living?"
    with pytest.raises(DataError, match="valid file missing"):
        load_worldvaluesbench(tmp_path, split="valid")


def test_bad_wvb_answers_are_errors_not_drops(tmp_path):
    meta, book, adjust = mini_metadata()
    make_wvb(tmp_path, meta, book, adjust, n=10)
    path = tmp_path / "WorldValuesBench" / "full" / "full_value_qa.tsv"
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    table.loc[3, "Q56"] = "7"
    table.to_csv(path, sep="\t", index=False)
    with pytest.raises(DataError, match=r"full_value_qa\.tsv, row 4, column 'Q56'.*adjusted options.*7"):
        load_worldvaluesbench(tmp_path)
    table.loc[3, "Q56"] = "1"
    table.loc[5, "D_INTERVIEW"] = table.loc[4, "D_INTERVIEW"]
    table.to_csv(path, sep="\t", index=False)
    with pytest.raises(DataError, match=r"row 6.*duplicate respondent id"):
        load_worldvaluesbench(tmp_path)


def test_demographic_code_without_codebook_label_is_missing_and_counted(tmp_path):
    meta, book, adjust = mini_metadata()
    made = make_wvb(tmp_path, meta, book, adjust, n=10)
    path = tmp_path / "WorldValuesBench" / "full" / "full_demographic_qa.tsv"
    people = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    people.loc[2, "B_COUNTRY"] = "840"  # the preparation script writes the raw code when it has no label
    people.to_csv(path, sep="\t", index=False)
    survey = load_worldvaluesbench(tmp_path)
    assert survey.respondents[made["ids"][2]]["country"] is None
    dropped = survey.summary.units["profile values"].dropped
    assert {reason: n for reason, n in dropped.items() if "codebook label" in reason} == {
        "B_COUNTRY: code without a codebook label": 1
    }
    blank = (
        people[list(FIELDS.values())].isin(["No answer", "Missing; Not available", "Not asked"]).sum().sum()
    )
    assert dropped["missing in the file (blank or a negative code)"] == blank
    assert survey.summary.units["profile values"].read == 10 * len(FIELDS)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m, b: m["Q56"].pop("answer_scale_max"),
            r"question_metadata\.json, column 'Q56'.*required key.*answer_scale_max",
        ),
        (lambda m, b: b["Q241"].pop("choices"), r"codebook\.json, column 'Q241'.*'choices'"),
        (lambda m, b: b.update(Q111=["1", "2"]), r"codebook\.json, column 'Q111'.*JSON object.*list"),
        (lambda m, b: m.update(Q56="ordinal"), r"question_metadata\.json, column 'Q56'.*object.*str"),
    ],
)
def test_malformed_metadata_names_file_and_question(tmp_path, edit, message):
    meta, book, adjust = mini_metadata()
    make_wvb(tmp_path, meta, book, adjust, n=4)
    edit(meta, book)
    (tmp_path / "WorldValuesBench" / "question_metadata.json").write_text(json.dumps(meta))
    (tmp_path / "dataset_construction" / "codebook.json").write_text(json.dumps(book))
    with pytest.raises(DataError, match=message):
        load_worldvaluesbench(tmp_path)


@pytest.mark.parametrize(
    ("name", "column"), [("full_value_qa.tsv", "Q241"), ("full_demographic_qa.tsv", "Q273")]
)
def test_file_missing_a_column_names_file_and_column(tmp_path, name, column):
    meta, book, adjust = mini_metadata()
    make_wvb(tmp_path, meta, book, adjust, n=4)
    path = tmp_path / "WorldValuesBench" / "full" / name
    pd.read_csv(path, sep="\t", dtype=str).drop(columns=column).to_csv(path, sep="\t", index=False)
    with pytest.raises(DataError, match=rf"{re.escape(name)}, column '{column}': \w+ file lacks a column"):
        load_worldvaluesbench(tmp_path)
