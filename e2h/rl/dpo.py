r"""Direct preference optimisation (Rafailov et al. 2023): the sigmoid loss on (chosen, rejected) pairs. Pure
tensor functions, no framework.

For a prompt :math:`x` with a chosen response :math:`y_w` and a rejected one :math:`y_l`, the *implicit
reward* of a response is :math:`\hat r(y) = \beta \, (\log \pi(y|x) - \log \pi_{ref}(y|x))` (sequence
log-probabilities, summed over the response's tokens), and the loss is

.. math:: L = -\log \sigma(\hat r(y_w) - \hat r(y_l)).

At the start (policy = reference) every implicit reward is 0 and the loss is :math:`\ln 2`; it falls as the
policy raises the chosen response's likelihood against the rejected one's, relative to the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from e2h.rl.maths import masked_sum


@dataclass(frozen=True)
class DPOTerms:
    """The loss (a scalar to minimise) and, per pair, what TensorBoard shows: the implicit rewards of the
    chosen and the rejected response, their margin, and whether the chosen one is ahead (all detached)."""

    loss: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    margins: Tensor
    accuracy: Tensor


def sequence_logp(token_logp: Tensor, mask: Tensor) -> Tensor:
    """``[B]`` sequence log-probabilities: the response tokens' log-probs ``[B, T]`` summed where `mask` is set
    (padding, even inf or NaN there, is left out)."""
    return masked_sum(token_logp, mask, dim=1)


def dpo_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, reference_chosen: Tensor, reference_rejected: Tensor,
    beta: float = 0.1,
) -> DPOTerms:
    """The DPO sigmoid loss, averaged over pairs, from ``[B]`` sequence log-probabilities of each side under
    the policy and the frozen reference. `beta` scales the implicit reward (larger: stay closer to the
    reference)."""
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    shapes = {tuple(t.shape) for t in (policy_chosen, policy_rejected, reference_chosen, reference_rejected)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"dpo_loss expects four [B] tensors of one shape, got shapes {sorted(shapes)}")
    chosen = beta * (policy_chosen - reference_chosen)
    rejected = beta * (policy_rejected - reference_rejected)
    loss = -F.logsigmoid(chosen - rejected).mean()
    with torch.no_grad():
        margins = (chosen - rejected).detach()
        return DPOTerms(loss, chosen.detach(), rejected.detach(), margins, (margins > 0).float())
