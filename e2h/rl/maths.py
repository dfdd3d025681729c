r"""The RL math of PPO with process rewards: pure tensor functions, no framework.

Conventions
-----------
Response tensors are ``[B, T]`` (batch, response length), right-padded: position ``t`` of a row belongs to the
``t``-th generated token, and ``mask`` is 1 (or True) on the real response tokens (EOS included) and 0 on the
padding after them. ``values[:, t]`` is the value estimate of the state in which token ``t`` is chosen and
``rewards[:, t]`` the reward for choosing it. Padding never contributes: every function reads padding
positions as absent (even when they hold NaN or inf) and returns 0 there.

One PPO step, in the official order (Sun et al. 2024's code, itself AlpacaFarm's):

1. per-token KL to the reference: `e2h.rl.kl.kl_penalty` (k1, clamped at 0);
2. sequence and process rewards as ``(token index, reward)`` pairs (`e2h.rl.rewards`), made dense by
   :func:`place_rewards`; per-token reward :func:`token_rewards` = placed rewards - kl_coef * KL;
3. :func:`scale_rewards_by_std` on those per-token rewards ("scaled by their std, mean kept");
4. :func:`gae` -> advantages and returns, then :func:`masked_whiten` of the advantages;
5. :func:`policy_loss`, :func:`value_loss` (times ``vf_coef``), :func:`entropy_from_logits` for logging.

Where this knowingly differs from the official code: there, padding after EOS takes part in everything (the
statistics of reward scaling and advantage whitening, the loss means, and GAE, which bootstraps from the value
and KL reward of pad positions after the last real token); here padding is excluded throughout and the value
after the last valid token is 0.

Batch-size vocabulary (used by the PPO module)
----------------------------------------------
The **rollout batch** is the set of responses sampled with the current policy before any update (official:
512); rewards, advantages and the statistics of reward scaling and advantage whitening are computed over the
whole rollout batch (in a multi-device run, over every device's share: pass gathered statistics). The rollout
batch is then trained on for **PPO epochs** passes (official: 1), each split into **minibatches** ("step
batch", official: 64) of responses, one optimizer step per minibatch (512 / 64 = 8 steps per epoch). A
minibatch is what all devices together consume per optimizer step: minibatch = **micro-batch** (what one
device forwards at once) x devices x gradient-accumulation steps. The losses here are token means over the
valid tokens of the micro-batch they are given; accumulation then averages the micro-batch losses, so with
micro-batches of different token counts the minibatch loss is a mean of means (the usual approximation, as in
the official code).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

# --------------------------------------------------------------------------------------------------
# Masked statistics
# --------------------------------------------------------------------------------------------------


def _valid(mask: Tensor, x: Tensor, what: str = "mask") -> Tensor:
    """``mask`` as booleans, checked to have ``x``'s shape (broadcasting would hide a transposed mask)."""
    if mask.shape != x.shape:
        raise ValueError(f"{what} has shape {tuple(mask.shape)} but the values have {tuple(x.shape)}")
    return mask.bool()


def _zero_padding(x: Tensor, valid: Tensor) -> Tensor:
    # torch.where, not x * mask: padding may hold inf or NaN (log-prob of a pad token), and inf * 0 = NaN.
    # Selecting also keeps gradients at padding exactly 0 rather than 0 * NaN.
    return torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    r"""Mean of ``x`` over the valid positions: :math:`\sum_i m_i x_i / \sum_i m_i`.

    Over all positions when ``dim`` is None (a scalar), else along ``dim``. Raises ValueError when a mean
    would have no valid position: 0/0 would silently turn a loss into NaN.
    """
    valid = _valid(mask, x)
    count = valid.sum() if dim is None else valid.sum(dim)
    if bool((count == 0).any()):
        where = "" if dim is None else f" in some slice along dim {dim}"
        raise ValueError(f"masked_mean: no valid position to average over{where} (the mask is all 0 there)")
    total = _zero_padding(x, valid)
    total = total.sum() if dim is None else total.sum(dim)
    return total / count


