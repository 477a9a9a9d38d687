"""JudgeConfig validation and build_judge."""

import dataclasses
import re

import pytest

from cuma.errors import ConfigError
from cuma.fieldcheck import field_docs
from cuma.judges import BothOrdersJudge, CallableJudge, HTTPJudge, JudgeConfig, LocalJudge, build_judge
from cuma.judges.failures import check_failure_share
from cuma.judges.verdict import Verdict
from cuma.tiny import tiny_model, tiny_tokenizer

HTTP = dict(kind="http", base_url="http://127.0.0.1:9/v1", model="judge")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "openai"}, "judge.kind='openai': expected 'http' | 'local' | 'callable'"),
        ({"base_url": None}, "judge.base_url=None: the http judge needs an http(s):// URL"),
        (
            {"base_url": "127.0.0.1:8000"},
            "judge.base_url='127.0.0.1:8000': the http judge needs an http(s)://",
        ),
        ({"base_url": "http://h/v1/chat/completions"}, "must be the API root"),
        ({"model": ""}, "judge.model='': the http judge needs a model name"),
        ({"timeout_s": 0}, "judge.timeout_s=0: must be a positive finite number"),
        ({"max_retries": -1}, "judge.max_retries=-1: must be a finite number >= 0"),
        ({"max_retries": 1.5}, "judge.max_retries=1.5: expected int"),
        ({"backoff_s": "1"}, "judge.backoff_s='1': expected float"),
        ({"max_requests": 0}, "judge.max_requests=0: must be at least 1"),
        ({"max_concurrency": True}, "judge.max_concurrency=True: expected int"),
        ({"max_failure_share": 1.5}, "judge.max_failure_share=1.5: must be in [0, 1]"),
        ({"both_orders": "yes"}, "judge.both_orders='yes': expected bool"),
        ({"template": "no-such-prompt"}, "judge.template='no-such-prompt': must be a built-in prompt"),
    ],
)
def test_invalid_settings_are_errors_naming_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        JudgeConfig(**{**HTTP, **overrides})


def test_a_key_in_place_of_the_variable_name_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="NAME of an environment variable") as error:
        JudgeConfig(**HTTP, api_key_env="sk-live-abcdef")
    assert "sk-live-abcdef" not in str(error.value)
    assert JudgeConfig(**HTTP, api_key_env="OPENAI_API_KEY").api_key_env == "OPENAI_API_KEY"


def test_every_field_is_documented() -> None:
    docs = "\n".join(field_docs(JudgeConfig, "judge."))
    for f in dataclasses.fields(JudgeConfig):
        assert f"judge.{f.name} (" in docs and f.metadata["help"].strip()


def test_build_judge_makes_each_kind() -> None:
    fn = lambda profile, prompt, a, b: "a"  # noqa: E731
    both = build_judge(JudgeConfig(kind="callable"), fn=fn)
    assert isinstance(both, BothOrdersJudge) and isinstance(both.inner, CallableJudge)
    assert isinstance(build_judge(JudgeConfig(kind="callable", both_orders=False), fn=fn), CallableJudge)
    http = build_judge(JudgeConfig(**HTTP, both_orders=False))
    assert isinstance(http, HTTPJudge) and http.url == "http://127.0.0.1:9/v1/chat/completions"
    http.close()
    local = build_judge(JudgeConfig(kind="local", model="tiny-llama", both_orders=False, batch_size=3))
    assert isinstance(local, LocalJudge) and local.batch_size == 3
    given = build_judge(JudgeConfig(kind="local"), model=tiny_model(), tokenizer=tiny_tokenizer())
    assert isinstance(given.inner, LocalJudge)


@pytest.mark.parametrize(
    ("config", "kwargs", "message"),
    [
        (JudgeConfig(kind="callable"), {}, "a judge function is given exactly when"),
        (JudgeConfig(**HTTP), {"fn": print}, "a judge function is given exactly when"),
        (JudgeConfig(kind="local"), {}, "judge.model=None: must name the model"),
        (JudgeConfig(kind="local"), {"model": object()}, "both a model and its tokenizer"),
        (
            JudgeConfig(kind="callable"),
            {"fn": print, "tokenizer": object()},
            "only when judge.kind is 'local'",
        ),
    ],
)
def test_build_judge_refuses_mismatched_arguments(config: JudgeConfig, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_judge(config, **kwargs)


def test_both_orders_counts_pairs_and_the_inner_requests() -> None:
    judge = build_judge(JudgeConfig(kind="callable"), fn=lambda profile, prompt, a, b: "a" if a else "?")
    verdicts = judge.judge_many([("p", "q", "x", "y"), ("p", "q", "", "y")])
    assert [v.choice for v in verdicts] == ["tie", "failed"]
    counts = judge.counts
    assert counts.judged == 2 and counts.failed == 1 and counts.requests == 4


def test_the_failure_share_check() -> None:
    verdicts = [Verdict("a"), Verdict.failure("timeout"), Verdict("tie"), Verdict("b")]
    assert check_failure_share(verdicts, 0.25) == 0.25
    assert check_failure_share([], 0.0) == 0.0
    with pytest.raises(ValueError, match="max_share must be a share between 0 and 1"):
        check_failure_share(verdicts, 2)


def test_the_configs_list_of_built_in_prompts_is_the_judges() -> None:
    from cuma.config import JUDGE_PROMPTS
    from cuma.judges import PROMPTS

    assert set(JUDGE_PROMPTS) == set(PROMPTS)


def test_an_experiment_config_carries_its_judge_and_preference_settings() -> None:
    from cuma.config import ExperimentConfig

    config = ExperimentConfig().with_overrides(["judge.kind=callable", "preference.max_new_tokens=32"])
    assert config.judge.kind == "callable" and config.preference.max_new_tokens == 32
    with pytest.raises(ConfigError, match=r"judge\.base_url"):
        ExperimentConfig().with_overrides(["judge.kind=http"])
