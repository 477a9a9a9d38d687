"""GRPO: advantages with failed and equal rewards, token aggregations, clipping, KL, expansion per prompt."""

import math

import pytest
import torch
from trl.trainer.utils import nanstd

from cuma.config import GRPOConfig
from cuma.train.grpo_loss import expand_to_generations, group_advantages, grpo_loss

NAN = float("nan")


def test_advantages_leave_failed_rewards_out_of_the_group_statistics():
    rewards = torch.tensor([1.0, 0.0, NAN, 1.0, 1.0, 1.0, 0.0, 1.0, 2.0, NAN, NAN, NAN])
    out = group_advantages(rewards, num_generations=3)
    half = 0.5 / (math.sqrt(0.5) + 1e-4)  # valid rewards 1, 0: mean 0.5, sample std sqrt(0.5)
    expected = [half, -half, 0.0, 0.0, 0.0, 0.0, -1 / 1.0001, 0.0, 1 / 1.0001, 0.0, 0.0, 0.0]
    assert out.values.tolist() == pytest.approx(expected)
    assert not torch.isnan(out.values).any()
    assert out.valid.tolist() == [True, True, False] + [True] * 6 + [False] * 3
    assert (out.failed, out.constant_groups, out.empty_groups) == (4, 1, 1)
    assert out.failed_share == 4 / 12


def test_advantages_match_trl_std_on_valid_rewards():
    rewards = torch.tensor([0.3, NAN, 0.9, 0.1, 0.5, 0.5, 0.2, 0.7])
    grouped = rewards.view(2, 4)
    std = nanstd(grouped, dim=1)
    mean = torch.nanmean(grouped, dim=1)
    expected = ((grouped - mean[:, None]) / (std[:, None] + 1e-4)).nan_to_num(0.0).view(-1)
    assert torch.allclose(group_advantages(rewards, 4).values, expected)


def test_equal_rewards_give_zero_advantage_not_nan_even_without_eps():
    out = group_advantages(torch.tensor([0.5, 0.5, NAN, 0.25]), num_generations=2, eps=0.0)
    assert out.values.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert (out.constant_groups, out.failed) == (2, 1)  # [0.5, 0.5] and the lone valid 0.25


def test_scale_rewards_options():
    rewards = torch.tensor([0.0, 2.0, 1.0, 5.0])
    none = group_advantages(rewards, 2, scale_rewards="none")
    assert none.values.tolist() == [-1.0, 1.0, -2.0, 2.0]
    batch = group_advantages(rewards, 2, scale_rewards="batch")
    assert torch.allclose(batch.values, none.values / (rewards.std() + 1e-4))
    group = group_advantages(rewards, 2, scale_rewards="group")  # sample variances 2 and 8
    assert torch.allclose(group.values, none.values / (torch.tensor([2.0, 2.0, 8.0, 8.0]).sqrt() + 1e-4))
    with pytest.raises(ValueError, match="scale_rewards must be one of"):
        group_advantages(rewards, 2, scale_rewards="global")
    with pytest.raises(ValueError, match=r"flat \[N \* G\] with G=3"):
        group_advantages(rewards, 3)
    with pytest.raises(ValueError, match="finite or NaN"):
        group_advantages(torch.tensor([1.0, math.inf]), 2)


# Two completions on-policy (ratio 1), so each token's loss is -advantage: row 0: -1 on 2 tokens,
# row 1: +2 on 3 tokens.
LOGPS = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.5, -2.5]])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])
ADVANTAGES = torch.tensor([1.0, -2.0])


@pytest.mark.parametrize(
    ("loss_type", "expected"),
    [("grpo", (-2 / 2 + 6 / 3) / 2), ("dr_grpo", (-2 + 6) / (2 * 5)), ("dapo", (-2 + 6) / 5)],
)
def test_token_aggregations(loss_type, expected):
    config = GRPOConfig(loss_type=loss_type, max_new_tokens=5)
    out = grpo_loss(LOGPS, ADVANTAGES, MASK, config)
    assert out.loss.item() == pytest.approx(expected)
    assert out.kl is None and out.clip_region.item() == 0.0


