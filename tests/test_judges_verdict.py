"""Verdicts, the verdict parser and the demographic-aware judge prompt."""

import re

import pytest

from cuma.data.profiles import WVB_PERSONA
from cuma.judges import JudgeItem, JudgePrompt, Verdict, load_prompt, parse_verdict
from cuma.judges.verdict import as_items


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("[[A]]", "a"),
        ("Response B suits them better. [[B]]", "b"),
        ("[[C]]", "tie"),
        ("[[A]] ... final answer: [[A]]", "a"),
    ],
)
def test_one_distinct_verdict_token_is_the_choice(text: str, choice: str) -> None:
    verdict = parse_verdict(text)
    assert verdict.choice == choice and verdict.raw == text and verdict.reason is None


@pytest.mark.parametrize(
    "text", ["", "A", "[A]", "[[a]]", "[[Tie]]", "[[D]]", "[[A]] [[B]]", "[[B]] then [[C]]", None]
)
def test_no_or_conflicting_verdict_tokens_fail(text: str | None) -> None:
    verdict = parse_verdict(text)
    assert verdict.failed and verdict.reason and verdict.raw == text


def test_verdicts_are_checked_and_swap() -> None:
    with pytest.raises(ValueError, match="one of a, b, tie, failed"):
        Verdict("A")
    with pytest.raises(ValueError, match="reason exactly when it failed"):
        Verdict("failed")
    with pytest.raises(ValueError, match="reason exactly when it failed"):
        Verdict("a", reason="why")
    assert Verdict("a", "r").swapped() == Verdict("b", "r")
    assert Verdict("tie").swapped().choice == "tie"
    nested = Verdict("tie", {"ab": Verdict("a"), "ba": Verdict.failure("x")})
    assert nested.to_dict()["raw"]["ba"] == {"choice": "failed", "raw": None, "reason": "x"}


def test_items_are_checked_before_judging() -> None:
    assert as_items([("Age: 3", "q", "a", "b")]) == [JudgeItem("Age: 3", "q", "a", "b")]
    with pytest.raises(TypeError, match="judge item 1: response_b must be a string; got None"):
        as_items([("p", "q", "a", "b"), ({"age": 3}, "q", "a", None)])
    with pytest.raises(TypeError, match="judge item 0 must be a JudgeItem"):
        as_items([("p", "q", "a")])
    with pytest.raises(TypeError, match="judge item 0: profile must be a mapping or a string"):
        as_items([(3, "q", "a", "b")])


def test_the_prompt_states_profile_prompt_and_both_responses() -> None:
    item = JudgeItem({"country": "Norway", "age_group": "45-54", "gender": None}, "Tax?", "More.", "Less.")
    system, user = JudgePrompt().messages(item)
    assert system["role"] == "system" and "this person" in system["content"]
    text = user["content"]
    assert "Country: Norway, Age group: 45-54" in text and "Gender" not in text
    for part in ("Tax?", "[Response A]\nMore.", "[Response B]\nLess.", "[[A]]", "[[B]]", "[[C]]"):
        assert part in text
    persona = JudgePrompt(profile_template=WVB_PERSONA).messages(item)[1]["content"]
    assert "You are a person from Norway, age group: 45-54, gender: unknown." in persona
    assert (
        "Profile of the person: a ready sentence"
        in JudgePrompt().messages(item._replace(profile="a ready sentence"))[1]["content"]
    )


def test_an_empty_profile_is_an_error() -> None:
    with pytest.raises(ValueError, match="renders to empty text"):
        JudgePrompt().messages(JudgeItem({"age": None}, "q", "a", "b"))


def test_a_prompt_template_must_use_every_field() -> None:
    with pytest.raises(ValueError, match=r"missing \['response_b'\], unknown \['answer'\]"):
        JudgePrompt(user="{profile} {prompt} {response_a} {answer}")


def test_prompt_templates_load_from_yaml(tmp_path) -> None:
    path = tmp_path / "prompt.yaml"
    path.write_text('user: "P={profile} Q={prompt} A={response_a} B={response_b} -> [[A]]/[[B]]/[[C]]"\n')
    prompt = load_prompt(str(path))
    messages = prompt.messages(JudgeItem("Age: 3", "q", "x", "y"))
    assert messages == [{"role": "user", "content": "P=Age: 3 Q=q A=x B=y -> [[A]]/[[B]]/[[C]]"}]
    assert prompt.fingerprint != load_prompt("default").fingerprint
    path.write_text("user: '{profile}'\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: judge prompt template")):
        load_prompt(str(path))
    path.write_text("system: hi\n")
    with pytest.raises(ValueError, match="mapping with the keys 'user'"):
        load_prompt(str(path))
