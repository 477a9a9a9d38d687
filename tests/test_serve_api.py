"""`cuma serve` over HTTP: the real uvicorn server on 127.0.0.1, driven by the official openai client."""

from collections.abc import Iterator

import httpx
import openai
import pytest

from cuma.data.profiles import WVB_PERSONA
from cuma.serve import Engine, ServeConfig, ServerThread, build_app
from cuma.serve.quick import quick_engine
from cuma.tiny import tiny_model, tiny_tokenizer

NORWAY = {"country": "Norway", "age_group": "45-54", "gender": "female"}
CHILE = {"country": "Chile", "age_group": "18-24", "religion": "Catholic"}
QUESTION = [{"role": "user", "content": "How important is religion in your life?"}]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return quick_engine()


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[ServerThread]:
    config = ServeConfig(port=0, max_tokens=32, max_n=4, batch_window_ms=5)
    with ServerThread(build_app(engine, config), config) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def chat(client: openai.OpenAI, profile: object = NORWAY, **kwargs: object) -> object:
    options = {"model": "cuma-quick", "messages": QUESTION, "max_tokens": 12, "temperature": 0, **kwargs}
    return client.chat.completions.create(**options, extra_body={"profile": profile})


def test_chat_completion_answers_with_usage(client: openai.OpenAI, engine: Engine) -> None:
    response = chat(client)
    assert response.object == "chat.completion"
    assert response.model == "cuma-quick"
    [choice] = response.choices
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    prompt_tokens = len(engine.chat_prompt(QUESTION))
    assert response.usage.prompt_tokens == prompt_tokens
    assert response.usage.total_tokens == prompt_tokens + response.usage.completion_tokens
    if choice.finish_reason == "length":
        assert response.usage.completion_tokens == 12


def test_profiles_change_the_answer_and_a_sentence_equals_its_mapping(client: openai.OpenAI) -> None:
    norway, chile = chat(client, NORWAY), chat(client, CHILE)
    assert norway.choices[0].message.content != chile.choices[0].message.content
    as_sentence = chat(client, WVB_PERSONA.render(NORWAY))
    assert as_sentence.choices[0].message.content == norway.choices[0].message.content


def test_text_completion(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model="cuma-quick",
        prompt="Country: Norway.",
        max_tokens=8,
        temperature=0,
        extra_body={"profile": CHILE},
    )
    assert response.object == "text_completion"
    [choice] = response.choices
    assert isinstance(choice.text, str) and choice.finish_reason in ("stop", "length")
    assert response.usage.completion_tokens >= 1


