"""A synthetic easy-to-hard benchmark whose every solution step can be checked exactly.

Problems are chains of single-digit additions and subtractions modulo 10. A level-L problem has L+1
operations (L+2 operands), so level is the chain length and harder means longer. Each solution step does
the first remaining operation and *restates what is left* with the result in its place, so everything a
step needs sits at the start of the previous step (a tiny model learns this format; formats whose steps
reach far back into the problem proved much harder for it)::

    problem   6+4+7-5+9
    steps     6+4=0 0+7-5+9
              0+7=7 7-5+9
              7-5=2 2+9
              2+9=1            (the last step has nothing left to restate)
    answer    1

Records use the MATH schema (`e2h.data.records.Problem`): ``problem`` is the expression, ``solution`` the steps
joined by the step separator (the trainer appends the ``# Answer`` section itself), ``answer`` the digit.
Step-labelled solutions use the PRM800K convention (`e2h.data.step_solutions.StepSolution`): labels from the exact
checker up to and including the first wrong step, unlabelled (None) after it.

Run ``python -m e2h.data.synthetic --help`` (or ``e2h data synth``) to write a train/test benchmark.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from e2h.data.files import atomic_write_jsonl
from e2h.data.prompts import STEP_SEPARATOR
from e2h.data.records import ALL_LEVELS, Problem
from e2h.data.step_solutions import (
    StepSolution,
    completion_steps,
    corrupted_solutions,
    labels_to_first_error,
    strip_answer_section,
    write_step_solutions,
)
from e2h.generation.seeding import stable_seed

SUBJECT = "Arithmetic (mod 10)"
SOURCE = "synthetic"
OPERATORS = "+-"
# The answers of random problems are uniform over the ten digits, so a guess is right one time in ten: the
# chance level of final-answer accuracy, beside which every synthetic figure is read.
ANSWER_CHANCE = 0.1

# A whole problem (at least one operation) and a remainder (possibly a lone digit: the answer).
_EXPRESSION_RE = re.compile(r"[0-9](?:[+-][0-9])+")
_REMAINDER_RE = re.compile(r"[0-9](?:[+-][0-9])*")
# One written step: "a op b = c", optionally followed by one space and the restated remainder.
_STEP_RE = re.compile(r"([0-9])([+-])([0-9])=([0-9])(?: (.*))?", re.DOTALL)


# ---------------------------------------------------------------------------------------------------------
# Expressions and their correct solutions


def level_capacity(level: int) -> int:
    """How many distinct level-`level` problems exist: 10 choices per operand, 2 per operator."""
    _check_level(level)
    return 10 ** (level + 2) * len(OPERATORS) ** (level + 1)


def _check_level(level: int) -> None:
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise ValueError(f"a level must be an integer >= 1 (the chain has level+1 operations), got {level!r}")


def _check_expression(expression: str) -> None:
    # The expression is the problem we generated or were given, not model output: bad input is a bug.
    if not isinstance(expression, str) or not _EXPRESSION_RE.fullmatch(expression):
        raise ValueError(
            f"not a synthetic problem: {expression!r}; expected single digits joined by '+' or '-', "
            "with at least one operation (e.g. '6+4+7-5+9')"
        )


def _apply(a: int, op: str, b: int) -> int:
    """a op b modulo 10."""
    return (a + b) % 10 if op == "+" else (a - b) % 10


def _step_text(remainder: str, result: int) -> tuple[str, str]:
    """The step that does `remainder`'s first operation with the given result, and what remains after it.

    Operands and operators are one character each, so the first operation is remainder[:3].
    """
    rest = f"{result}{remainder[3:]}"
    head = f"{remainder[:3]}={result}"
    return (head if len(rest) == 1 else f"{head} {rest}"), rest


def _first_result(remainder: str) -> int:
    return _apply(int(remainder[0]), remainder[1], int(remainder[2]))


def num_operations(expression: str) -> int:
    """Number of operations in a problem (its level plus one)."""
    _check_expression(expression)
    return (len(expression) - 1) // 2


def answer_of(expression: str) -> str:
    """The true answer of a problem, as the digit string stored in ``Problem.answer``."""
    _check_expression(expression)
    value = int(expression[0])
    for i in range(1, len(expression), 2):
        value = _apply(value, expression[i], int(expression[i + 1]))
    return str(value)


def solve_steps(expression: str) -> list[str]:
    """The correct solution: one step per operation, each restating the remaining expression."""
    _check_expression(expression)
    steps: list[str] = []
    remainder = expression
    while len(remainder) > 1:
        step, remainder = _step_text(remainder, _first_result(remainder))
        steps.append(step)
    return steps


# ---------------------------------------------------------------------------------------------------------
# Checking and labelling written steps (possibly a trained generator's output)


def _written_remainder(step: str) -> str | None:
    """What a written step claims remains after it, or None when the step cannot be read.

    A step without a restatement claims its result is the answer, so its remainder is that digit.
    """
    match = _STEP_RE.fullmatch(step)
    if match is None:
        return None
    result, rest = match.group(4), match.group(5)
    if rest is None:
        return result
    return rest if _REMAINDER_RE.fullmatch(rest) else None


def check_steps(expression: str, steps: Sequence[str]) -> list[int]:
    """Exact local check of each written step: 1 correct, 0 wrong.

    Step i is judged against the remainder *written* by step i-1 (the problem for step 0): it is correct
    iff it is exactly the canonical step for that remainder, i.e. it does the remainder's first operation
    ``a op b``, its result is (a op b) mod 10, and it restates the remainder with that operation replaced
    by the result (nothing is restated after the last operation). Surrounding whitespace is ignored;
    nothing else is (``6 + 4 = 0`` is wrong). Because the judgement is local, a step that continues
    correctly from an earlier mistake is correct. A step that cannot be read leaves nothing to continue
    from, so every step after it is wrong, as is every step after the remainder is a single digit (the
    solution had already ended). Never raises on step content: anything that is not a step is wrong.
    """
    return [int(kind is None) for kind in step_errors(expression, steps)]


STEP_ERRORS = ("result", "operation", "restatement", "format")


def step_errors(expression: str, steps: Sequence[str]) -> list[str | None]:
    """What is wrong with each written step (None: nothing), judged as `check_steps` judges it:

    - ``result``: the right operation with a wrong result (an arithmetic slip);
    - ``operation``: the operation done is not the remainder's first one (a copying slip);
    - ``restatement``: operation and result right, what is restated after them wrong (a copying slip);
    - ``format``: not a step at all, or a step after the solution had ended or become unreadable.
    """
    _check_expression(expression)
    if isinstance(steps, str):
        raise TypeError("steps must be a sequence of step strings, not one string; split it on the step separator")
    errors: list[str | None] = []
    remainder: str | None = expression
    for step in steps:
        # The answer section attached to the last step (`e2h.data.step_solutions.split_steps`) is not part of the check.
        text = strip_answer_section(step).strip() if isinstance(step, str) else None
        if remainder is None or len(remainder) == 1 or text is None:
            # Nothing left to continue from (unreadable earlier step, or the solution already ended).
            errors.append("format")
            if text is None:
                remainder = None
            continue
        result = _first_result(remainder)
        expected, after = _step_text(remainder, result)
        if text == expected:
            errors.append(None)
            remainder = after
            continue
        match = _STEP_RE.fullmatch(text)
        if match is None:
            errors.append("format")
        elif "".join(match.group(1, 2, 3)) != remainder[:3]:
            errors.append("operation")
        elif int(match.group(4)) != result:
            errors.append("result")
        else:
            errors.append("restatement")
        remainder = _written_remainder(text)
    return errors


def final_answer(steps: Sequence[str]) -> str | None:
    """The answer a written solution reaches: the result of its last step, or None.

    None when there are no steps, the last step cannot be read, or it still restates operations to do
    (an unfinished solution has no answer).
    """
    if isinstance(steps, str) or not steps or not isinstance(steps[-1], str):
        return None
    remainder = _written_remainder(strip_answer_section(steps[-1]).strip())
    return remainder if remainder is not None and len(remainder) == 1 else None


def solves(expression: str, completion: str) -> bool:
    """Whether a written solution (e.g. a sampled completion) solves the problem for real: one step per
    operation, every one of them passing `check_steps`, so its last step reaches the true answer. A right
    final digit reached through wrong steps (one time in ten by luck, more when steps are skipped) does not
    solve it. The answer section after the last step is not judged here (grading reads it)."""
    steps = completion_steps(completion)
    return len(steps) == num_operations(expression) and all(check_steps(expression, steps))


def is_filler(step: str) -> bool:
    """Whether a written step is a filler step (`e2h.data.chains` has them); this benchmark has none."""
    return False


def label_steps(expression: str, steps: Sequence[str]) -> tuple[list[int | None], int]:
    """Process labels in the PRM800K convention, and the outcome label.

    Labels are `check_steps` up to and including the first wrong step and None after it (labelling stops
    at the first error, as PRM800K's raters did). The outcome is what a final-answer grader says, which is
    what an ORM learns: 1 iff `final_answer(steps)` equals the true answer, whatever the steps were (with
    + and - a single wrong result always shifts the answer, so a lucky right answer needs two errors).
    """
    labels = labels_to_first_error(check_steps(expression, steps))
    outcome = int(final_answer(steps) == answer_of(expression))
    return labels, outcome


ERROR_KINDS = ("result", "operation", "restatement")


def corrupt_steps(
    expression: str, rng: random.Random, position: int | None = None, kind: str = "result"
) -> tuple[list[str], int]:
    """A solution with exactly one wrong step, and that step's index.

    At `position` (random when None) one step goes wrong, in one of three ways (`kind`); every later step
    continues correctly from what the wrong step wrote, so the answer is (almost always) wrong:

    - ``result``: the result digit is replaced by a different digit (an arithmetic slip: the step has to be
      computed to be caught);
    - ``operation``: the operation done is miscopied from the remainder (one to three of its operand and
      operator characters changed), its result computed correctly for what was written (a copying slip:
      comparing the step with the remainder before it catches it; the tiny generator's errors on unseen
      longer problems are of this kind);
    - ``restatement``: the operation and result are right, but the restated remainder has one operand or
      operator changed (also a copying slip). The last step restates nothing, so there it falls back to
      ``result``.
    """
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; choose one of {ERROR_KINDS}")
    count = num_operations(expression)
    if position is None:
        position = rng.randrange(count)
    elif isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < count:
        raise ValueError(f"position must be a step index in 0..{count - 1} for {expression!r}, got {position!r}")
    steps: list[str] = []
    remainder = expression
    for index in range(count):
        result = _first_result(remainder)
        if index != position:
            step, remainder = _step_text(remainder, result)
        elif kind == "result" or (kind == "restatement" and len(remainder) == 3):
            step, remainder = _step_text(remainder, (result + rng.randrange(1, 10)) % 10)  # any other digit
        elif kind == "operation":
            written = _miscopied(remainder[:3], rng)
            step, remainder = _step_text(written + remainder[3:], _first_result(written))
        else:  # restatement: one character of what remains after the result changed
            step, remainder = _step_text(remainder, result)
            i = rng.randrange(1, len(remainder))
            remainder = remainder[:i] + _miscopied(remainder[i], rng) + remainder[i + 1 :]
            step = f"{step.split(' ')[0]} {remainder}"
        steps.append(step)
    return steps, position


def _miscopied(text: str, rng: random.Random) -> str:
    """`text` (digits and operators) with at least one character replaced by another of its class."""
    chars = list(text)
    changed = rng.sample(range(len(chars)), rng.randrange(1, len(chars) + 1))
    for i in changed:
        pool = OPERATORS if chars[i] in OPERATORS else "0123456789"
        chars[i] = rng.choice([c for c in pool if c != chars[i]])
    return "".join(chars)


# ---------------------------------------------------------------------------------------------------------
# Generating problems and step-labelled solutions


def _expression_from_index(index: int, level: int) -> str:
    """The index-th level-`level` expression in a fixed mixed-radix enumeration (digit, then op+digit pairs)."""
    index, digit = divmod(index, 10)
    chars = [str(digit)]
    for _ in range(level + 1):
        index, op = divmod(index, len(OPERATORS))
        index, digit = divmod(index, 10)
        chars += [OPERATORS[op], str(digit)]
    return "".join(chars)


def _index_of_expression(expression: str) -> int:
    """Inverse of `_expression_from_index` for a valid expression."""
    index = 0
    for i in range(len(expression) - 1, 0, -2):
        index = (index * 10 + int(expression[i])) * len(OPERATORS) + OPERATORS.index(expression[i - 1])
    return index * 10 + int(expression[0])


def _sample_indices(rng: random.Random, capacity: int, n: int, banned: set[int], level: int) -> list[int]:
    """n distinct indices in range(capacity), none banned, in random order."""
    available = capacity - len(banned)
    if n > available:
        excluded = f" ({len(banned)} of them excluded)" if banned else ""
        raise ValueError(
            f"level {level} has at most {capacity} distinct problems{excluded}; "
            f"{n} were requested but only {available} are available"
        )
    if 2 * (n + len(banned)) >= capacity:
        # Dense request: enumerate what is left (bounded by twice the request, so this stays cheap).
        return rng.sample([i for i in range(capacity) if i not in banned], n)
    # Sparse request: rejection sampling accepts at least half the draws.
    chosen: dict[int, None] = {}  # a dict keeps draw order, so the result is deterministic
    while len(chosen) < n:
        index = rng.randrange(capacity)
        if index not in banned:
            chosen[index] = None
    return list(chosen)


def counts_per_level(n_per_level: int | Mapping[int, int], levels: Sequence[int] | None) -> list[tuple[int, int]]:
    if isinstance(n_per_level, Mapping):
        if levels is None:
            levels = sorted(n_per_level)
        extra = sorted(set(n_per_level) - set(levels))
        missing = [level for level in levels if level not in n_per_level]
        if extra or missing:
            raise ValueError(
                f"counts per level {dict(n_per_level)} do not match levels {list(levels)}"
                f" (missing {missing}, extra {extra})"
            )
        pairs = [(level, n_per_level[level]) for level in levels]
    else:
        pairs = [(level, n_per_level) for level in (ALL_LEVELS if levels is None else levels)]
    if len({level for level, _ in pairs}) != len(pairs):
        raise ValueError(f"levels must be distinct, got {[level for level, _ in pairs]}")
    for level, n in pairs:
        _check_level(level)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"the number of problems for level {level} must be an integer >= 0, got {n!r}")
    return pairs


def make_problem(expression: str, level: int, unique_id: str) -> Problem:
    """A MATH-schema record for one expression: the solution is the steps joined by the step separator."""
    return Problem(
        problem=expression,
        solution=STEP_SEPARATOR.join(solve_steps(expression)),
        answer=answer_of(expression),
        level=level,
        subject=SUBJECT,
        unique_id=unique_id,
    )


def generate_problems(
    n_per_level: int | Mapping[int, int],
    levels: Sequence[int] | None = None,
    seed: int = 0,
    exclude: Collection[str] = (),
    split: str = "train",
) -> list[Problem]:
    """Distinct random problems, grouped by level in the order of `levels`.

    `n_per_level` is one count for every level or a {level: count} mapping. `levels` defaults to 1-5
    (MATH's range) for one count and to the mapping's levels for a mapping. Deterministic given `seed`
    (a private `random.Random`, never the global one). No problem text equals one in `exclude`, so a test
    split drawn with the train split's texts excluded never overlaps it. Each ``unique_id`` is
    ``synthetic/L{level}/{split}/{index}``. Asking a level for more problems than exist (minus the
    excluded ones) raises ValueError naming the level and the maximum; level 1 has 4,000.
    """
    pairs = counts_per_level(n_per_level, levels)
    rng = random.Random(seed)
    excluded = {text for text in exclude if isinstance(text, str) and _EXPRESSION_RE.fullmatch(text)}
    problems: list[Problem] = []
    for level, n in pairs:
        length = 2 * level + 3  # level+2 digits and level+1 operators
        banned = {_index_of_expression(text) for text in excluded if len(text) == length}
        indices = _sample_indices(rng, level_capacity(level), n, banned, level)
        for k, index in enumerate(indices):
            expression = _expression_from_index(index, level)
            problems.append(make_problem(expression, level, f"{SOURCE}/L{level}/{split}/{k}"))
    return problems


def generate_step_solutions(
    problems: Sequence[Problem], wrong_fraction: float = 0.5, seed: int = 0, error_kinds: Sequence[str] = ("result",)
) -> list[StepSolution]:
    """One step-labelled solution per problem: correct, or with one wrong step (`corrupt_steps`) at a random
    position (`e2h.data.step_solutions.corrupted_solutions`)."""
    return corrupted_solutions(sys.modules[__name__], problems, wrong_fraction, seed, error_kinds)


def _derived_seed(seed: int, part: str) -> int:
    # Independent streams per part of the benchmark. "e2h.synthetic" is a fixed namespace, not the module's
    # path: changing it would change every problem of the benchmark.
    return stable_seed("e2h.synthetic", seed, part)


def benchmark_splits(
    n_train_per_level: int | Mapping[int, int],
    n_test_per_level: int | Mapping[int, int],
    levels: Sequence[int] | None = None,
    seed: int = 0,
) -> tuple[list[Problem], list[Problem]]:
    """The benchmark's train and test problems (disjoint texts), exactly as `write_benchmark` writes them.

    DataModules call this to use the benchmark without files.
    """
    train = generate_problems(n_train_per_level, levels, _derived_seed(seed, "train"), split="train")
    test = generate_problems(
        n_test_per_level, levels, _derived_seed(seed, "test"), exclude={p.problem for p in train}, split="test"
    )
    return train, test


def write_benchmark(
    out_dir: str | Path,
    n_train_per_level: int | Mapping[int, int],
    n_test_per_level: int | Mapping[int, int],
    levels: Sequence[int] | None = None,
    seed: int = 0,
    wrong_fraction: float = 0.5,
) -> dict[str, Path]:
    """Write the benchmark to `out_dir` and return the paths by name.

    ``train.jsonl`` / ``test.jsonl``: problems in the MATH schema, with disjoint problem texts.
    ``train_steps.jsonl`` / ``test_steps.jsonl``: one step-labelled solution per problem, a
    `wrong_fraction` of them with one wrong step. Every file is written atomically.
    """
    out_dir = Path(out_dir)
    train, test = benchmark_splits(n_train_per_level, n_test_per_level, levels, seed)
    paths = {name: out_dir / f"{name}.jsonl" for name in ("train", "test", "train_steps", "test_steps")}
    # Generate everything before writing anything, so a bad argument leaves no partial benchmark.
    train_steps = generate_step_solutions(train, wrong_fraction, _derived_seed(seed, "train_steps"))
    test_steps = generate_step_solutions(test, wrong_fraction, _derived_seed(seed, "test_steps"))
    atomic_write_jsonl((p.to_dict() for p in train), paths["train"])
    atomic_write_jsonl((p.to_dict() for p in test), paths["test"])
    write_step_solutions(train_steps, paths["train_steps"])
    write_step_solutions(test_steps, paths["test_steps"])
    return paths
