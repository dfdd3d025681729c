"""Learning-rate schedules: warm-up then cosine, by hand."""

import math

import pytest

from e2h.training.schedules import warmup_cosine_factor


def test_warmup_cosine_by_hand():
    # warm-up 2 steps: 1/2, 2/2; then cosine over 4 steps from 1 to the floor 0.1
    factors = [warmup_cosine_factor(s, warmup_steps=2, total_steps=6, min_lr_ratio=0.1) for s in range(8)]
    expected = [0.5, 1.0, 1.0, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)), 0.55,
                0.1 + 0.9 * 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.1, 0.1]
    assert factors == pytest.approx(expected)