def masked_sum(x: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Sum of ``x`` over the valid positions along ``dim``, 0 for a row without any.

    ``(x * mask).sum(dim)`` would be NaN wherever padding holds inf (inf x 0), e.g. a k3 KL estimate at a pad
    token the two policies rate very differently.
    """
    return _zero_padding(x, _valid(mask, x)).sum(dim)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    r"""Variance of ``x`` over the valid positions (a scalar).

    :math:`\mu = \text{masked\_mean}(x)`, :math:`\text{var} = \sum_i m_i (x_i - \mu)^2 / (n - 1)` when
    ``unbiased`` (Bessel's correction; needs n >= 2), else :math:`/\, n`, where :math:`n = \sum_i m_i`.
    """
    valid = _valid(mask, x)
    n = int(valid.sum())
    if n == 0 or (unbiased and n < 2):
        raise ValueError(f"masked_var: {n} valid position(s); need {'2' if unbiased else '1'} or more")
    x = _zero_padding(x, valid)
    mean = x.sum() / n
    squares = _zero_padding((x - mean) ** 2, valid).sum()
    return squares / (n - 1 if unbiased else n)


def masked_whiten(
    x: Tensor,
    mask: Tensor,
    shift_mean: bool = True,
    eps: float = 1e-8,
    *,
    mean: Tensor | float | None = None,
    std: Tensor | float | None = None,
) -> Tensor:
    r"""Whitening over the valid positions; padding returned as 0.

    :math:`w = (x - \mu) / (\sigma + \epsilon)`, and with ``shift_mean=False`` :math:`w + \mu` (the spread is
    normalised, the mean is kept). :math:`\mu` and :math:`\sigma` are the mean and the *population* standard
    deviation (divide by n) of the valid entries, as in the official code (with thousands of tokens the choice
    is immaterial); ``eps`` is added to :math:`\sigma`, also as there. Give ``mean``/``std`` to use statistics
    computed elsewhere (e.g. over all devices); any not given comes from ``x``.
    """
    valid = _valid(mask, x)
    if mean is None:
        mean = masked_mean(x, mask)
    if std is None:
        std = masked_var(x, mask, unbiased=False).sqrt()
    w = (_zero_padding(x, valid) - mean) / (std + eps)
    if not shift_mean:
        w = w + mean
    return _zero_padding(w, valid)


# --------------------------------------------------------------------------------------------------
# Rewards per token
# --------------------------------------------------------------------------------------------------


def place_rewards(
    values_per_position: Sequence[Sequence[tuple[int, float]]],
    shape: tuple[int, int] | torch.Size,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """A dense ``[B, T]`` reward tensor from ``(token index, reward)`` pairs, one list per response.

    Rewards given for the same token add up (the last step often ends on the last token, which also carries
    the outcome). Indices must lie in ``[0, T)``: a negative index would silently count from the end.
    """
    batch, length = int(shape[0]), int(shape[1])
    if len(values_per_position) != batch:
        raise ValueError(f"{len(values_per_position)} reward lists for a batch of {batch}")
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for b, pairs in enumerate(values_per_position):
        for index, reward in pairs:
            if not 0 <= index < length:
                raise ValueError(f"response {b}: reward at token {index}, outside [0, {length})")
            if not math.isfinite(reward):
                raise ValueError(f"response {b}: reward {reward!r} at token {index} is not a finite number")
            rows.append(b)
            cols.append(int(index))
            vals.append(float(reward))
    out = torch.zeros(batch, length, dtype=dtype, device=device)
    if vals:
        index = (torch.tensor(rows, device=out.device), torch.tensor(cols, device=out.device))
        out.index_put_(index, torch.tensor(vals, dtype=dtype, device=out.device), accumulate=True)
    return out


def token_rewards(score_per_token: Tensor, kl: Tensor, kl_coef: float | Tensor, mask: Tensor) -> Tensor:
    r"""Per-token reward: :math:`r_t = s_t - \beta \, \text{KL}_t` on valid tokens, 0 on padding.

    ``score_per_token`` is the dense tensor of :func:`place_rewards` (step rewards at step ends, the outcome
    at the last valid token); ``kl`` the per-token :func:`kl_penalty`; ``kl_coef`` :math:`\beta`. A non-zero
    score on a padding position is an error: it would be a reward placed past the response's end and
    silently dropped.
    """
    valid = _valid(mask, score_per_token)
    _valid(mask, kl, "mask (against kl)")
    misplaced = (~valid) & (score_per_token != 0)
    if bool(misplaced.any()):
        b, t = (int(i) for i in misplaced.nonzero()[0])
        raise ValueError(f"a reward was placed on padding (response {b}, token {t}): it is past the response's end")
    return _zero_padding(score_per_token - kl_coef * kl, valid)


def scale_rewards_by_std(
    rewards: Tensor,
    mask: Tensor | None = None,
    std: Tensor | float | None = None,
    *,
    mean: Tensor | float | None = None,
    keep_mean: bool = True,
    eps: float = 1e-8,
    min_std: float = 1e-6,
) -> Tensor:
    r"""Rewards scaled by their standard deviation; padding returned as 0.

    Which rewards (the official code): the **per-token rewards of the whole rollout batch** after the KL
    penalty and the step/outcome rewards are combined (:func:`token_rewards`), just before :func:`gae`.
    A ``[B]`` tensor of sequence scores with ``mask=None`` works too, for scaling scores before placing them.

    - ``keep_mean=True`` (official, its ``whiten(shift_mean=False)``):
      :math:`\mu + (r - \mu) / (\sigma + \epsilon)`: the spread becomes 1, the mean stays :math:`\mu`.
    - ``keep_mean=False``: :math:`r / (\sigma + \epsilon)`: a pure rescaling (the mean is scaled too).

    :math:`\mu`, :math:`\sigma`: mean and population std of the valid entries, unless given (``std`` from a
    running estimate or gathered over devices; a ``mean`` not given comes from ``rewards``). Guard: when
    :math:`\sigma \le` ``min_std`` the rewards are (nearly) constant and are returned unscaled; dividing
    by ~eps would only blow up rounding noise (e.g. every outcome 0.25 and no KL yet at the first step).
    """
    if mask is None:
        mask = torch.ones_like(rewards, dtype=torch.bool)
    valid = _valid(mask, rewards)
    if std is None:
        std = masked_var(rewards, mask, unbiased=False).sqrt()
    if float(std) <= min_std:
        return _zero_padding(rewards, valid)
    if not keep_mean:
        return _zero_padding(rewards / (std + eps), valid)
    if mean is None:
        mean = masked_mean(rewards, mask)
    return masked_whiten(rewards, mask, shift_mean=False, eps=eps, mean=mean, std=std)


# --------------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------------


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""Generalized advantage estimation (Schulman et al. 2016), backwards over each response's valid tokens.

    :math:`\delta_t = r_t + \gamma V_{t+1} - V_t`, :math:`A_t = \delta_t + \gamma\lambda A_{t+1}`, with
    :math:`V = 0` and :math:`A = 0` after the last valid token (the episode ends at EOS; padding never leaks
    in). Returns :math:`(A, A + V)` (advantages, returns), 0 on padding, un-whitened (whiten the advantages
    afterwards; the returns are the value targets). With :math:`\gamma = \lambda = 1` (official),
    :math:`A_t = \sum_{k \ge t} r_k - V_t`: reward-to-go minus value.

    The mask must be right-padded (no valid token after a padding one). Computed in at least float32: a
    bf16 running sum over hundreds of tokens loses the small per-token KL rewards.
    """
    valid = _valid(mask, rewards)
    _valid(mask, values, "mask (against values)")
    if rewards.dim() != 2:
        raise ValueError(f"gae expects [batch, length] tensors, got shape {tuple(rewards.shape)}")
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={gamma}, lam={lam}")
    if bool((valid[:, 1:] & ~valid[:, :-1]).any()):
        raise ValueError("gae: the mask has a valid token after padding; responses must be right-padded")
    dtype = torch.promote_types(torch.promote_types(rewards.dtype, values.dtype), torch.float32)
    r = _zero_padding(rewards, valid).to(dtype)
    v = _zero_padding(values, valid).to(dtype)
    batch, length = r.shape
    advantages = torch.zeros_like(r)
    running = torch.zeros(batch, dtype=dtype, device=r.device)  # A_{t+1}
    next_value = torch.zeros(batch, dtype=dtype, device=r.device)  # V_{t+1}; 0 past the end
    for t in reversed(range(length)):
        delta = r[:, t] + gamma * next_value - v[:, t]
        running = delta + gamma * lam * running
        # At padding r, V and the next V are all 0, so A stays exactly 0 there and the recursion starts
        # fresh at each row's last valid token.
        advantages[:, t] = running
        next_value = v[:, t]
    returns = advantages + v
    return _zero_padding(advantages, valid), _zero_padding(returns, valid)


def group_advantages(scores: Tensor, group_size: int, normalise_std: bool = True, eps: float = 1e-6) -> Tensor:
    r"""GRPO's group-relative advantages (Shao et al. 2024, "DeepSeekMath"): one number per response.

    ``scores`` is ``[B]``, one task reward per response, with the ``G = group_size`` responses to the same
    prompt next to each other (B a multiple of G). Within each group,
    :math:`A_i = (R_i - \bar R) / (s + \epsilon)` with :math:`s` the group's *sample* standard deviation
    (divide by G - 1, as trl and the DeepSeekMath code compute it), or :math:`A_i = R_i - \bar R` with
    ``normalise_std=False`` (Liu et al. 2025, "Dr. GRPO": the std division over-weights groups that nearly
    agree). A group whose responses all scored the same gets 0: it says nothing about which is better. The
    advantage is the same for every token of a response (the caller broadcasts it over the mask).
    """
    if scores.dim() != 1:
        raise ValueError(f"group_advantages expects one score per response ([B]), got shape {tuple(scores.shape)}")
    if group_size < 2:
        raise ValueError(f"a group needs at least 2 responses to compare, got group_size={group_size}")
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} responses do not split into groups of {group_size}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"group_advantages: a response's score is not finite: {scores.tolist()}")
    grouped = scores.to(torch.promote_types(scores.dtype, torch.float32)).view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if normalise_std:
        std = grouped.std(dim=1, unbiased=True, keepdim=True)
        # An all-alike group is centred to exact zeros; 0 / (0 + eps) keeps them 0, and eps = 0 must not turn
        # them into 0 / 0.
        centred = torch.where(std > 0, centred / (std + eps), torch.zeros((), dtype=centred.dtype))
    return centred.reshape(-1).to(scores.dtype)


