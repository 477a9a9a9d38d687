"""Engines from saved folders (a CuMA adapter with its encoder, a plain PEFT LoRA, a bare base model)
and the ``cuma serve`` command line."""

import argparse
from pathlib import Path

import openai
import pytest
import torch
from peft import LoraConfig, get_peft_model

from cuma import CuMAConfig, DemographicEncoder, get_cuma_model
from cuma.quick import RandomProfileEncoder
from cuma.serve import Engine, ServeConfig, ServerThread, build_app
from cuma.serve.cli import CLIENT_EXAMPLE, configure, main
from cuma.serve.jobs import GenerationJob, Sampling
from cuma.tiny import tiny_model, tiny_tokenizer

QUESTION = [{"role": "user", "content": "How important is religion in your life?"}]
PROFILE = {"country": "Norway", "age": "45"}


@pytest.fixture(scope="module")
def encoder() -> DemographicEncoder:
    return DemographicEncoder()  # the packaged all-MiniLM-L6-v2, offline


def randomize(model: torch.nn.Module) -> None:
    # A fresh adapter is a no-op (LoRA B starts at zero); random weights make the profile matter.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))


def greedy(engine: Engine, profile: dict | None) -> str:
    job = GenerationJob(engine.chat_prompt(QUESTION), engine.profile_text(profile), Sampling(0.0), 12)
    return engine.generate([job])[0][0].text


def test_cuma_adapter_folder_serves_as_the_model_it_was_saved_from(
    tmp_path: Path, encoder: DemographicEncoder
) -> None:
    model = get_cuma_model(tiny_model("llama"), CuMAConfig.from_preset("cuma", **encoder.adapter_settings()))
    randomize(model)
    model.save_pretrained(str(tmp_path / "my-adapter"))
    original = Engine(model.eval(), tiny_tokenizer(), encoder, encoder.template, name="my-adapter")

    loaded = Engine.from_adapter_dir(tmp_path / "my-adapter")  # base: the folder's tiny-llama
    assert loaded.name == "my-adapter" and loaded.reads_profiles
    assert greedy(loaded, PROFILE) == greedy(original, PROFILE)
    assert greedy(loaded, PROFILE) != greedy(loaded, {"country": "Chile", "age": "20"})

    config = ServeConfig(port=0, max_tokens=12)
    with ServerThread(build_app(loaded, config), config) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(
            model="my-adapter",
            messages=QUESTION,
            max_tokens=12,
            temperature=0,
            extra_body={"profile": PROFILE},
        )
        assert answer.choices[0].message.content == greedy(original, PROFILE)


def test_plain_lora_folder_and_bare_base_read_no_profile(tmp_path: Path) -> None:
    lora = get_peft_model(tiny_model("llama"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(str(tmp_path / "lora"), save_embedding_layers=False)  # no hub look-up
    engine = Engine.from_adapter_dir(tmp_path / "lora", base="tiny-llama", name="plain")
    assert engine.name == "plain" and not engine.reads_profiles
    assert greedy(engine, None) == greedy(Engine.from_base("tiny-llama"), None)  # LoRA B is zero


def test_a_missing_folder_or_a_wrong_or_missing_encoder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        Engine.from_adapter_dir(tmp_path)
    with pytest.raises(ValueError, match=r"size \[384\], its encoder gives 32"):
        Engine(
            get_cuma_model(tiny_model("llama"), CuMAConfig.from_preset("cuma")),
            tiny_tokenizer(),
            RandomProfileEncoder(),
        )
    with pytest.raises(ValueError, match="give the Engine its encoder"):
        Engine(
            get_cuma_model(tiny_model("llama"), CuMAConfig.from_preset("cuma", demographic_input_dim=32)),
            tiny_tokenizer(),
        )


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(prog="cuma serve")
    configure(command)
    return command


def test_help_shows_the_three_line_client() -> None:
    text = parser().format_help()
    assert CLIENT_EXAMPLE.splitlines()[0] in text
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index("from openai import OpenAI")
    assert lines[start + 1].startswith("client = OpenAI(base_url=")
    assert (
        lines[start + 2].startswith("print(client.chat.completions.create(") and "profile" in lines[start + 2]
    )


def test_serve_needs_a_model() -> None:
    with pytest.raises(SystemExit, match="adapter folder, or --base"):
        main(parser().parse_args([]))
    with pytest.raises(SystemExit, match="--quick"):
        main(parser().parse_args(["--quick", "--base", "tiny-llama"]))
    with pytest.raises(SystemExit, match="max_batch_size"):
        main(parser().parse_args(["--quick", "--max-batch-size", "0"]))
