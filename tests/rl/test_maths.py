"""The RL math of e2h.rl against numbers worked out by hand (the arithmetic is in the comment beside each).

Padding positions are filled with NaN, inf or large numbers on purpose: a result that changes with them
(or turns NaN) means padding leaked into the computation.
"""

from __future__ import annotations

import math

import pytest
import torch

from e2h.rl.kl import kl_penalty
from e2h.rl.maths import (
    entropy_from_logits,
    explained_variance,
    gae,
    group_advantages,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    place_rewards,
    policy_loss,
    scale_rewards_by_std,
    token_rewards,
    value_loss,
)

NAN, INF = float("nan"), float("inf")


def t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


def close(actual: torch.Tensor, expected, tol: float = 1e-9) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=0, atol=tol)


# --------------------------------------------------------------------------------------------------
# Masked statistics
# --------------------------------------------------------------------------------------------------

# Valid entries 2, 4, 4, 4 | 5, 5, 7, 9: the textbook set with mean 5 and population std 2.
X = t([[2.0, 4.0, 4.0, 4.0, NAN], [5.0, 5.0, 7.0, 9.0, INF]])
M = t([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]], dtype=torch.int64)


def test_masked_mean_ignores_padding_even_nan_and_inf():
    close(masked_mean(X, M), 5.0)  # (2+4+4+4+5+5+7+9) / 8 = 40 / 8
    close(masked_mean(X, M, dim=1), [3.5, 6.5])  # 14 / 4, 26 / 4
    # columns without the padding one: (2+5)/2, (4+5)/2, (4+7)/2, (4+9)/2
    close(masked_mean(X[:, :4], M[:, :4].bool(), dim=0), [3.5, 4.5, 5.5, 6.5])
    with pytest.raises(ValueError, match="no valid position"):
        masked_mean(X, torch.zeros_like(M))
    with pytest.raises(ValueError, match="no valid position"):
        masked_mean(X, M, dim=0)  # column 4 is all padding
    with pytest.raises(ValueError, match="shape"):
        masked_mean(X, M.T)


def test_masked_sum_ignores_inf_on_padding():
    # PPO's sequence KL: with the k3 estimator a padded position can hold inf, and (kl * mask).sum() would
    # turn inf x 0 into NaN, which the adaptive KL controller refuses mid-run.
    kl = kl_penalty(torch.tensor([[-1.0, -100.0]]), torch.tensor([[-1.0, -5.0]]), "k3")
    assert kl.tolist() == [[0.0, INF]]
    mask = torch.tensor([[1, 0]])
    assert math.isnan(float((kl * mask).sum(1)))  # what the sum was before
    assert masked_sum(kl, mask, dim=1).tolist() == [0.0]
    close(masked_sum(t([[1.0, 2.0, NAN], [3.0, INF, 4.0]]), t([[1, 1, 0], [1, 0, 1]]), dim=1), [3.0, 7.0])


def test_masked_var_biased_and_unbiased():
    # squared deviations from 5: 9 1 1 1 0 0 4 16 -> sum 32
    close(masked_var(X, M, unbiased=False), 4.0)  # 32 / 8
    close(masked_var(X, M), 32.0 / 7.0)  # 32 / (8 - 1)
    one = t([[3.0, NAN]])
    close(masked_var(one, t([[1, 0]]), unbiased=False), 0.0)
    with pytest.raises(ValueError, match="1 valid"):
        masked_var(one, t([[1, 0]]))  # Bessel's correction needs two values


def test_masked_whiten_uses_population_std_and_zeroes_padding():
    # (x - 5) / 2: 2 -> -1.5, 4 -> -0.5, 5 -> 0, 7 -> 1, 9 -> 2
    expected = [[-1.5, -0.5, -0.5, -0.5, 0.0], [0.0, 0.0, 1.0, 2.0, 0.0]]
    close(masked_whiten(X, M), expected, tol=1e-7)
    # shift_mean=False adds the mean 5 back on valid tokens only
    kept = [[3.5, 4.5, 4.5, 4.5, 0.0], [5.0, 5.0, 6.0, 7.0, 0.0]]
    close(masked_whiten(X, M, shift_mean=False), kept, tol=1e-7)
    # given statistics replace the batch's: (x - 4) / 4 on the first row: -0.5 0 0 0
    close(masked_whiten(X, M, mean=4.0, std=4.0, eps=0.0)[0], [-0.5, 0.0, 0.0, 0.0, 0.0])


