"""Attach precomputed demographic-encoder vectors to examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar

T = TypeVar("T")


def attach_embeddings(examples: Sequence[T], encoder: Any) -> list[T]:
    """Copies of ``examples`` whose ``embedding`` is the encoder's vector for their ``profile_text``.

    Each distinct profile text is encoded once, in one ``encoder.encode`` call (see
    `cuma.encoder.DemographicEncoder`), so rows of one person share one vector and the collators
    can stack them into ``demographic_embeds``.
    """
    texts = list(dict.fromkeys(ex.profile_text for ex in examples))
    if not texts:
        return []
    vectors = encoder.encode(texts).detach().float().cpu()
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(f"encoder returned shape {tuple(vectors.shape)} for {len(texts)} profile texts")
    row = {text: i for i, text in enumerate(texts)}
    return [replace(ex, embedding=vectors[row[ex.profile_text]]) for ex in examples]
