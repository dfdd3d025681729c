r"""PPO reward shaping from grader, reward-model scores and format: pure functions, no framework.

The paper's best PPO reward is "easy outcome + process" (Sun et al., 2024). For one sampled response:

- **outcome** (:func:`outcome_reward`): 1 or 0 by the grader where the gold answer is known (easy problems),
  a constant 0.25 where it is hidden (hard problems, gold ``"Unavailable"``);
- **format penalty** (:func:`format_penalty`): 0, -0.5 or -1 when the final answer is missing or not in the
  expected form; added to the outcome;
- **process rewards** (:func:`process_rewards_min`, the official scheme; :func:`process_rewards_product`,
  :func:`process_rewards_last`), one per step, from the reward model's step scores (sigmoid outputs at
  each step's end, in [0, 1]);
- or, with an ORM, its final-token score (:func:`orm_reward`) as the terminal reward.

:func:`combine_rewards` turns these into ``(token index, reward)`` pairs: each step's reward at its last
token, outcome + penalty at the response's last token; `e2h.rl.maths.place_rewards` makes them a dense tensor.

All three process schemes share one shape. Each step earns ``per_step_bonus / num_steps`` (so a whole
solution earns the bonus once, whatever its length) plus a penalty part that is never positive, and the
penalties of one solution add up to ``min(0, S - upper_bound)``, where S is the solution score of the matching
`e2h.eval.scoring.aggregate` reading (min, product, last step). A solution whose score stays above the upper bound
is not penalised; below it, min and product put each part of the penalty on the step where the score
dropped (credit assignment to the first bad step), last puts all of it on the last step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from e2h.data.prompts import ANSWER_HEADING, STEP_SEPARATOR
from e2h.grading import extract_answer, is_equivalent

HIDDEN_ANSWER = "Unavailable"
"""The gold answer of a PPO prompt whose answer is hidden (hard problems in "easy outcome" training)."""
HIDDEN_OUTCOME = 0.25
"""The official outcome reward where the answer is hidden (the authors call it a magic number)."""

PENALTY_OFF_FORM = -0.5
"""An answer is found, but not in the paper's ``# Answer`` section (e.g. only a ``\\boxed{}``)."""
PENALTY_NO_ANSWER = -1.0
"""No final answer at all, or the response was cut by the length limit."""

PROCESS_SCHEMES: tuple[str, ...] = ("min", "product", "last")
"""Process-reward schemes for `process_rewards` and `combine_rewards` (None: no process reward)."""

# The paper's answer section: "# Answer" on its own line, at the start or after a blank line.
_PAPER_ANSWER_HEADING = re.compile(
    r"(?:\A|" + re.escape(STEP_SEPARATOR) + ")" + re.escape(ANSWER_HEADING) + r"[ \t]*\n"
)


# --------------------------------------------------------------------------------------------------
# Outcome and format
# --------------------------------------------------------------------------------------------------


def graded_outcome(
    answer: str | None, gold: str | None, hidden_value: float = HIDDEN_OUTCOME
) -> tuple[float, bool | None]:
    """The outcome reward and the grade it came from, grading the answer once.

    The reward is 1.0 if ``answer`` equals ``gold`` by `e2h.grading.is_equivalent`, else 0.0; ``hidden_value``
    (0.25) when the gold answer is hidden (None or ``"Unavailable"``), and then the grade is None.
    ``answer`` is the extracted final answer (`e2h.grading.extract_answer`); None (no answer) earns 0 on a
    known problem. A blank ``gold`` is an error: it is neither a known answer nor marked hidden.
    """
    if gold is None or gold.strip() == HIDDEN_ANSWER:
        return float(hidden_value), None
    if not gold.strip():
        raise ValueError(f"blank gold answer; mark a hidden answer with None or {HIDDEN_ANSWER!r}")
    correct = is_equivalent(answer, gold)
    return (1.0 if correct else 0.0), correct


def outcome_reward(answer: str | None, gold: str | None, hidden_value: float = HIDDEN_OUTCOME) -> float:
    """The outcome reward alone (see `graded_outcome`)."""
    return graded_outcome(answer, gold, hidden_value)[0]


