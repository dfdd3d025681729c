r"""The KL penalty to the reference policy: per-token estimators (k1, k3) and the coefficient's controllers
(fixed, or adaptive towards a target KL). Pure tensor functions, no framework."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

KLKind = Literal["k1", "k3"]
KL_KINDS: tuple[str, ...] = ("k1", "k3")


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    r"""Per-token k1 estimate of KL(policy || reference): :math:`\log \pi(a) - \log \pi_{ref}(a)`.

    Unbiased for the sequence KL when the token was sampled from the policy, but negative for individual
    tokens the reference likes more.
    """
    return logp - ref_logp


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    r"""Per-token k3 estimate (Schulman, "Approximating KL divergence"): :math:`e^{r} - r - 1`,
    :math:`r = \log \pi_{ref}(a) - \log \pi(a)`.

    Unbiased (:math:`E_\pi[e^r] = 1`) and never negative (:math:`e^r \ge 1 + r`).
    """
    log_ratio = ref_logp - logp
    # expm1 keeps precision when the two policies agree (log_ratio ~ 0), where exp(r) - 1 cancels.
    return torch.expm1(log_ratio) - log_ratio


def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: KLKind = "k1", clamp_min: float | None = 0.0) -> Tensor:
    r"""The per-token KL term of the reward: :func:`kl_k1` or :func:`kl_k3`, then ``max(kl, clamp_min)``.

    The defaults are the official e2h setting: k1 clamped at 0, :math:`\max(\log\pi - \log\pi_{ref}, 0)`.
    The clamp keeps tokens the reference prefers from *earning* reward, at the cost of a biased (too large)
    KL estimate. ``clamp_min=None`` leaves the estimate unclamped.
    """
    if kind == "k1":
        kl = kl_k1(logp, ref_logp)
    elif kind == "k3":
        kl = kl_k3(logp, ref_logp)
    else:
        raise ValueError(f"unknown KL estimator {kind!r}; choose one of {KL_KINDS}")
    return kl if clamp_min is None else kl.clamp(min=clamp_min)


class FixedKLController:
    """A constant KL coefficient (the official e2h setting, 0.01)."""

    def __init__(self, coef: float) -> None:
        if not (math.isfinite(coef) and coef >= 0):
            raise ValueError(f"KL coefficient must be a finite number >= 0, got {coef!r}")
        self._value = float(coef)

    @property
    def value(self) -> float:
        return self._value

    def update(self, current_kl: float | Tensor, n_steps: int) -> float:
        """No change; returns the coefficient (same interface as `AdaptiveKLController`)."""
        return self._value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self._value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # A fixed coefficient is configuration, not state: the configured value stays. Say so when the
        # checkpoint disagrees, so a changed config is a visible choice rather than a silent surprise.
        if float(state["value"]) != self._value:
            logger.warning(
                "fixed KL coefficient: the checkpoint has %g, the configuration %g; using %g",
                float(state["value"]), self._value, self._value,
            )


class AdaptiveKLController:
    r"""The adaptive KL coefficient of Ziegler et al. (2019), a proportional controller towards ``target``.

    After each rollout: :math:`e = \text{clip}(\text{KL} / \text{target} - 1, -0.2, 0.2)`,
    :math:`\beta \leftarrow \beta \, (1 + e \cdot n\_steps / \text{horizon})`, where KL is the rollout's
    mean per-sequence KL (sum over tokens) and ``n_steps`` the number of samples (sequences) it holds, so
    ``horizon`` is counted in samples. The clip bounds one update to a factor in
    :math:`[1 - 0.2 \, n/h, 1 + 0.2 \, n/h]`.
    """

    def __init__(self, init_coef: float, target: float, horizon: float) -> None:
        if not (math.isfinite(init_coef) and init_coef > 0):
            # a multiplicative update never leaves 0
            raise ValueError(f"init_coef must be a finite number > 0, got {init_coef!r}")
        if not (math.isfinite(target) and target > 0):
            raise ValueError(f"target KL must be a finite number > 0, got {target!r}")
        if not (math.isfinite(horizon) and horizon > 0):
            raise ValueError(f"horizon must be a finite number > 0, got {horizon!r}")
        self._value = float(init_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    @property
    def value(self) -> float:
        return self._value

    def update(self, current_kl: float | Tensor, n_steps: int) -> float:
        """Move the coefficient towards the target (formula in the class docstring); returns the new value."""
        kl = float(current_kl)
        # A NaN KL would make the coefficient NaN for the rest of the run: refuse it where it appears.
        if not math.isfinite(kl):
            raise ValueError(f"AdaptiveKLController.update: KL is {kl}, not a finite number")
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self._value *= 1.0 + error * n_steps / self.horizon
        return self._value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self._value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # The coefficient is state (it has drifted from init_coef) and is restored exactly; target and horizon
        # are configuration and stay as configured.
        self._value = float(state["value"])
        for key in ("target", "horizon"):
            if key in state and float(state[key]) != getattr(self, key):
                logger.warning(
                    "adaptive KL controller: the checkpoint's %s is %g, the configuration's %g; using %g",
                    key, float(state[key]), getattr(self, key), getattr(self, key),
                )
