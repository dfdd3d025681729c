"""Standard errors, chance levels and the noise mark (e2h.eval.stats), by hand."""

import math

import pytest

from e2h.eval.stats import chance_of_any, is_noise, percent, standard_error


def test_standard_error_of_a_proportion():
    assert standard_error(0.5, 100) == pytest.approx(0.05)
    assert standard_error(0.0, 10) == 0.0
    assert math.isnan(standard_error(0.5, 0))


def test_chance_of_any_of_n_guesses():
    assert chance_of_any(0.1, 1) == pytest.approx(0.1)
    assert chance_of_any(0.1, 8) == pytest.approx(1 - 0.9**8)  # 57%: pass@8 of a guesser on mod-10 answers


def test_noise_is_within_two_standard_errors_of_chance():
    # 16.7% on 18 problems against 10% chance: SE max(sqrt(.167*.833/18), sqrt(.09/18)) = 8.8 points; 6.7 < 17.6
    assert is_noise(3 / 18, 0.1, 18)
    assert not is_noise(0.5, 0.1, 100)  # 40 points above, SE 5
    assert not is_noise(0.0, None, 18)  # no chance level known: nothing to compare with
    assert percent(3 / 18, 18, 0.1) == "16.7% ± 8.8†" and percent(0.5, 100, 0.1) == "50.0% ± 5.0"
