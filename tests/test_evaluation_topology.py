"""Routing topology from a fake recorder whose routing weights are known exactly, and from a CuMA method."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cuma.data.render import render_prompt
from cuma.evaluation.scoring import score_examples
from cuma.evaluation.topology import (
    RoutingCollector,
    RoutingTrace,
    expert_usage,
    group_projection,
    usage_matrix,
)
from cuma.tiny import tiny_model, tiny_tokenizer
from test_evaluation_scoring import make_examples, randomised

N_EXPERTS = 4


class FakeRouted(nn.Module):
    """A tiny LM whose "router" sends the token at real position p wholly to expert ``p % 4`` (layer a)
    or ``(p + 1) % 4`` (layer b), recorded like ``CuMAModel.record_routing``: for the call's input
    tokens, which a call on a cached prompt prefix has fewer of than its attention mask has columns."""

    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_model()
        self._recorder = None

    def forward(self, input_ids, attention_mask=None, **kwargs):
        if self._recorder is not None:
            position = (attention_mask.cumsum(dim=1) - 1)[:, -input_ids.shape[1] :]
            self._recorder.weights = {
                "layers.0.a": nn.functional.one_hot(position % N_EXPERTS, N_EXPERTS).float(),
                "layers.1.b": nn.functional.one_hot((position + 1) % N_EXPERTS, N_EXPERTS).float(),
            }
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    @contextmanager
    def record_routing(self):
        self._recorder = SimpleNamespace(weights={})
        try:
            yield self._recorder
        finally:
            self._recorder = None


@pytest.mark.parametrize("side", ["left", "right"])
def test_collector_reads_the_answer_position_of_each_row(side):
    tokenizer = tiny_tokenizer()
    examples = make_examples()
    collector = RoutingCollector("answer")
    score_examples(FakeRouted(), tokenizer, examples, batch_size=3, padding_side=side, routing=collector)
    vectors = collector.vectors()
    last = torch.tensor([len(render_prompt(tokenizer, ex.prompt_messages)) - 1 for ex in examples])
    assert len(set((last % N_EXPERTS).tolist())) > 1  # rows really route differently
    np.testing.assert_array_equal(vectors["layers.0.a"], nn.functional.one_hot(last % 4, 4).numpy())
    np.testing.assert_array_equal(vectors["layers.1.b"], nn.functional.one_hot((last + 1) % 4, 4).numpy())


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_routed_method_records_the_routing_of_each_rows_answer_position(side):
    tokenizer, prepared = tiny_tokenizer(), randomised("cuma")
    examples = make_examples()
    collector = RoutingCollector("answer")
    score_examples(
        prepared, tokenizer, examples, use_embeddings=True, batch_size=3, padding_side=side, routing=collector
    )
    vectors = collector.vectors()
    for row, ex in enumerate(examples):
        ids = torch.tensor([render_prompt(tokenizer, ex.prompt_messages)])
        with torch.no_grad(), prepared.record_routing() as alone:
            prepared(ids, torch.ones_like(ids), demographic_embeds=ex.embedding[None])
        assert alone.weights.keys() == vectors.keys()
        for layer, weights in alone.weights.items():
            np.testing.assert_allclose(vectors[layer][row], weights[0, -1].numpy(), atol=1e-5)


def test_prompt_scope_averages_only_real_tokens():
    weights = torch.zeros(2, 3, 2)
    weights[0, :, 0] = 1  # row 0 uses expert 0 everywhere, including its pad column
    weights[1, 0, 1] = weights[1, 1, 0] = weights[1, 2, 0] = 1
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    collector = RoutingCollector("prompt")
    collector.add([1, 0], {"l": weights}, mask, torch.tensor([2, 2]))
    np.testing.assert_allclose(collector.vectors()["l"], [[2 / 3, 1 / 3], [1.0, 0.0]])  # ordered by row id


def test_usage_and_projection_from_known_vectors():
    vectors = {
        "l0": np.array([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0], [0.2, 0.8], [0.5, 0.5]]),
        "l1": np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.5]]),
    }
    groups = pd.DataFrame({"country": ["NO", "NO", "US", "US", None], "sex": ["f", "m", "f", "m", "f"]})
    usage = expert_usage(vectors, groups)
    no = usage[(usage["field"] == "country") & (usage["group"] == "NO") & (usage["layer"] == "l0")]
    np.testing.assert_allclose(no.sort_values("expert")["weight"], [0.9, 0.1])
    assert set(no["n"]) == {2}  # the respondent with a missing country is not in any country group
    averaged = usage_matrix(usage)
    np.testing.assert_allclose(averaged.loc["country=US"], [(0.1 + 1.0) / 2, (0.9 + 0.0) / 2])
    np.testing.assert_allclose(usage_matrix(usage, "l1").loc["sex=f"], [0.5, 0.5])
    projection = group_projection(vectors, groups).set_index("group")
    # The two countries route oppositely, so they sit farthest apart along the first component.
    assert abs(projection.loc["NO", "pc1"] - projection.loc["US", "pc1"]) == pytest.approx(
        projection["pc1"].max() - projection["pc1"].min()
    )
    assert projection.attrs["explained"][0] > 0.9


def test_mismatched_shapes_are_errors():
    collector = RoutingCollector()
    with pytest.raises(ValueError, match="captured no layers"):
        collector.add([0], {}, torch.ones(1, 3), torch.tensor([2]))
    with pytest.raises(ValueError, match=r"shape \(1, 2, 4\)"):
        collector.add([0], {"l": torch.zeros(1, 2, 4)}, torch.ones(1, 3), torch.tensor([2]))
    with pytest.raises(ValueError, match="token scope"):
        RoutingCollector("everything")
    with pytest.raises(ValueError, match="3 routing rows but there are 2 group rows"):
        expert_usage({"l": np.zeros((3, 2))}, pd.DataFrame({"sex": ["f", "m"]}))


def test_trace_joins_each_split_in_order_with_its_groups():
    collectors = {}
    for split, rows in (("test", [[1.0, 0.0], [0.0, 1.0]]), ("heldout", [[0.5, 0.5]])):
        weights = torch.tensor(rows)[:, None, :]  # one token per row
        n = len(rows)
        collectors[split] = RoutingCollector("answer")
        collectors[split].add(
            list(range(n)), {"l": weights}, torch.ones(n, 1), torch.zeros(n, dtype=torch.long)
        )
    predictions = {
        "test": pd.DataFrame({"sex": ["f", "m"], "age": [30, 40]}),
        "heldout": pd.DataFrame({"sex": ["f"], "age": [50]}),
    }
    trace = RoutingTrace.from_collectors(collectors, predictions, ["sex"], {"test": "random test"})
    np.testing.assert_array_equal(trace.vectors["l"], [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert trace.groups.to_dict("list") == {
        "sex": ["f", "m", "f"],
        "split": ["random test"] * 2 + ["heldout"],
    }
    with pytest.raises(ValueError, match="split 'heldout': layer 'l' has 1 routing rows for 2 predictions"):
        RoutingTrace.from_collectors(collectors, {**predictions, "heldout": predictions["test"]}, ["sex"])
