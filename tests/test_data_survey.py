"""The survey data model and the bring-your-own (table + YAML spec) loader, bad inputs included."""

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cuma.data.errors import DataError
from cuma.data.examples import build_examples, examples_frame, group_fields
from cuma.data.profiles import Profile
from cuma.data.spec import SurveySpec, load_survey_table
from cuma.data.survey import Question, Survey, answers_frame
from cuma.metrics.frame import PREDICTION_INPUT_COLUMNS
from cuma.yamlio import parse_yaml

FIXTURES = Path(__file__).parent / "fixtures" / "survey"


def toy_table() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "toy.csv")


def toy_spec() -> dict:
    return parse_yaml((FIXTURES / "toy.yaml").read_text())


def test_toy_survey_loads_profiles_answers_and_summary():
    survey = load_survey_table(FIXTURES / "toy.csv", FIXTURES / "toy.yaml")
    assert list(survey.questions) == ["q_econ", "q_culture", "q_vote"]
    assert survey.respondents["2"] == Profile(country="Norway", age_group="40+", gender="female")
    assert survey.respondents["5"]["gender"] is None  # code 9 means missing
    assert survey.respondents["8"]["gender"] is None  # empty cell
    assert "6" not in survey.respondents  # answered nothing
    answers = survey.summary.units["answers"]
    assert (answers.read, answers.kept) == (24, 19)
    assert answers.dropped == {"not answered (empty)": 4, "missing code 8": 1}
    assert survey.summary.units["respondents"].dropped == {"answered no question": 1}


def test_examples_letters_targets_and_persona():
    survey = load_survey_table(toy_table(), SurveySpec.from_dict(toy_spec()))
    plain = build_examples(survey)
    persona = build_examples(survey, persona=True)
    ex = next(e for e in plain if (e.respondent_id, e.question_id) == ("2", "q_econ"))
    assert (ex.option_letters, ex.option_codes, ex.target_letter, ex.target_code) == (
        ("A", "B", "C"),
        (1, 2, 3),
        "C",
        3,
    )
    assert (ex.scale_min, ex.scale_max, ex.ordinal) == (1, 3, True)
    assert ex.profile_text == "You are a person from Norway, age group: 40+, gender: female."
    assert "A. Agree\nB. Neither\nC. Disagree" in ex.messages[1]["content"]
    assert ex.messages[0]["content"] == "You are a helpful assistant that answers survey questions honestly."
    assert ex.messages[-1] == {"role": "assistant", "content": "C"}
    twin = next(e for e in persona if (e.respondent_id, e.question_id) == ("2", "q_econ"))
    assert twin.messages[0]["content"] == ex.profile_text
    vote = next(e for e in plain if (e.respondent_id, e.question_id) == ("2", "q_vote"))
    assert (vote.option_codes, vote.target_letter, vote.ordinal) == ((1, 0), "B", False)
    # a missing field is left out of the text, never rendered as "nan"
    five = next(e for e in plain if e.respondent_id == "5")
    assert "nan" not in five.profile_text and "gender" not in five.profile_text


def test_examples_frame_joins_on_ids_and_carries_profile_fields():
    examples = build_examples(load_survey_table(toy_table(), SurveySpec.from_dict(toy_spec())))
    frame = examples_frame(examples)
    assert len(frame) == len(examples) == 19
    assert group_fields(examples) == ["country", "age_group", "gender"]
    row = frame[(frame.respondent_id == "3") & (frame.question_id == "q_culture")].iloc[0]
    assert (row.target_code, row.option_codes, row.country, row.gender) == (
        1,
        [1, 2, 3],
        "United Kingdom",
        "female",
    )


def test_examples_frame_has_the_schemas_answer_columns_and_refuses_a_clashing_field():
    examples = build_examples(load_survey_table(toy_table(), SurveySpec.from_dict(toy_spec())))
    assert set(PREDICTION_INPUT_COLUMNS) <= set(examples_frame(examples).columns)
    clashing = [dataclasses.replace(ex, profile=Profile(ordinal="yes")) for ex in examples[:2]]
    with pytest.raises(ValueError, match=r"\['ordinal'\] clash with the frame's own columns"):
        examples_frame(clashing)


def write(tmp_path, table: pd.DataFrame, spec: dict) -> tuple[Path, Path]:
    table_path, spec_path = tmp_path / "t.csv", tmp_path / "s.yaml"
    table.to_csv(table_path, index=False)
    spec_path.write_text(yaml.safe_dump(spec))
    return table_path, spec_path


def test_missing_column_names_file_and_column(tmp_path):
    table_path, spec_path = write(tmp_path, toy_table().drop(columns="q_vote"), toy_spec())
    with pytest.raises(DataError, match=r"t\.csv.*column 'q_vote'.*s\.yaml"):
        load_survey_table(table_path, spec_path)


