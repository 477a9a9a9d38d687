"""A preference comparison's data: a chat dataset (PRISM, Community Alignment) split by annotator and
sampled, as `cuma.data.experiment` does for surveys.

One seeded assignment of annotators to train / valid / test serves the SFT rows, the DPO pairs and the
choice sets (`cuma.data.chat.ChatData.split`), so no annotator is trained on and scored. ``data.n_train``
caps the training rows (SFT rows, DPO pairs and GRPO prompts alike) and ``data.n_test`` the scored
prompts and choice sets, each a seeded sample.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, TypeVar

from cuma.config import DataConfig
from cuma.data.chat import ChatData
from cuma.data.embeddings import attach_embeddings
from cuma.data.errors import DataError

CHAT_DATASETS = ("prism", "community-alignment")
"""Values of ``data.dataset`` that make ``cuma compare`` a preference comparison."""

T = TypeVar("T")


@dataclass(frozen=True)
class ChatComparisonData:
    """The splits of one chat dataset, per kind of row.

    Attributes:
        name: the dataset.
        sft: split -> `ChatExample` rows (GRPO's prompts and the win-rate prompts are these too).
        dpo: split -> `PreferencePair` rows.
        choice: split -> choice sets (`SurveyExample`; Community Alignment only).
        source: where the rows were read from.
    """

    name: str
    sft: dict[str, list[Any]]
    dpo: dict[str, list[Any]]
    choice: dict[str, list[Any]]
    source: str

    def sizes(self) -> dict[str, dict[str, int]]:
        return {kind: {split: len(rows) for split, rows in getattr(self, kind).items()} for kind in KINDS}

    def with_embeddings(self, encoder: Any) -> ChatComparisonData:
        """Copies of every row carrying its profile's encoder vector."""
        return dataclasses.replace(
            self,
            **{
                kind: {split: attach_embeddings(rows, encoder) for split, rows in getattr(self, kind).items()}
                for kind in KINDS
            },
        )


KINDS = ("sft", "dpo", "choice")


def prepare_chat_data(config: DataConfig) -> ChatComparisonData:
    """Load ``config.dataset`` from ``config.path`` (None: the Hugging Face hub), split it by annotator
    with ``config.valid_fraction`` / ``test_fraction`` and ``seed``, and sample ``n_train`` / ``n_test``."""
    from cuma.data.registry import load

    if config.dataset not in CHAT_DATASETS:
        raise ValueError(
            f"data.dataset={config.dataset!r} is not a chat dataset ({', '.join(CHAT_DATASETS)})"
        )
    data = load(config.dataset, config.path, persona=config.persona_in_prompt)
    if not isinstance(data, ChatData):
        raise TypeError(f"data.dataset={config.dataset!r} loaded as {type(data).__name__}, not chat data")
    train_share = 1 - config.valid_fraction - config.test_fraction
    parts = data.split(
        "annotator", fractions=(train_share, config.valid_fraction, config.test_fraction), seed=config.seed
    )
    scored = config.score_split
    source = data.summary.source if data.summary else config.dataset
    out: dict[str, dict[str, list[Any]]] = {}
    for kind, split in parts.items():
        rows = {"train": split["train"], "valid": split["valid"], "test": split["test"]}
        out[kind] = {
            "train": _sample(rows["train"], config.n_train, config.seed),
            # The scored split is `data.score_split`'s respondents, under the name the report uses.
            "test": _sample(rows[scored], config.n_test, config.seed),
        }
    if not out["sft"]["train"]:
        raise DataError(f"no training rows in {config.dataset} after the annotator split", source=source)
    return ChatComparisonData(config.dataset, out["sft"], out["dpo"], out["choice"], source)


def _sample(rows: list[T], n: int | None, seed: int) -> list[T]:
    if n is None or n >= len(rows):
        return list(rows)
    return random.Random(seed).sample(rows, n)