def format_penalty(completion: str, stopped: bool = True) -> float:
    r"""The penalty for a final answer that is missing or not in the expected form; 0 at best, -1 at worst.

    - 0.0: the completion has the paper's answer section (``# Answer`` on its own line, at the start or
      after a blank line) and `e2h.grading.extract_answer` reads a non-empty answer from it;
    - -0.5 (`PENALTY_OFF_FORM`): no such section, but `extract_answer` still finds an answer elsewhere
      (a ``\boxed{}``, or an answer heading in another form, e.g. ``## Answer: 5`` on one line);
    - -1.0 (`PENALTY_NO_ANSWER`): no answer at all, or ``stopped`` is False (the response hit the length
      limit without EOS, so whatever answer it has may be cut short).

    The official code grades the same thing differently: given the ``# Answer`` section, it checks how the
    answer also appears in the solution above it (0 for ``\boxed{answer}``, 0.5 for ``$answer$`` in the last
    step, 0.75 for the bare answer there, 1 otherwise, times the penalty value). That ties the penalty to
    MATH's boxing habit: a correct synthetic-chain solution (last step ``2+9=1``, answer ``1``) would lose
    0.75. Here only the answer's own form counts; whether it is right is the outcome reward's business.
    """
    if not stopped:
        return PENALTY_NO_ANSWER
    headings = list(_PAPER_ANSWER_HEADING.finditer(completion))
    if headings:
        answer = extract_answer(completion[headings[-1].start() :], free_text=False)
        if answer:
            return 0.0
    answer = extract_answer(completion, free_text=False)  # a declared answer (box, heading), not a stray formula
    return PENALTY_OFF_FORM if answer else PENALTY_NO_ANSWER


# --------------------------------------------------------------------------------------------------
# Process rewards
# --------------------------------------------------------------------------------------------------


def _check_scores(step_scores: Sequence[float]) -> list[float]:
    # Step scores are probabilities (sigmoid of the reward model's output). Logits passed by mistake would
    # make "falls below 0.5" meaningless and the product scheme non-monotone, so refuse them.
    scores = [float(s) for s in step_scores]
    for i, s in enumerate(scores):
        if not (math.isfinite(s) and 0.0 <= s <= 1.0):
            raise ValueError(f"step score {i} is {s!r}; step scores are probabilities in [0, 1] (sigmoid outputs)")
    return scores


def _drops_below_running_min(sequence: Sequence[float], upper_bound: float) -> list[float]:
    """Per position: ``x - m`` where ``x`` falls below the running minimum ``m`` (then ``m = x``), else 0.

    ``m`` starts at ``upper_bound``. The parts telescope: they sum to ``min(0, min(sequence) - upper_bound)``.
    """
    running_min = float(upper_bound)
    out: list[float] = []
    for x in sequence:
        if x < running_min:
            out.append(x - running_min)
            running_min = x
        else:
            out.append(0.0)
    return out


def _with_bonus(penalties: list[float], per_step_bonus: float) -> list[float]:
    if not penalties:
        return []
    bonus = per_step_bonus / len(penalties)
    return [p + bonus for p in penalties]


def process_rewards_min(
    step_scores: Sequence[float], upper_bound: float = 0.5, per_step_bonus: float = 0.25
) -> list[float]:
    r"""The official "min" shaping: one reward per step.

    A running minimum :math:`m` starts at ``upper_bound``; a step whose score :math:`s_k < m` earns
    :math:`s_k - m` (negative) and sets :math:`m = s_k`; other steps earn 0. Every step also earns
    ``per_step_bonus / num_steps``. Penalties sum to :math:`\min(0, \min_k s_k - \text{upper\_bound})`.
    Example: scores [0.9, 0.4, 0.6, 0.1], bound 0.5, bonus 0.25 -> [0.0625, -0.0375, 0.0625, -0.2375].
    """
    return _with_bonus(_drops_below_running_min(_check_scores(step_scores), upper_bound), per_step_bonus)


def process_rewards_product(
    step_scores: Sequence[float], upper_bound: float = 0.5, per_step_bonus: float = 0.25
) -> list[float]:
    r"""The official "prod" shaping: the "min" scheme applied to the running product of the step scores.

    :math:`p_k = \prod_{i \le k} s_i` (the probability that every step so far is right); a running minimum
    :math:`m` starts at ``upper_bound``, a step with :math:`p_k < m` earns :math:`p_k - m` and sets
    :math:`m = p_k`; plus ``per_step_bonus / num_steps`` each. Penalties sum to
    :math:`\min(0, \prod_k s_k - \text{upper\_bound})`. Since :math:`p_k` never rises, once it is below the
    bound every later step with a score below 1 is penalised a little: long solutions pay for their length.
    """
    products: list[float] = []
    p = 1.0
    for s in _check_scores(step_scores):
        p *= s
        products.append(p)
    return _with_bonus(_drops_below_running_min(products, upper_bound), per_step_bonus)


