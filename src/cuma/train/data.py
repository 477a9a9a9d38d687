"""Deterministic data order: a seeded per-epoch permutation that a resumed run can replay exactly."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


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
    dataset: Sequence[Any], collate_fn: Callable[[list[Any]], dict[str, Any]], batch_size: int, seed: int
) -> tuple[DataLoader, EpochSampler]:
    """A loader over ``dataset`` in the sampler's order; its own generator keeps the global RNG untouched
    (a plain DataLoader draws a base seed from it at every ``iter``)."""
    sampler = EpochSampler(len(dataset), seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=WithIds(collate_fn),
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler
