"""Base-model loading: the SmolLM2 alias and its cache, tiny aliases, local directories, errors."""

from pathlib import Path

import pytest
import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from cuma import models
from cuma.hub import resolve_model_source
from cuma.models import ALIASES, SMOLLM2, cache_root, ensure_pad_token, load_base_model
from cuma.tiny import tiny_model, tiny_tokenizer

PROMPT = [{"role": "user", "content": "Should the government spend more on education?"}]


def chat_inputs(tokenizer: PreTrainedTokenizerBase) -> BatchEncoding:
    return tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


@pytest.mark.slow
def test_smollm2_cached_copy_matches_gguf(smollm2_gguf: PreTrainedModel, cuma_cache_dir: Path) -> None:
    model, tokenizer = load_base_model(SMOLLM2)
    assert not model.training
    assert model.config.name_or_path == SMOLLM2
    assert getattr(model.config, "quantization_config", None) is None
    assert tokenizer.pad_token is not None and tokenizer.chat_template
    inputs = chat_inputs(tokenizer)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, smollm2_gguf(**inputs).logits)
    files = sorted(p.name for p in cuma_cache_dir.rglob("*") if p.is_file())
    assert "model.safetensors" in files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pkl"))]
    assert not [p for p in cuma_cache_dir.rglob(".*") if p.is_dir()], "staging directory left behind"


@pytest.mark.slow
def test_smollm2_second_load_reads_the_cache(
    smollm2_gguf: PreTrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_gguf() -> None:
        raise AssertionError("the GGUF file was read again")

    monkeypatch.setattr(models, "load_smollm2_gguf", no_gguf)
    model, _ = load_base_model(SMOLLM2, dtype="bfloat16")
    assert model.dtype == torch.bfloat16


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CUMA_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("CUMA_CACHE_DIR")
    assert cache_root() == tmp_path / "xdg" / "cuma"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "cuma"


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-qwen3"])
def test_tiny_aliases(alias: str) -> None:
    model, tokenizer = load_base_model(alias, dtype=torch.float64)
    assert not model.training and model.dtype == torch.float64
    assert model.config.name_or_path == alias
    assert model.config.model_type == alias.removeprefix("tiny-")
    logits = model(**chat_inputs(tokenizer)).logits
    assert logits.shape[-1] == model.config.vocab_size


def test_local_directory(tmp_path: Path) -> None:
    reference = tiny_model("qwen3")
    reference.save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    model, tokenizer = load_base_model(tmp_path)
    assert model.config.name_or_path == str(tmp_path)
    inputs = chat_inputs(tokenizer)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reference(**inputs).logits)


def test_pad_token_prefers_a_dedicated_token_then_eos() -> None:
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == "<pad>"
    tokenizer = tiny_tokenizer()
    tokenizer.add_special_tokens({"pad_token": "<|im_end|>"})
    ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == "<|im_end|>", "an existing pad token is kept"


def test_pad_token_falls_back_to_eos(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    monkeypatch.setattr(models, "PAD_TOKENS", ("<no-such-pad>",))
    ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == tokenizer.eos_token


def test_unknown_names_and_bad_dtypes_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="base model 'gpt-17' is neither") as info:
        load_base_model("gpt-17")
    assert all(alias in str(info.value) for alias in ALIASES)
    with pytest.raises(FileNotFoundError, match="not-there' is neither an existing model directory"):
        load_base_model(tmp_path / "not-there")
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=r"weights\.safetensors' is a file"):
        load_base_model(tmp_path / "weights.safetensors")
    with pytest.raises(OSError, match="cannot load base model"):
        load_base_model(tmp_path)
    with pytest.raises(ValueError, match="dtype='float37'"):
        load_base_model("tiny-llama", dtype="float37")


def test_model_sources_are_directories_or_hub_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models" / "mine").mkdir(parents=True)
    assert resolve_model_source("~/models/mine", "base model") == str(tmp_path / "models" / "mine")
    assert resolve_model_source("HuggingFaceTB/SmolLM2-135M", "base model") == "HuggingFaceTB/SmolLM2-135M"
    for local_looking in ("./models/mine-typo", "~/missing", "a/b/c", "plain-name"):
        with pytest.raises(FileNotFoundError, match="base model"):
            resolve_model_source(local_looking, "base model")
