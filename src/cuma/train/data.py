"""Deterministic data order: a seeded per-epoch permutation that a resumed run can replay exactly, with
examples of similar length batched together."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

GROUP_WINDOW = 256
"""Examples per length-sorted window of `LengthGroupedSampler` (transformers sorts 50 batches' worth)."""


class EpochSampler(Sampler[int]):
    """Shuffles with a generator seeded by ``(seed, epoch)``, so epoch e's order never depends on what
    ran before it, and never touches the global RNG (whose state belongs to dropout)."""

    def __init__(self, num_examples: int, seed: int) -> None:
        self.num_examples = num_examples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_examples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_examples


class LengthGroupedSampler(EpochSampler):
    """`EpochSampler`'s permutation sorted by length, longest first, within consecutive windows of
    ``window`` examples: a batch holds similar lengths (little padding) and the order stays shuffled
    at the window's scale.

    Unlike transformers' ``LengthGroupedSampler``, whose groups are a multiple of the batch size and
    whose longest example moves to the front, the order depends on ``(seed, epoch, lengths)`` alone:
    batch 4 and batch 2 with 2 accumulation steps see the same examples in the same optimizer steps,
    and equal lengths give `EpochSampler`'s order (the sort is stable).
    """

    def __init__(self, lengths: Sequence[int], seed: int, window: int = GROUP_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        super().__init__(len(lengths), seed)
        self.lengths = list(lengths)
        self.window = window

    def __iter__(self) -> Iterator[int]:
        order = list(super().__iter__())
        grouped: list[int] = []
        for start in range(0, len(order), self.window):
            grouped += sorted(order[start : start + self.window], key=lambda i: -self.lengths[i])
        return iter(grouped)


def example_lengths(dataset: Sequence[Any], collate_fn: Callable[[list[Any]], dict[str, Any]]) -> list[int]:
    """Tokens each example costs: the attended tokens of its batch of one, summed over every
    ``*attention_mask`` the collator returns (a preference pair's chosen and rejected rows); 0 for a
    collator without one, whose examples then keep `EpochSampler`'s order."""
    lengths = []
    for item in tqdm(dataset, desc="measuring lengths", leave=False):
        batch = collate_fn([item])
        masks = [value for key, value in batch.items() if key.endswith("attention_mask")]
        lengths.append(int(sum(mask.sum() for mask in masks)))
    return lengths


ID_KEYS = ("respondent_id", "question_id")


@dataclass
class WithIds:
    """Adds the examples' respondent and question ids to each batch (when the collator does not), so an
    error such as a NaN loss can name the rows that caused it."""

    collate_fn: Callable[[list[Any]], dict[str, Any]]

    def __call__(self, examples: list[Any]) -> dict[str, Any]:
        batch = self.collate_fn(examples)
        for key in ID_KEYS:
            if key not in batch and all(hasattr(ex, key) for ex in examples):
                batch[key] = [getattr(ex, key) for ex in examples]
        return batch


@dataclass(frozen=True)
class WithExtras(Sequence):
    """A dataset whose item ``i`` carries ``extras[i]`` (tensors computed once before training, such as
    precomputed reference log-probs); `ExtrasCollate` puts them into the batch."""

    dataset: Sequence[Any]
    extras: Sequence[dict[str, torch.Tensor]]

    def __post_init__(self) -> None:
        if len(self.dataset) != len(self.extras):
            raise ValueError(f"{len(self.extras)} extras for {len(self.dataset)} examples")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, torch.Tensor]]:
        return self.dataset[index], self.extras[index]


@dataclass
class ExtrasCollate:
    """Collates `WithExtras` items: the examples by ``collate_fn``, each extra stacked into a tensor."""

    collate_fn: Callable[[list[Any]], dict[str, Any]]

    def __call__(self, items: list[tuple[Any, dict[str, torch.Tensor]]]) -> dict[str, Any]:
        examples = [example for example, _ in items]
        batch = WithIds(self.collate_fn)(examples)
        for key in items[0][1]:
            batch[key] = torch.stack([extras[key] for _, extras in items])
        return batch


def make_loader(
    dataset: Sequence[Any],
    collate_fn: Callable[[list[Any]], dict[str, Any]],
    batch_size: int,
    seed: int,
    lengths: Sequence[int] | None = None,
) -> tuple[DataLoader, EpochSampler]:
    """A loader over ``dataset`` in a `LengthGroupedSampler`'s order (``lengths``: each example's tokens,
    by default `example_lengths`); its own generator keeps the global RNG untouched (a plain DataLoader
    draws a base seed from it at every ``iter``)."""
    if lengths is None:
        lengths = example_lengths(dataset, collate_fn)
    if len(lengths) != len(dataset):
        raise ValueError(f"{len(lengths)} lengths for {len(dataset)} examples")
    sampler = LengthGroupedSampler(lengths, seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=WithIds(collate_fn),
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler
