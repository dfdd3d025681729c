"""The KL penalty of e2h.rl.kl against numbers worked out by hand: the k1 and k3 estimators, and the fixed and
adaptive controllers."""

from __future__ import annotations

import math

import pytest
import torch

from e2h.rl.kl import AdaptiveKLController, FixedKLController, kl_k1, kl_k3, kl_penalty


def close(actual: torch.Tensor, expected, tol: float = 1e-9) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=0, atol=tol)


def t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


def test_kl_estimators():
    logp = t([math.log(0.5), math.log(0.25), math.log(0.5)])
    ref = t([math.log(0.25), math.log(0.5), math.log(0.5)])
    # k1 = log(p/q): ln 2, -ln 2, 0
    close(kl_k1(logp, ref), [math.log(2), -math.log(2), 0.0])
    # k3 with r = ln(q/p): r = -ln 2 -> 1/2 + ln 2 - 1 = ln 2 - 0.5; r = ln 2 -> 2 - ln 2 - 1 = 1 - ln 2; r = 0 -> 0
    close(kl_k3(logp, ref), [math.log(2) - 0.5, 1 - math.log(2), 0.0])
    assert bool((kl_k3(logp, ref) >= 0).all())
    # official default: k1 clamped at 0 -> ln 2, 0, 0
    close(kl_penalty(logp, ref), [math.log(2), 0.0, 0.0])
    close(kl_penalty(logp, ref, "k1", clamp_min=None), [math.log(2), -math.log(2), 0.0])
    close(kl_penalty(logp, ref, "k3", clamp_min=None), [math.log(2) - 0.5, 1 - math.log(2), 0.0])
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_penalty(logp, ref, "k2")


def test_k3_is_accurate_when_policies_agree():
    # r = -1e-10: e^r - r - 1 = r^2/2 + O(r^3) = 5e-21; exp(r) - 1 in float64 would lose it to rounding
    out = kl_k3(t([1e-10]), t([0.0]))
    assert out.item() == pytest.approx(5e-21, rel=1e-6, abs=0)  # approx's default abs=1e-12 would accept anything


def test_adaptive_kl_controller_follows_ziegler_and_resumes_exactly():
    ctl = AdaptiveKLController(init_coef=0.1, target=6.0, horizon=10000)
    # KL 6.6: e = 6.6/6 - 1 = 0.1 (inside the clip); n/h = 5000/10000 = 0.5 -> 0.1 * (1 + 0.05) = 0.105
    assert ctl.update(6.6, 5000) == pytest.approx(0.105)
    # KL 12: e = 1 -> clipped to 0.2; 0.105 * (1 + 0.2 * 0.5) = 0.1155
    assert ctl.update(torch.tensor(12.0), 5000) == pytest.approx(0.1155)
    # KL 0: e = -1 -> clipped to -0.2; 0.1155 * (1 - 0.1) = 0.10395
    assert ctl.update(0.0, 5000) == pytest.approx(0.10395)
    assert ctl.value == pytest.approx(0.10395)
    resumed = AdaptiveKLController(init_coef=0.1, target=6.0, horizon=10000)
    resumed.load_state_dict(ctl.state_dict())
    assert resumed.value == ctl.value  # exactly, not approximately
    assert resumed.update(7.2, 2000) == ctl.update(7.2, 2000)
    with pytest.raises(ValueError, match="finite"):
        ctl.update(float("nan"), 10)


def test_fixed_kl_controller_never_moves_and_keeps_its_configuration():
    ctl = FixedKLController(0.01)
    assert ctl.update(100.0, 512) == 0.01 and ctl.value == 0.01
    assert ctl.state_dict() == {"value": 0.01}
    ctl.load_state_dict({"value": 0.05})  # a changed config wins over the checkpoint
    assert ctl.value == 0.01
    with pytest.raises(ValueError):
        FixedKLController(-0.1)