# --------------------------------------------------------------------------------------------------
# Per-token rewards
# --------------------------------------------------------------------------------------------------


def test_place_rewards_adds_rewards_on_the_same_token():
    dense = place_rewards([[(1, 0.25), (3, -0.5), (3, 1.0)], [], [(0, 2.0)]], (3, 4))
    assert dense.dtype == torch.float32
    close(dense, [[0, 0.25, 0, 0.5], [0, 0, 0, 0], [2.0, 0, 0, 0]])  # token 3: -0.5 + 1.0
    with pytest.raises(ValueError, match="outside"):
        place_rewards([[(4, 1.0)]], (1, 4))
    with pytest.raises(ValueError, match="outside"):
        place_rewards([[(-1, 1.0)]], (1, 4))
    with pytest.raises(ValueError, match="2 reward lists"):
        place_rewards([[], []], (1, 4))


def test_token_rewards_subtracts_the_kl_term_on_valid_tokens():
    scores = t([[0.0, 0.5, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    kl = t([[1.0, 2.0, 0.0, INF], [4.0, NAN, NAN, NAN]])
    mask = t([[1, 1, 1, 0], [1, 0, 0, 0]])
    # beta = 0.1: [0 - 0.1, 0.5 - 0.2, 1 - 0, pad] and [0 - 0.4, pads]
    close(token_rewards(scores, kl, 0.1, mask), [[-0.1, 0.3, 1.0, 0.0], [-0.4, 0.0, 0.0, 0.0]])
    misplaced = scores.clone()
    misplaced[1, 2] = 1.0  # an outcome placed past the response's end
    with pytest.raises(ValueError, match=r"padding \(response 1, token 2\)"):
        token_rewards(misplaced, kl, 0.1, mask)


def test_scale_rewards_by_std_keeps_the_mean_or_only_divides():
    # valid rewards 0, 4, 4, 0: mean 2, population std 2
    rewards = t([[0.0, 4.0, 99.0], [4.0, 0.0, -7.0]])
    mask = t([[1, 1, 0], [1, 1, 0]])
    # official: 2 + (r - 2) / 2 -> 0 -> 1, 4 -> 3
    close(scale_rewards_by_std(rewards, mask), [[1.0, 3.0, 0.0], [3.0, 1.0, 0.0]], tol=1e-7)
    # divide only: r / 2 -> 0, 2
    close(scale_rewards_by_std(rewards, mask, keep_mean=False), [[0.0, 2.0, 0.0], [2.0, 0.0, 0.0]], tol=1e-7)
    # a given std (running estimate) of 4 with the batch mean 2: 2 + (0 - 2)/4 = 1.5, 2 + (4 - 2)/4 = 2.5
    close(scale_rewards_by_std(rewards, mask, std=4.0)[0], [1.5, 2.5, 0.0], tol=1e-7)
    # sequence scores, no mask: [0, 4] -> mean 2, std 2 -> [1, 3] and [0, 2]
    close(scale_rewards_by_std(t([0.0, 4.0])), [1.0, 3.0], tol=1e-7)
    close(scale_rewards_by_std(t([0.0, 4.0]), keep_mean=False), [0.0, 2.0], tol=1e-7)


def test_scale_rewards_by_std_leaves_constant_rewards_alone():
    # std 0: dividing by eps would give 0.25 / 1e-8 = 2.5e7 in the divide-only mode
    rewards = t([[0.25, 0.25, 5.0], [0.25, 0.25, 5.0]])
    mask = t([[1, 1, 0], [1, 1, 0]])
    for keep_mean in (True, False):
        close(scale_rewards_by_std(rewards, mask, keep_mean=keep_mean), [[0.25, 0.25, 0.0], [0.25, 0.25, 0.0]])


# --------------------------------------------------------------------------------------------------
# GAE
# --------------------------------------------------------------------------------------------------


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards = t([[0.5, 0.0, -0.25, 1.0]])
    values = t([[0.25, 0.5, 0.75, 0.5]])
    mask = torch.ones_like(rewards)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # reward-to-go G: t3 1; t2 -0.25 + 1 = 0.75; t1 0 + 0.75 = 0.75; t0 0.5 + 0.75 = 1.25
    close(ret, [[1.25, 0.75, 0.75, 1.0]])
    # A = G - V: 1.25 - 0.25, 0.75 - 0.5, 0.75 - 0.75, 1 - 0.5
    close(adv, [[1.0, 0.25, 0.0, 0.5]])


def test_gae_with_discount_and_lambda():
    rewards = t([[1.0, 0.0, 2.0]])
    values = t([[0.5, 1.0, 1.5]])
    adv, ret = gae(rewards, values, torch.ones_like(rewards), gamma=0.9, lam=0.8)
    # delta2 = 2 + 0.9*0   - 1.5 = 0.5
    # delta1 = 0 + 0.9*1.5 - 1   = 0.35
    # delta0 = 1 + 0.9*1   - 0.5 = 1.4
    # gamma*lam = 0.72: A2 = 0.5; A1 = 0.35 + 0.72*0.5 = 0.71; A0 = 1.4 + 0.72*0.71 = 1.9112
    close(adv, [[1.9112, 0.71, 0.5]], tol=1e-12)
    close(ret, [[2.4112, 1.71, 2.0]], tol=1e-12)  # A + V


def test_gae_padding_does_not_leak():
    # row 0: the discounted example above plus one pad; row 1: two valid tokens and two pads.
    # Pads hold huge rewards and values: any leak changes the valid advantages.
    rewards = t([[1.0, 0.0, 2.0, 100.0], [0.0, 1.0, 100.0, NAN]])
    values = t([[0.5, 1.0, 1.5, -50.0], [0.5, 0.25, -50.0, INF]])
    mask = t([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 1: delta1 = 1 + 0.9*0 - 0.25 = 0.75 (V after the last valid token is 0, not -50)
    #        delta0 = 0 + 0.9*0.25 - 0.5 = -0.275; A0 = -0.275 + 0.72*0.75 = 0.265
    close(adv, [[1.9112, 0.71, 0.5, 0.0], [0.265, 0.75, 0.0, 0.0]], tol=1e-12)
    close(ret, [[2.4112, 1.71, 2.0, 0.0], [0.765, 1.0, 0.0, 0.0]], tol=1e-12)
    alone, _ = gae(rewards[1:, :2], values[1:, :2], mask[1:, :2], gamma=0.9, lam=0.8)
    close(adv[1:, :2], alone)  # padded and unpadded agree


def test_gae_computes_in_float32_and_rejects_holes_in_the_mask():
    adv, ret = gae(torch.ones(1, 3, dtype=torch.bfloat16), torch.zeros(1, 3, dtype=torch.bfloat16), torch.ones(1, 3))
    assert adv.dtype == torch.float32
    close(adv, [[3.0, 2.0, 1.0]])  # reward-to-go of 1, 1, 1
    with pytest.raises(ValueError, match="right-padded"):
        gae(torch.ones(1, 3), torch.zeros(1, 3), t([[1, 0, 1]]))


# --------------------------------------------------------------------------------------------------
# Losses and diagnostics
# --------------------------------------------------------------------------------------------------


def test_policy_loss_clips_and_reports():
    old = t([[0.0, 0.0, 0.0, 0.0, 0.0]])
    logp = t([[math.log(1.5), math.log(0.5), math.log(0.5), 0.0, INF]]).requires_grad_()
    adv = t([[1.0, 1.0, -2.0, 3.0, NAN]])
    mask = t([[1, 1, 1, 1, 0]])
    loss, clip_fraction, approx_kl = policy_loss(logp, old, adv, mask, clip=0.2)
    # token 0: ratio 1.5, A 1:  -1.5 vs -1*1.2 = -1.2 -> max -1.2 (clipped)
    # token 1: ratio 0.5, A 1:  -0.5 vs -1*0.8 = -0.8 -> max -0.5
    # token 2: ratio 0.5, A -2:  1.0 vs  2*0.8 =  1.6 -> max  1.6 (clipped)
    # token 3: ratio 1,   A 3:  -3   vs -3           -> -3
    # mean: (-1.2 - 0.5 + 1.6 - 3) / 4 = -3.1 / 4 = -0.775
    close(loss, -0.775, tol=1e-12)
    close(clip_fraction, 0.5)  # 2 of 4 tokens
    # 0.5 * mean(log-ratio^2) = 0.5 * (ln(1.5)^2 + 2 ln(0.5)^2 + 0) / 4
    close(approx_kl, 0.5 * (math.log(1.5) ** 2 + 2 * math.log(0.5) ** 2) / 4, tol=1e-12)
    assert not (clip_fraction.requires_grad or approx_kl.requires_grad)
    loss.backward()
    # d/dlogp of -A*ratio/4 = -A*ratio/4 where unclipped: token 1 -1*0.5/4 = -0.125, token 3 -3/4 = -0.75;
    # clipped tokens and the pad: 0
    close(logp.grad, [[0.0, -0.125, 0.0, -0.75, 0.0]], tol=1e-12)


def test_value_loss_clips_around_the_old_values():
    old = t([[0.0, 1.0, 0.5, 0.0]])
    values = t([[0.5, 1.1, 0.0, NAN]])
    returns = t([[1.0, 0.0, 0.5, INF]])
    mask = t([[1, 1, 1, 0]])
    loss, clip_fraction = value_loss(values, old, returns, mask, clip=0.2)
    # token 0: clipped V = 0 + 0.2 = 0.2: (0.5-1)^2 = 0.25 vs (0.2-1)^2 = 0.64 -> 0.64 (clipped)
    # token 1: clipped V = 1 + 0.1 = 1.1: both (1.1-0)^2 = 1.21
    # token 2: clipped V = 0.5 - 0.2 = 0.3: (0-0.5)^2 = 0.25 vs (0.3-0.5)^2 = 0.04 -> 0.25
    # 0.5 * (0.64 + 1.21 + 0.25) / 3 = 0.5 * 2.1 / 3 = 0.35
    close(loss, 0.35, tol=1e-12)
    close(clip_fraction, 1 / 3, tol=1e-12)


def test_entropy_from_logits_is_stable_and_masked():
    logits = t(
        [[[0.0, math.log(3.0)], [0.0, 0.0], [1e4, -1e4], [NAN, NAN]]], dtype=torch.float32
    ).requires_grad_()
    mask = t([[1, 1, 1, 0]])
    entropy = entropy_from_logits(logits, mask)
    # p = (1/4, 3/4): H = 1/4 ln 4 + 3/4 ln(4/3) = 0.5623351; p = (1/2, 1/2): ln 2 = 0.6931472; p = (1, 0): 0
    h0 = 0.25 * math.log(4) + 0.75 * math.log(4 / 3)
    close(entropy, (h0 + math.log(2) + 0.0) / 3, tol=1e-6)
    entropy.backward()
    assert torch.isfinite(logits.grad).all() and bool((logits.grad[0, 3] == 0).all())
    # -inf (a filtered token) is probability 0: (0, -inf, 0) has entropy ln 2
    close(entropy_from_logits(t([[[0.0, -INF, 0.0]]], torch.float32), t([[1]])), math.log(2), tol=1e-6)


def test_explained_variance():
    returns = t([[0.0, 2.0, 4.0, 6.0, NAN]])
    mask = t([[1, 1, 1, 1, 0]])
    # returns: mean 3, population var (9 + 1 + 1 + 9) / 4 = 5
    # residual R - V = -1, 0, 1, 0: mean 0, var (1 + 0 + 1 + 0) / 4 = 0.5 -> 1 - 0.5 / 5 = 0.9
    close(explained_variance(t([[1.0, 2.0, 3.0, 6.0, 0.0]]), returns, mask), 0.9, tol=1e-12)
    close(explained_variance(returns + 7.0, returns, mask), 1.0)  # a constant offset is fully "explained"
    close(explained_variance(torch.zeros_like(returns), returns, mask), 0.0)  # residual = returns
    assert math.isnan(explained_variance(returns, torch.ones_like(returns), mask).item())


# --- GRPO: group-relative advantages -------------------------------------------------------------------------


def test_group_advantages_centre_and_scale_within_each_prompt_group():
    # Two prompts, 4 responses each. Group 1: rewards 1, 0, 0, 1 -> mean 1/2, sample std sqrt(1/3) = 0.57735,
    # so A = +-0.5 / 0.57735 = +-0.86603. Group 2: 0.25, 1.25, 0.25, 0.25 -> mean 0.5; deviations -0.25, 0.75,
    # -0.25, -0.25; sample variance (3 x 0.0625 + 0.5625) / 3 = 0.25, std 0.5 -> A = -0.5, 1.5, -0.5, -0.5.
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.25, 1.25, 0.25, 0.25])
    a = group_advantages(scores, group_size=4, eps=0.0)
    assert a.tolist() == pytest.approx([0.86603, -0.86603, -0.86603, 0.86603, -0.5, 1.5, -0.5, -0.5], abs=1e-5)
    # Dr. GRPO: the mean only.
    a = group_advantages(scores, group_size=4, normalise_std=False)
    assert a.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, -0.25, 0.75, -0.25, -0.25])
    # Groups are consecutive responses: the same scores grouped in pairs give other advantages.
    # Pairs (1, 0), (0, 1), (0.25, 1.25), (0.25, 0.25): sample std of a differing pair is |d| / sqrt(2).
    a = group_advantages(scores, group_size=2, eps=0.0)
    s2 = 0.5 / (1 / math.sqrt(2))
    assert a[:6].tolist() == pytest.approx([s2, -s2, -s2, s2, -s2, s2])
    assert a[6:].tolist() == [0.0, 0.0]  # a group that agrees says nothing: 0, not 0 / 0


def test_group_advantages_refuse_groups_that_do_not_fit():
    with pytest.raises(ValueError, match="do not split into groups of 3"):
        group_advantages(torch.zeros(8), group_size=3)
    with pytest.raises(ValueError, match="at least 2 responses"):
        group_advantages(torch.zeros(8), group_size=1)
    with pytest.raises(ValueError, match="not finite"):
        group_advantages(torch.tensor([0.0, float("nan")]), group_size=2)


# --- DPO ------------------------------------------------------------------------------------------------------


def test_dpo_loss_against_hand_derived_values():
    from e2h.rl.dpo import dpo_loss

    # Pair 1: policy log-probs chosen -1, rejected -3; reference -2 and -2. beta 0.1: implicit rewards
    # 0.1 x (-1 + 2) = 0.1 and 0.1 x (-3 + 2) = -0.1, margin 0.2, loss -log sigmoid(0.2) = log(1 + e^-0.2)
    # = 0.598139. Pair 2: policy = reference: rewards 0, margin 0, loss ln 2 = 0.693147, not "ahead".
    terms = dpo_loss(torch.tensor([-1.0, -5.0]), torch.tensor([-3.0, -4.0]),
                     torch.tensor([-2.0, -5.0]), torch.tensor([-2.0, -4.0]), beta=0.1)
    assert terms.chosen_rewards.tolist() == pytest.approx([0.1, 0.0])
    assert terms.rejected_rewards.tolist() == pytest.approx([-0.1, 0.0])
    assert terms.margins.tolist() == pytest.approx([0.2, 0.0])
    assert terms.accuracy.tolist() == [1.0, 0.0]
    assert float(terms.loss) == pytest.approx((math.log1p(math.exp(-0.2)) + math.log(2)) / 2, abs=1e-6)
    # The gradient pushes the chosen side up and the rejected side down: d loss / d policy_chosen of pair 1
    # is -beta x sigmoid(-0.2) / 2 = -0.1 x 0.450166 / 2 = -0.0225083.
    chosen = torch.tensor([-1.0, -5.0], requires_grad=True)
    dpo_loss(chosen, torch.tensor([-3.0, -4.0]), torch.tensor([-2.0, -5.0]), torch.tensor([-2.0, -4.0]), 0.1).loss.backward()
    assert chosen.grad[0].item() == pytest.approx(-0.0225083, abs=1e-6)


def test_sequence_logp_sums_the_response_tokens_only():
    from e2h.rl.dpo import sequence_logp

    logp = torch.tensor([[-0.5, -1.0, float("-inf")], [-2.0, float("nan"), float("nan")]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert sequence_logp(logp, mask).tolist() == [-1.5, -2.0]