def process_rewards_last(
    step_scores: Sequence[float], upper_bound: float = 0.5, per_step_bonus: float = 0.25
) -> list[float]:
    r"""Shaping by the last step's score only (e2h's definition; the official code has no such scheme).

    The last step earns :math:`\min(0, s_{last} - \text{upper\_bound})`, the others 0, and every step
    ``per_step_bonus / num_steps``: the same total as "min" and "product" with the last step's score as the
    solution score (for a PRM trained so that the last step judges the whole solution).
    """
    scores = _check_scores(step_scores)
    if not scores:
        return []
    penalties = [0.0] * len(scores)
    penalties[-1] = min(0.0, scores[-1] - upper_bound)
    return _with_bonus(penalties, per_step_bonus)


def process_rewards(
    step_scores: Sequence[float], scheme: str = "min", upper_bound: float = 0.5, per_step_bonus: float = 0.25
) -> list[float]:
    """`process_rewards_min`, `process_rewards_product` or `process_rewards_last`, by name."""
    functions = {"min": process_rewards_min, "product": process_rewards_product, "last": process_rewards_last}
    if scheme not in functions:
        raise ValueError(f"unknown process-reward scheme {scheme!r}; choose one of {PROCESS_SCHEMES}")
    return functions[scheme](step_scores, upper_bound, per_step_bonus)


def orm_reward(score: float, center: float = 0.0) -> float:
    """The terminal reward from an outcome reward model: ``score - center``.

    ``score`` is the ORM's probability at the response's final token (e2h's ``final`` score reading, in
    [0, 1]); ``center=0.5`` makes it signed (a solution the ORM finds more likely wrong than right is
    penalised). The official ORM-only path reads the head's raw output there instead (a logit, no sigmoid).
    """
    if not math.isfinite(score):
        raise ValueError(f"ORM score {score!r} is not a finite number")
    return float(score) - float(center)


# --------------------------------------------------------------------------------------------------
# Glue
# --------------------------------------------------------------------------------------------------


def combine_rewards(
    step_end_positions: Sequence[int],
    step_scores: Sequence[float],
    last_position: int,
    *,
    scheme: str | None = "min",
    outcome: float = 0.0,
    penalty: float = 0.0,
    upper_bound: float = 0.5,
    per_step_bonus: float = 0.25,
    process_scale: float = 1.0,
) -> list[tuple[int, float]]:
    """One response's rewards as ``(token index, reward)`` pairs, for `e2h.rl.maths.place_rewards`.

    - Step ``k``'s process reward (`process_rewards` with ``scheme``), times ``process_scale``, at token
      ``step_end_positions[k]`` (the step's last token, where the reward model's score was read).
    - ``outcome + penalty`` at ``last_position`` (the response's last valid token, its EOS): pass
      `outcome_reward` and `format_penalty`; with an ORM, ``outcome=orm_reward(...)`` (plus the known-answer
      outcome if wanted).

    ``scheme=None`` (or ``"none"``) gives no process rewards (ORM or outcome-only training); the step lists
    are then ignored. Positions are response token indices: strictly increasing, within
    ``[0, last_position]``. A step may end on the last token; `place_rewards` adds the two rewards there.
    The official code splits each step reward in halves over the two ``\\n`` tokens of its Llama-tokenised
    separator; e2h reads and rewards one step-end token, wherever the tokenizer puts it.
    """
    if last_position < 0:
        raise ValueError(f"last_position must be >= 0, got {last_position}")
    for name, value in (("outcome", outcome), ("penalty", penalty), ("process_scale", process_scale)):
        if not math.isfinite(value):
            raise ValueError(f"{name} is {value!r}, not a finite number")
    pairs: list[tuple[int, float]] = []
    if scheme is not None and scheme != "none":
        if len(step_end_positions) != len(step_scores):
            raise ValueError(f"{len(step_end_positions)} step end positions but {len(step_scores)} step scores")
        previous = -1
        for position in step_end_positions:
            if not previous < position <= last_position:
                raise ValueError(
                    f"step end positions must increase strictly within [0, {last_position}], "
                    f"got {list(step_end_positions)}"
                )
            previous = position
        rewards = process_rewards(step_scores, scheme, upper_bound, per_step_bonus)
        pairs.extend((int(p), process_scale * r) for p, r in zip(step_end_positions, rewards))
    pairs.append((int(last_position), float(outcome) + float(penalty)))
    return pairs
