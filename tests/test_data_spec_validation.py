"""Survey specs are checked as specs when read (errors name the file and key path), and table values are
read as text: a labelled ``NA`` is Namibia, a blank cell is missing, other words for missing are listed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from cuma.data.builtin import builtin_spec, builtin_surveys, load_builtin
from cuma.data.errors import DataError
from cuma.data.spec import SurveySpec, load_survey_table, read_table
from cuma.yamlio import parse_yaml

FIXTURES = Path(__file__).parent / "fixtures" / "survey"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def toy_spec() -> dict:
    return parse_yaml((FIXTURES / "toy.yaml").read_text())


def demographics(spec: dict) -> dict:
    return spec["demographics"]


def questions(spec: dict) -> dict:
    return spec["questions"]


BAD_SPECS = [
    # bins
    (
        lambda s: demographics(s)["age_group"]["bins"][1].update(min=99, max=40),
        r"demographics\.age_group\.bins\[1\]: min 99 > max 40",
    ),
    (
        lambda s: demographics(s)["age_group"]["bins"][1].update(min=39),
        r"demographics\.age_group\.bins\[0\] and demographics\.age_group\.bins\[1\]: overlap: \[18, 39\] and "
        r"\[39, 99\]",
    ),
    (
        lambda s: demographics(s)["age_group"]["bins"][0].update(max=float("nan")),
        r"demographics\.age_group\.bins\[0\]\.max: expected a number, got NaN",
    ),
    (
        lambda s: demographics(s)["age_group"]["bins"][0].pop("label"),
        r"demographics\.age_group\.bins\[0\]: a bin needs exactly min, max and label, got keys "
        r"\['min', 'max'\]",
    ),
    (
        lambda s: demographics(s)["age_group"].update(labels={1: "young"}),
        r"demographics\.age_group: has both labels and bins",
    ),
    # labels given twice, one value given twice
    (
        lambda s: questions(s)["q_vote"].update(options={1: "Yes", 0: "Yes"}),
        r"questions\.q_vote\.options: label 'Yes' is given to both code 1 and code 0",
    ),
    (
        lambda s: s["option_sets"]["agree"].update({3: "Agree"}),
        r"option_sets\.agree: label 'Agree' is given to both code 1 and code 3",
    ),
    (
        lambda s: demographics(s)["country"]["labels"].update(GB="Norway"),
        r"demographics\.country\.labels: label 'Norway' is given to both 'NO' and 'GB'",
    ),
    (
        lambda s: demographics(s)["gender"]["labels"].update({"1": "woman"}),
        r"demographics\.gender\.labels: 1 and '1' are the same value",
    ),
    (
        lambda s: questions(s)["q_vote"].update(options={1: "Yes", "1": "Maybe", 0: "No"}),
        r"questions\.q_vote\.options: codes 1 and '1' are the same code",
    ),
    # labels and missing codes of the wrong type
    (
        lambda s: demographics(s)["gender"]["labels"].update({1: ["male"]}),
        r"demographics\.gender\.labels\.1: expected text, got a list \['male'\]",
    ),
    (
        lambda s: demographics(s)["gender"]["labels"].update({1: 10}),
        r"demographics\.gender\.labels\.1: expected text, got the number 10; quote it to mean the text",
    ),
    (
        lambda s: demographics(s)["gender"]["labels"].update({2: None}),
        r"demographics\.gender\.labels\.2: expected text, got null \(no value\)",
    ),
    (
        lambda s: demographics(s)["country"]["labels"].update({None: "Namibia"}),
        r"demographics\.country\.labels: is null \(YAML for no value\); quote it \(\"null\"\) to mean",
    ),
    (
        lambda s: demographics(s)["country"]["labels"].update({True: "Tuvalu"}),
        r"demographics\.country\.labels\.True: is the boolean true; quote it \(\"True\"\)",
    ),
    (
        lambda s: demographics(s)["gender"].update(missing=[[9]]),
        r"demographics\.gender\.missing\[0\]: expected a single value, got a list \[9\]",
    ),
    (
        lambda s: demographics(s)["gender"].update(missing=[9, None]),
        r"demographics\.gender\.missing\[1\]: is null \(YAML for no value\)",
    ),
    (
        lambda s: questions(s)["q_econ"].update(missing=[8.5]),
        r"questions\.q_econ\.missing\[0\]: answer codes are integers, got the number 8\.5",
    ),
    (
        lambda s: questions(s)["q_econ"].update(missing=[{"code": 8}]),
        r"questions\.q_econ\.missing\[0\]: expected a single value, got a mapping",
    ),
    (
        lambda s: questions(s)["q_vote"].update(ordinal="no"),
        r"questions\.q_vote\.ordinal: expected true or false, got str 'no'",
    ),
    # a code that is both a value and missing
    (
        lambda s: questions(s)["q_econ"].update(missing=[1]),
        r"questions\.q_econ\.missing: 1 is also an option code of the question",
    ),
    (
        lambda s: demographics(s)["gender"].update(missing=[2]),
        r"demographics\.gender\.missing: 2 also has a label in demographics\.gender\.labels",
    ),
    # unknown keys, undefined references
    (lambda s: demographics(s)["gender"].update(colum="sex"), r"demographics\.gender\.colum: unknown key"),
    (
        lambda s: demographics(s)["age_group"]["bins"][0].update(lable="x"),
        r"demographics\.age_group\.bins\[0\]: a bin needs exactly min, max and label",
    ),
    (lambda s: s["template"].update(sufix="."), r"template\.sufix: unknown key"),
    (lambda s: s.update(descripton="x"), r"descripton: unknown key"),
    (
        lambda s: questions(s)["q_econ"].update(options="agree5"),
        r"questions\.q_econ\.options: option set 'agree5' is not defined; defined: \['agree'\]",
    ),
    (
        lambda s: s["template"]["parts"].update(agegroup="age {value}"),
        r"template\.parts\.agegroup: not a demographic of the spec",
    ),
    (
        lambda s: s["template"]["parts"].update(gender="gender: {gender}"),
        r"template\.parts\.gender: unknown placeholder \{gender\} in 'gender: \{gender\}'; allowed: "
        r"\{value\}",
    ),
    (
        lambda s: s.update(prompt={"option": "{letter}) {text}"}),
        r"prompt\.option: unknown placeholder \{text\}",
    ),
    # ids and shapes
    (lambda s: s.update(id=["pid", "pid"]), r"id: a column is listed twice"),
    (lambda s: s.update(id=[]), r"id: the list of columns is empty"),
    (lambda s: s.update(name=None), r"name: expected text, got null"),
    (
        lambda s: questions(s)["q_vote"].update(options={1: "Yes", 0: "No", 2: "Maybe"}, ordinal=True),
        r"questions\.q_vote\.options: ordinal question whose option codes are not monotonic",
    ),
]


@pytest.mark.parametrize(("edit", "message"), BAD_SPECS)
def test_spec_mistakes_are_named_by_file_and_key_before_any_table(tmp_path, edit, message):
    spec = toy_spec()
    edit(spec)
    path = tmp_path / "gss.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(DataError, match=rf"gss\.yaml: {message}"):
        SurveySpec.from_yaml(path)
    # the spec is read before the table, so the table (here absent) is never blamed
    with pytest.raises(DataError, match=rf"gss\.yaml: {message}"):
        load_survey_table(tmp_path / "absent.csv", path)


def write_survey(tmp_path: Path, csv: str, spec: str) -> tuple[Path, Path]:
    table, spec_path = tmp_path / "people.csv", tmp_path / "people.yaml"
    table.write_text(csv)
    spec_path.write_text(spec)
    return table, spec_path


QUESTION = 'questions:\n  q: {text: "Q?", options: {1: a, 2: b}}\n'
COUNTRY_SPEC = """
name: countries
id: pid
demographics:
  country: {column: cntry, labels: {NA: Namibia, NO: Norway, GB: United Kingdom}}
  sex: {labels: {1: male, 2: female}}