# --------------------------------------------------------------------------------------------------
# Losses and diagnostics
# --------------------------------------------------------------------------------------------------


def policy_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip: float = 0.2
) -> tuple[Tensor, Tensor, Tensor]:
    r"""PPO's clipped surrogate, as a loss to minimise, with two diagnostics.

    :math:`\rho_t = \exp(\log\pi_t - \log\pi_{old,t})`,
    :math:`L = \text{mean}_t \max(-A_t \rho_t, \; -A_t \, \text{clip}(\rho_t, 1 - c, 1 + c))`, the mean over the
    valid tokens. Returns ``(loss, clip_fraction, approx_kl)``: the fraction of valid tokens where the clipped
    term is the larger (those give no gradient), and :math:`\text{mean}_t \tfrac12 (\log\pi_t -
    \log\pi_{old,t})^2` (the official diagnostic); both detached.
    """
    valid = _valid(mask, logp)
    _valid(mask, old_logp, "mask (against old_logp)")
    advantages = _zero_padding(advantages, _valid(mask, advantages, "mask (against advantages)"))
    # Zero the padding before exp: a pad's log-ratio may be inf, and exp(inf) * 0 poisons the gradient.
    log_ratio = _zero_padding(logp - old_logp, valid)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).to(ratio.dtype), mask)
        approx_kl = masked_mean(0.5 * log_ratio**2, mask)
    return loss, clip_fraction, approx_kl


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float = 0.2
) -> tuple[Tensor, Tensor]:
    r"""The clipped value loss: :math:`\tfrac12 \, \text{mean}_t \max((V_t - R_t)^2, (V^{clip}_t - R_t)^2)`.

    :math:`V^{clip}_t = V_{old,t} + \text{clip}(V_t - V_{old,t}, -c, c)`; the mean is over valid tokens; the
    ``vf_coef`` weight is applied by the caller. Returns ``(loss, clip_fraction)``, the fraction of valid
    tokens where the clipped error is the larger (detached).
    """
    valid = _valid(mask, values)
    _valid(mask, old_values, "mask (against old_values)")
    _valid(mask, returns, "mask (against returns)")
    values, old_values, returns = (_zero_padding(x, valid) for x in (values, old_values, returns))
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped_error > unclipped_error).to(values.dtype), mask)
    return loss, clip_fraction


