"""Length-grouped training order: similar lengths share a batch, the order is seeded, independent of the
batch size, and a resumed run with mixed lengths still ends bit-identical."""

from __future__ import annotations

import pytest
import torch
from accelerate.state import AcceleratorState

from cuma.train import list_checkpoints, train
from cuma.train.data import EpochSampler, LengthGroupedSampler, example_lengths, make_loader
from test_train_resume import Killed, kill_at
from train_toys import ENCODER_DIM, toy_config, toy_method, weights

LENGTHS = [int(n) for n in torch.randint(3, 40, (100,), generator=torch.Generator().manual_seed(1))]


def padded_tokens(order, lengths, batch_size):
    """Tokens a loader in ``order`` computes, padding each batch to its longest row."""
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_each_window_is_the_seeded_permutation_sorted_longest_first():
    sampler = LengthGroupedSampler(LENGTHS, seed=3, window=32)
    order, shuffled = list(sampler), list(EpochSampler(len(LENGTHS), seed=3))
    assert sorted(order) == list(range(len(LENGTHS)))
    for start in range(0, len(order), 32):
        window = order[start : start + 32]
        assert set(window) == set(shuffled[start : start + 32])
        assert [LENGTHS[i] for i in window] == sorted((LENGTHS[i] for i in window), reverse=True)


def test_grouping_cuts_padding():
    grouped = list(LengthGroupedSampler(LENGTHS, seed=0, window=64))
    shuffled = list(EpochSampler(len(LENGTHS), seed=0))
    assert padded_tokens(grouped, LENGTHS, 8) < 0.85 * padded_tokens(shuffled, LENGTHS, 8)


def test_the_order_is_seeded_per_epoch_and_replayable():
    sampler = LengthGroupedSampler(LENGTHS, seed=5)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    again = LengthGroupedSampler(LENGTHS, seed=5)
    again.set_epoch(1)
    assert second == list(again) and first != second
    assert list(LengthGroupedSampler(LENGTHS, seed=6)) != first


def test_equal_lengths_keep_the_plain_shuffle():
    assert list(LengthGroupedSampler([7] * 30, seed=42)) == list(EpochSampler(30, seed=42))


def rows_of_lengths(lengths):
    g = torch.Generator().manual_seed(0)
    rows = []
    for i, n in enumerate(lengths):
        ids = torch.randint(5, 500, (n,), generator=g)
        labels = torch.full((n,), -100)
        labels[-1] = ids[-1]
        embed = torch.randn(ENCODER_DIM, generator=g)
        rows.append({"input_ids": ids, "labels": labels, "embed": embed, "respondent_id": f"r{i}"})
    return rows


def pad_collate(rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = r["input_ids"], r["labels"], 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "demographic_embeds": torch.stack([r["embed"] for r in rows]),
        "respondent_id": [r["respondent_id"] for r in rows],
    }


def run_padded(config, output_dir, rows, **kwargs):
    """`train_toys.run` over rows of mixed lengths."""
    AcceleratorState._reset_state(reset_partial_state=True)
    prepared = toy_method("cuma", config)
    return prepared, train(prepared, rows, pad_collate, config.train, output_dir, **kwargs)


def test_lengths_come_from_the_collators_attention_masks():
    rows = rows_of_lengths([4, 9, 2])
    assert example_lengths(rows, pad_collate) == [4, 9, 2]
    masks = {"chosen_attention_mask": torch.ones(1, 3), "rejected_attention_mask": torch.ones(1, 5)}
    assert example_lengths(rows, lambda batch: masks) == [8, 8, 8]


def test_the_loader_batches_similar_lengths_whatever_the_batch_size():
    rows = rows_of_lengths(LENGTHS)
    seen = {}
    for batch_size in (2, 4):
        loader, _ = make_loader(rows, pad_collate, batch_size, seed=0)
        batches = list(loader)
        seen[batch_size] = [rid for batch in batches for rid in batch["respondent_id"]]
        widths = [batch["attention_mask"].shape[1] for batch in batches]
        assert sum(widths) * batch_size < 0.9 * padded_tokens(list(EpochSampler(100, 0)), LENGTHS, batch_size)
    assert seen[2] == seen[4]


def test_lengths_that_do_not_match_the_dataset_are_an_error():
    with pytest.raises(ValueError, match="2 lengths for 3 examples"):
        make_loader(rows_of_lengths([1, 2, 3]), pad_collate, 2, seed=0, lengths=[1, 2])


def test_a_resumed_run_over_mixed_lengths_is_bit_identical(tmp_path):
    rows = rows_of_lengths([3 + (7 * i) % 11 for i in range(10)])
    config = toy_config({"cuma": {"dropout": 0.2}}, save_every=2)
    reference, full = run_padded(config, tmp_path / "full", rows)
    with pytest.raises(Killed):
        run_padded(config, tmp_path / "resumed", rows, on_step=kill_at(3))
    assert list_checkpoints(tmp_path / "resumed" / "checkpoints")[-1].name.endswith("00000002")
    resumed, rest = run_padded(config, tmp_path / "resumed", rows, resume=True)
    assert [h["loss"] for h in rest.history] == [h["loss"] for h in full.history[2:]]
    expected, got = weights(reference), weights(resumed)
    assert all(torch.equal(expected[name], got[name]) for name in expected)
