"""Shared fixtures: keep every test off the user's cache, and build the SmolLM2 alias once per session."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cuma import models


@pytest.fixture(scope="session", autouse=True)
def cuma_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session-wide CUMA_CACHE_DIR, so tests neither read nor write the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("cuma-cache")
        patch.setenv("CUMA_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def smollm2_gguf(cuma_cache_dir: Path) -> PreTrainedModel:
    """Builds the `smollm2-135m-instruct` cache once; returns the GGUF-loaded model it was built from.

    Later `load_base_model("smollm2-135m-instruct")` calls in the session read the cache in about a second.
    """
    original, captured = models.load_smollm2_gguf, []

    def capture() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        model, tokenizer = original()
        captured.append(model)
        return model, tokenizer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "load_smollm2_gguf", capture)
        models.load_base_model(models.SMOLLM2)
    return captured[0] if captured else original()[0]