def test_dapo_normalises_by_the_accumulated_token_count():
    out = grpo_loss(LOGPS, ADVANTAGES, MASK, GRPOConfig(loss_type="dapo"), num_tokens=torch.tensor(10.0))
    assert out.loss.item() == pytest.approx(4 / 10)


def test_on_policy_gradient_follows_the_advantage():
    logps = LOGPS.clone().requires_grad_(True)
    grpo_loss(logps, ADVANTAGES, MASK, GRPOConfig(loss_type="dapo")).loss.backward()
    assert torch.allclose(logps.grad, -ADVANTAGES[:, None] * MASK / 5)


@pytest.mark.parametrize(
    ("ratio", "advantage", "epsilon_high", "clipped"),
    [
        (1.5, 1.0, 0.2, True),  # above 1 + eps with a positive advantage: clipped at 1.2
        (1.1, 1.0, 0.2, False),
        (1.25, 1.0, 0.28, False),  # DAPO's higher upper bound leaves it alone
        (0.5, -1.0, 0.2, True),  # below 1 - eps with a negative advantage: clipped at 0.8
        (1.5, -1.0, 0.2, False),  # the pessimistic side is never clipped
    ],
)
def test_clipping_active_and_inactive(ratio, advantage, epsilon_high, clipped):
    old = torch.tensor([[-1.0]])
    logps = (old + math.log(ratio)).requires_grad_(True)
    config = GRPOConfig(epsilon_low=0.2, epsilon_high=epsilon_high, loss_type="dapo")
    out = grpo_loss(logps, torch.tensor([advantage]), torch.ones(1, 1), config, old_logps=old)
    bound = 1 + epsilon_high if advantage > 0 else 1 - 0.2
    used = bound if clipped else ratio
    assert out.loss.item() == pytest.approx(-used * advantage)
    out.loss.backward()
    assert (logps.grad.abs().item() == 0.0) == clipped
    assert out.clip_region.item() == float(clipped)
    assert out.clip_high.item() == float(clipped and advantage > 0)
    assert out.clip_low.item() == float(clipped and advantage < 0)


def test_k3_kl_is_zero_when_the_policy_is_the_reference():
    config = GRPOConfig(beta=0.1, loss_type="dapo")
    same = grpo_loss(LOGPS, ADVANTAGES, MASK, config, ref_logps=LOGPS.clone())
    assert same.kl.item() == 0.0
    assert same.loss.item() == pytest.approx(grpo_loss(LOGPS, ADVANTAGES, MASK).loss.item())
    ref = LOGPS - 0.3
    moved = grpo_loss(LOGPS, ADVANTAGES, MASK, config, ref_logps=ref)
    k3 = math.exp(-0.3) + 0.3 - 1
    assert moved.kl.item() == pytest.approx(k3)
    assert moved.loss.item() == pytest.approx(same.loss.item() + 0.1 * k3)
    with pytest.raises(ValueError, match="needs the reference log-probs"):
        grpo_loss(LOGPS, ADVANTAGES, MASK, config)


def test_bad_configs_are_errors():
    with pytest.raises(ValueError, match=r"loss_type=.*expected"):
        GRPOConfig(loss_type="bnpo")
    with pytest.raises(ValueError, match="epsilon_low"):
        GRPOConfig(epsilon_low=1.0)
    with pytest.raises(ValueError, match="GRPO inputs must be"):
        grpo_loss(LOGPS, ADVANTAGES, MASK[:, :2])


def test_expand_to_generations_puts_completion_k_of_prompt_i_at_row_i_g_plus_k():
    embeds = torch.arange(6.0).view(3, 2)
    batch = {
        "demographic_embeds": embeds,
        "attention_mask": torch.ones(3, 4),
        "profile_texts": ["a", "b", "c"],
    }
    out = expand_to_generations(batch, 2)
    for i in range(3):
        for k in range(2):
            assert torch.equal(out["demographic_embeds"][i * 2 + k], embeds[i])
            assert out["profile_texts"][i * 2 + k] == "abc"[i]
    assert out["attention_mask"].shape == (6, 4)
    with pytest.raises(TypeError, match="cannot expand a str"):
        expand_to_generations("abc", 2)
    with pytest.raises(TypeError, match="cannot expand a NoneType"):
        expand_to_generations({"x": None}, 2)
