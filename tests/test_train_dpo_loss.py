"""DPO losses against hand-computed formulas, their gradient direction, and the log-prob helpers."""

import math
from typing import get_args

import pytest
import torch
from trl.trainer.utils import selective_log_softmax

from cuma.config import DPOConfig, DPOLoss
from cuma.train.dpo_loss import dpo_loss, sequence_logps, token_logps

# Two pairs: log-probs of chosen/rejected responses under the policy and the reference.
POLICY_CHOSEN = [-4.0, -7.0]
POLICY_REJECTED = [-6.0, -5.0]
REF_CHOSEN = [-5.0, -6.5]
REF_REJECTED = [-5.5, -6.0]
TOKENS_CHOSEN = [2, 4]
TOKENS_REJECTED = [3, 1]


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def inputs(requires_grad=False):
    tensors = [torch.tensor(v, requires_grad=requires_grad) for v in (POLICY_CHOSEN, POLICY_REJECTED)]
    return [*tensors, torch.tensor(REF_CHOSEN), torch.tensor(REF_REJECTED)]


def run(config, requires_grad=False):
    tensors = inputs(requires_grad)
    counts = dict(chosen_tokens=torch.tensor(TOKENS_CHOSEN), rejected_tokens=torch.tensor(TOKENS_REJECTED))
    return tensors, dpo_loss(*tensors, config, **counts)


def log_ratios(i):
    return POLICY_CHOSEN[i] - REF_CHOSEN[i], POLICY_REJECTED[i] - REF_REJECTED[i]


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_sigmoid_loss_with_label_smoothing(eps):
    beta = 0.5
    _, out = run(DPOConfig(beta=beta, label_smoothing=eps))
    for i in range(2):
        chosen, rejected = log_ratios(i)
        delta = beta * (chosen - rejected)
        expected = -(1 - eps) * log_sigmoid(delta) - eps * log_sigmoid(-delta)
        assert out.losses[i].item() == pytest.approx(expected, rel=1e-6)


def test_ipo_loss_is_length_normalised_and_needs_token_counts():
    beta = 0.25
    _, out = run(DPOConfig(beta=beta, loss_type="ipo"))
    for i in range(2):
        chosen, rejected = log_ratios(i)
        expected = (chosen / TOKENS_CHOSEN[i] - rejected / TOKENS_REJECTED[i] - 1 / (2 * beta)) ** 2
        assert out.losses[i].item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="ipo loss needs chosen_tokens and rejected_tokens"):
        dpo_loss(*inputs(), DPOConfig(loss_type="ipo"))


def test_hinge_loss():
    beta = 1.0
    _, out = run(DPOConfig(beta=beta, loss_type="hinge"))
    expected = [max(0.0, 1 - beta * (c - r)) for c, r in map(log_ratios, range(2))]
    assert out.losses.tolist() == pytest.approx(expected)
    assert out.losses[0].item() == 0.0  # past the margin: beta * delta = 1.5 > 1


def test_rewards_accuracies_and_margins():
    beta = 0.1
    _, out = run(DPOConfig(beta=beta))
    chosen = [beta * log_ratios(i)[0] for i in range(2)]
    rejected = [beta * log_ratios(i)[1] for i in range(2)]
    assert out.chosen_rewards.tolist() == pytest.approx(chosen)
    assert out.rejected_rewards.tolist() == pytest.approx(rejected)
    assert out.accuracies.tolist() == [1.0, 0.0]
    assert out.margins.tolist() == pytest.approx([c - r for c, r in zip(chosen, rejected, strict=True)])
    assert not out.chosen_rewards.requires_grad
    metrics = run(DPOConfig(beta=beta), requires_grad=True)[1].metrics()
    assert metrics["rewards/accuracies"] == 0.5
    assert metrics["loss"] == pytest.approx(out.losses.mean().item())


@pytest.mark.parametrize("loss_type", get_args(DPOLoss))
def test_lowering_the_rejected_log_prob_lowers_the_loss(loss_type):
    config = DPOConfig(beta=0.1, loss_type=loss_type)  # every pair inside the hinge margin
    (chosen, rejected, *_), out = run(config, requires_grad=True)
    out.losses.sum().backward()
    assert (rejected.grad > 0).all() and (chosen.grad < 0).all()
    lower = inputs()
    lower[1] = lower[1] - 1.0
    counts = dict(chosen_tokens=torch.tensor(TOKENS_CHOSEN), rejected_tokens=torch.tensor(TOKENS_REJECTED))
    assert (dpo_loss(*lower, config, **counts).losses < out.losses.detach()).all()


def test_bad_settings_and_shapes_are_errors():
    with pytest.raises(ValueError, match=r"loss_type=.*expected"):
        DPOConfig(loss_type="kto")
    with pytest.raises(ValueError, match=r"beta=0\.0: must be a positive"):
        DPOConfig(beta=0.0)
    with pytest.raises(ValueError, match=r"label_smoothing=0.5: must be in \[0, 0.5\)"):
        DPOConfig(label_smoothing=0.5)
    with pytest.raises(ValueError, match="applies to the sigmoid loss only"):
        DPOConfig(loss_type="hinge", label_smoothing=0.1)
    a, b, c, _ = inputs()
    with pytest.raises(ValueError, match="four tensors of one shape"):
        dpo_loss(a, b, c, torch.zeros(3))


def labelled_batch(dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=generator).to(dtype)
    labels = torch.randint(0, 11, (3, 6), generator=generator)
    labels[0, :3] = -100  # prompt tokens
    labels[1, :] = -100  # nothing labelled
    labels[2, 5] = -100  # right padding
    return logits, labels


def test_token_logps_match_a_full_log_softmax_and_trl():
    logits, labels = labelled_batch()
    values, mask = token_logps(logits, labels)
    shift = labels[:, 1:]
    full = logits[:, :-1].log_softmax(-1).gather(-1, shift.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    assert torch.equal(mask, shift != -100)
    assert torch.allclose(values, full * mask, atol=1e-6)
    trl = selective_log_softmax(logits[:, :-1], shift.clamp(min=0)) * mask
    assert torch.allclose(values, trl, atol=1e-6)


def test_sequence_logps_sums_labelled_tokens_in_float32_with_gradients():
    logits, labels = labelled_batch(torch.bfloat16)
    logits.requires_grad_(True)
    sums, counts = sequence_logps(logits, labels)
    assert sums.dtype == torch.float32 and counts.tolist() == [3, 0, 4]
    full = logits.float()[:, :-1].log_softmax(-1)
    shift = labels[:, 1:]
    expected = [
        sum(full[i, t, shift[i, t]].item() for t in range(5) if shift[i, t] != -100) for i in range(3)
    ]
    assert sums.tolist() == pytest.approx(expected, abs=1e-4)
    assert sums[1].item() == 0.0
    sums.sum().backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
    with pytest.raises(ValueError, match="do not line up with labels"):
        sequence_logps(logits[:, :-1], labels)