def entropy_from_logits(logits: Tensor, mask: Tensor) -> Tensor:
    r"""Mean entropy of the next-token distributions over the valid tokens.

    Per token :math:`H = \text{logsumexp}(z) - \sum_i \text{softmax}(z)_i z_i`, which never forms
    :math:`\log p` of a tiny :math:`p`. ``logits`` is ``[B, T, V]`` (the same temperature-scaled logits the
    log-probs come from), ``mask`` ``[B, T]``. Logits of ``-inf`` (filtered tokens) count as probability 0.
    Computed in at least float32, which costs a float32 copy of the logits.
    """
    if logits.shape[:-1] != mask.shape:
        raise ValueError(f"logits have shape {tuple(logits.shape)} but the mask has {tuple(mask.shape)}")
    valid = mask.bool()
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    # Padding rows may hold anything (NaN included): replace them before the softmax, whose backward would
    # otherwise turn 0 * NaN into NaN gradients. -inf becomes the most negative finite number: p = 0 and
    # p * z = 0 instead of 0 * -inf = NaN.
    z = torch.where(valid.unsqueeze(-1), z, torch.zeros((), dtype=z.dtype, device=z.device))
    z = z.clamp(min=torch.finfo(z.dtype).min)
    entropy = torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1)
    return masked_mean(entropy, mask)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    r"""How much of the returns' variance the values explain: :math:`1 - \text{Var}[R - V] / \text{Var}[R]`.

    Over valid tokens (population variances). 1 is perfect (up to a constant offset), 0 no better than the
    mean, negative worse. NaN when the returns are constant (the ratio is undefined).
    """
    var_returns = masked_var(returns, mask, unbiased=False)
    var_residual = masked_var(returns - values, mask, unbiased=False)
    if float(var_returns) == 0.0:
        return torch.tensor(float("nan"), dtype=var_returns.dtype, device=var_returns.device)
    return 1.0 - var_residual / var_returns