def test_unknown_column_in_spec(tmp_path):
    spec = toy_spec()
    spec["demographics"]["region"] = {"column": "regio"}
    table_path, spec_path = write(tmp_path, toy_table(), spec)
    with pytest.raises(DataError, match="column 'regio'"):
        load_survey_table(table_path, spec_path)


def test_answer_outside_scale_names_row_column_value(tmp_path):
    table = toy_table()
    table.loc[2, "q_culture"] = 7
    table_path, spec_path = write(tmp_path, table, toy_spec())
    with pytest.raises(DataError, match=r"t\.csv, row 3, column 'q_culture'.*scale.*value 7"):
        load_survey_table(table_path, spec_path)


def test_duplicate_respondent_id(tmp_path):
    table = toy_table()
    table.loc[4, "pid"] = 2
    table_path, spec_path = write(tmp_path, table, toy_spec())
    with pytest.raises(DataError, match=r"row 5.*duplicate respondent id.*value '2'"):
        load_survey_table(table_path, spec_path)


def test_label_list_not_matching_codes():
    with pytest.raises(DataError, match=r"column 'q'.*label list does not match the codes"):
        Question("q", "Text?", codes=(1, 2, 3), labels=("a", "b")).validate("spec.yaml")


def test_unlabelled_demographic_value_and_value_outside_bins(tmp_path):
    table = toy_table()
    table.loc[1, "cntry"] = "SE"
    with pytest.raises(DataError, match=r"row 2, column 'cntry'.*no label.*'SE'"):
        load_survey_table(table, SurveySpec.from_dict(toy_spec()))
    table = toy_table()
    table.loc[0, "age"] = 12
    with pytest.raises(DataError, match=r"row 1, column 'age'.*no bin.*12"):
        load_survey_table(table, SurveySpec.from_dict(toy_spec()))


def test_spec_errors_name_the_spec_file(tmp_path):
    spec = toy_spec()
    spec["questions"]["q_econ"]["options"] = "agree7"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(DataError, match=r"bad\.yaml: questions\.q_econ\.options: option set 'agree7' is not"):
        SurveySpec.from_yaml(path)
    spec = toy_spec()
    spec["questions"]["q_econ"]["optoins"] = {1: "a", 2: "b"}
    with pytest.raises(DataError, match=r"x\.yaml: questions\.q_econ\.optoins: unknown key"):
        SurveySpec.from_dict(spec, path="x.yaml")


def test_non_integer_answer(tmp_path):
    table = toy_table()
    table["q_econ"] = table["q_econ"].astype(object)
    table.loc[0, "q_econ"] = "often"
    with pytest.raises(DataError, match=r"row 1, column 'q_econ'.*not a number"):
        load_survey_table(table, SurveySpec.from_dict(toy_spec()))


def test_survey_rejects_answers_that_do_not_fit():
    question = Question("q", "Q?", codes=(1, 2), labels=("yes", "no"))
    people = {"a": Profile(x="1")}
    with pytest.raises(DataError, match=r"column 'q'.*outside.*value 3"):
        Survey(
            "s",
            {"q": question},
            people,
            answers_frame({"respondent_id": ["a"], "question_id": ["q"], "code": [3]}),
        )
    with pytest.raises(DataError, match="unknown respondent"):
        Survey(
            "s",
            {"q": question},
            people,
            answers_frame({"respondent_id": ["b"], "question_id": ["q"], "code": [1]}),
        )
    twice = answers_frame({"respondent_id": ["a", "a"], "question_id": ["q", "q"], "code": [1, 2]})
    with pytest.raises(DataError, match="two answers"):
        Survey("s", {"q": question}, people, twice)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s["demographics"]["age_group"]["bins"][0].update(min="eighteen"),
            r"demographics\.age_group\.bins\[0\]\.min: expected a number, got str 'eighteen'",
        ),
        (
            lambda s: s["demographics"]["country"].update(labels=["NO", "GB"]),
            r"demographics\.country\.labels: expected a mapping, got a list",
        ),
        (lambda s: s.update(questions=["q_econ", "q_culture"]), r"questions: expected a mapping, got a list"),
        (
            lambda s: s["questions"]["q_econ"].update(missing=8),
            r"questions\.q_econ\.missing: expected a list, got the number 8",
        ),
        (
            lambda s: s["demographics"].update(gender="sex"),
            r"demographics\.gender: expected a mapping, got str",
        ),
    ],
)
def test_malformed_spec_names_the_spec_file_and_entry(tmp_path, edit, message):
    spec = toy_spec()
    edit(spec)
    path = tmp_path / "malformed.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(DataError, match=rf"malformed\.yaml: {message}"):
        SurveySpec.from_yaml(path)