questions:
  q: {text: "Agree?", options: {1: "Yes", 0: "No"}, ordinal: false, missing: [NA]}
"""


def test_a_labelled_na_is_namibia_and_a_blank_cell_is_missing(tmp_path):
    csv = "pid,cntry,sex,q\n1,NA,1,1\n2,NO,2.0,0\n3,,1,NA\n4,GB,,\n5,NA,2,0\n"
    survey = load_survey_table(*write_survey(tmp_path, csv, COUNTRY_SPEC))
    countries = {rid: p["country"] for rid, p in survey.respondents.items()}
    assert countries == {"1": "Namibia", "2": "Norway", "5": "Namibia"}
    assert survey.respondents["2"]["sex"] == "female"  # "2.0" is the code 2
    dropped = survey.summary.units["answers"].dropped
    assert dropped == {"not answered (empty)": 1, "missing code NA": 1}
    full = load_survey_table(*write_survey(tmp_path, csv.replace("3,,1,NA", "3,,1,1"), COUNTRY_SPEC))
    assert full.respondents["3"]["country"] is None  # blank cell: missing


def test_words_for_missing_in_a_free_text_field_must_be_listed(tmp_path):
    spec = f"name: r\nid: pid\ndemographics:\n  religion: {{}}\n{QUESTION}"
    csv = "pid,religion,q\n1,Catholic,1\n2,None,2\n3,NA,1\n"
    with pytest.raises(
        DataError, match=r"people\.csv, row 2, column 'religion': 'None' is a word often written"
    ):
        load_survey_table(*write_survey(tmp_path, csv, spec))
    listed = spec.replace("religion: {}", "religion: {missing: [NA]}")
    survey = load_survey_table(*write_survey(tmp_path, csv, listed))
    assert [p["religion"] for p in survey.respondents.values()] == ["Catholic", "None", None]


def test_an_unlisted_word_in_an_answer_column_names_the_key_to_list_it_under(tmp_path):
    csv = "pid,cntry,sex,q\n1,NO,1,DK\n"
    with pytest.raises(
        DataError, match=r"row 1, column 'q': answer is not a number; .*questions\.q\.missing"
    ):
        load_survey_table(*write_survey(tmp_path, csv, COUNTRY_SPEC))
    with pytest.raises(DataError, match=r"row 1, column 'cntry': value has no label .*demographics\.country"):
        load_survey_table(*write_survey(tmp_path, "pid,cntry,sex,q\n1,SE,1,1\n", COUNTRY_SPEC))


def test_id_columns_that_join_to_the_same_id_name_both_rows(tmp_path):
    spec = f"name: w\nid: [wave, num]\n{QUESTION}"
    csv = "wave,num,q\n1-2,3,1\n1,2-3,2\n"
    with pytest.raises(
        DataError,
        match=r"people\.csv: .*people\.yaml: id: the columns \['wave', 'num'\] joined with '-' give rows 1 "
        r"\{'wave': '1-2', 'num': '3'\} and 2 \{'wave': '1', 'num': '2-3'\} the same respondent id '1-2-3'",
    ):
        load_survey_table(*write_survey(tmp_path, csv, spec))
    with pytest.raises(DataError, match=r"row 2, column 'wave\+num': duplicate respondent id"):
        load_survey_table(*write_survey(tmp_path, "wave,num,q\n1,2,1\n1,2,2\n", spec))


def test_unreadable_table_names_the_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: cannot read the table"):
        read_table(empty)


def test_built_in_specs_and_the_toy_fixture_still_load():
    for name in builtin_surveys():
        assert builtin_spec(name).questions
    toy = load_survey_table(FIXTURES / "toy.csv", FIXTURES / "toy.yaml")
    assert toy.respondents["1"]["country"] == "Norway"


@pytest.mark.parametrize(
    ("name", "files"),
    [
        ("gss-spending-2018", ["gss-spending-2018/gss_spending.csv"]),
        ("ess-immigration", ["ess-immigration/ESS9GB.csv", "ess-immigration/ESS10NO.csv"]),
    ],
)
def test_real_csv_read_as_text_gives_the_same_survey_as_the_r_data(name, files):
    if not all((SHARED / f).is_file() for f in files):
        pytest.skip("../shared/data is not available")
    table = pd.concat([read_table(SHARED / f) for f in files], ignore_index=True)
    from_csv = load_survey_table(table, builtin_spec(name))
    reference = load_builtin(name)
    assert from_csv.respondents == reference.respondents
    assert from_csv.answers.equals(reference.answers)