def test_streaming_chat_equals_the_full_answer(client: openai.OpenAI) -> None:
    full = chat(client, max_tokens=16).choices[0]
    stream = chat(client, max_tokens=16, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1


def test_streaming_ends_with_done_and_carries_usage(server: ServerThread) -> None:
    body = {"model": "cuma-quick", "prompt": "Hello", "max_tokens": 6, "stream": True, "profile": NORWAY}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    assert '"usage":{' in events[-2] and '"finish_reason":"' in events[-2]


def test_n_choices_and_seeded_sampling(client: openai.OpenAI) -> None:
    first = chat(client, n=3, temperature=1.0, seed=7, max_tokens=10)
    assert [choice.index for choice in first.choices] == [0, 1, 2]
    assert len({choice.message.content for choice in first.choices}) > 1
    again = chat(client, n=3, temperature=1.0, seed=7, max_tokens=10)
    assert [c.message.content for c in again.choices] == [c.message.content for c in first.choices]
    assert first.usage.completion_tokens >= len(first.choices)


def test_streaming_n_choices(client: openai.OpenAI) -> None:
    chunks = list(chat(client, n=2, temperature=1.0, seed=3, max_tokens=6, stream=True))
    indices = {c.choices[0].index for c in chunks if c.choices}
    finished = [c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason]
    assert indices == {0, 1}
    assert sorted(finished) == [0, 1]


def test_stop_sequence_cuts_the_answer(client: openai.OpenAI) -> None:
    text = chat(client, max_tokens=20).choices[0].message.content
    stop = text[4:6]
    cut = chat(client, max_tokens=20, stop=[stop]).choices[0]
    assert cut.message.content == text[: text.find(stop)]
    assert cut.finish_reason == "stop"


def test_models_and_health(client: openai.OpenAI, server: ServerThread) -> None:
    assert [model.id for model in client.models.list()] == ["cuma-quick"]
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["queued"] == 0
    fields = httpx.get(f"{server.url}/v1/profile_fields").json()
    assert fields["reads_profiles"] is True
    assert fields["fields"] == [name for name, _ in WVB_PERSONA.parts]


def test_option_probabilities_sum_to_one_and_follow_the_profile(server: ServerThread) -> None:
    body = {"model": "cuma-quick", "messages": QUESTION, "options": ["A", "B", "C", "D"]}
    norway = httpx.post(f"{server.url}/v1/option_probabilities", json={**body, "profile": NORWAY}).json()
    chile = httpx.post(f"{server.url}/v1/option_probabilities", json={**body, "profile": CHILE}).json()
    probabilities = [option["probability"] for option in norway["options"]]
    assert [option["option"] for option in norway["options"]] == ["A", "B", "C", "D"]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert probabilities != [option["probability"] for option in chile["options"]]


def test_missing_profile_is_a_400_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="cuma-quick", messages=QUESTION, max_tokens=4)
    assert caught.value.status_code == 400
    assert caught.value.param == "profile"
    assert "profile" in caught.value.message


def test_unknown_profile_field_lists_the_known_ones(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, {"country": "Norway", "shoe_size": "42"})
    assert caught.value.param == "profile"
    assert "shoe_size" in caught.value.message
    assert all(name in caught.value.message for name, _ in WVB_PERSONA.parts)


def test_empty_profile_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="empty"):
        chat(client, {"country": None})


def test_bad_json_is_an_openai_error(server: ServerThread) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=b'{"model": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and "JSON" in error["message"]


def test_invalid_parameters_name_the_parameter(server: ServerThread) -> None:
    cases = {
        "temperature": {"temperature": 3.5},
        "messages": {"messages": []},
        "logprobs": {"logprobs": True},
        "n": {"n": 0},
    }
    for param, change in cases.items():
        body = {"model": "cuma-quick", "messages": QUESTION, "profile": NORWAY, **change}
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body)
        assert response.status_code == 400, param
        assert response.json()["error"]["param"].startswith(param), response.json()


def test_too_long_prompt_is_a_context_error(client: openai.OpenAI, engine: Engine) -> None:
    long_question = [{"role": "user", "content": "Norway " * engine.context_length}]
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, messages=long_question)
    assert caught.value.code == "context_length_exceeded"
    assert str(engine.context_length) in caught.value.message


def test_max_tokens_over_the_limit(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, max_tokens=33)
    assert caught.value.param == "max_tokens"
    assert "32" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, n=5)
    assert caught.value.param == "n"


def test_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="cuma-quick"):
        chat(client, model="gpt-4o")


def test_bare_base_model_needs_no_profile_and_refuses_one() -> None:
    engine = Engine(tiny_model("llama"), tiny_tokenizer(), name="tiny-llama")
    config = ServeConfig(port=0, max_tokens=8)
    with ServerThread(build_app(engine, config), config) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
        response = client.chat.completions.create(model="tiny-llama", messages=QUESTION, max_tokens=4)
        assert response.choices[0].message.content is not None
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="tiny-llama", messages=QUESTION, max_tokens=4, extra_body={"profile": NORWAY}
            )
        assert caught.value.param == "profile"
        assert httpx.get(f"{running.url}/v1/profile_fields").json()["reads_profiles"] is False
