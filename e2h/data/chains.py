"""Pointer chains: a synthetic easy-to-hard benchmark whose steps find their inputs by content, not position.

A problem lists seven named operations (modulo 10), each naming the operation that follows it, or ``.``
for the end, and gives a start value and the first name. A level-L problem's chain has L+1 operations;
the other definitions form a second chain that nothing reaches (distractors). So an easy and a hard problem
look alike, list the same number of definitions, and differ only in how long the chain is::

    problem   3>f|a*4>. f+8>q c-2>. q*3>a e+5>c g-1>e x*2>g
    steps     f+8=1>q              3+8 = 11 = 1 (mod 10), then go to q
              q*3=3>a
              a*4=2>.              "." ends the chain
    answer    2

Each step writes its operation's name, the operation as defined, the new value and the next name, so
checking a step needs only three things: the previous step's value, the previous step's pointer, and that
name's definition in the problem. A hard problem's step is checked exactly as an easy one's is: a local
check that carries to longer chains. Making the next operand a pointer resolved by content (an
induction-style lookup) is what lets a small model without position encoding solve chains longer than
any it was trained on (the tiny study's design search measures this).

Training solutions can carry *filler* steps (``~``) before real ones, a random number each time (one more
with probability `fillers`): then the length of a solution says nothing about where its chain ends, and a
generator must read the ``.`` pointer to stop. Trained without them, a generator learns to stop after as
many steps as its longest training chain, and never finishes a longer one. Checkers skip fillers.

Records use the MATH schema, like `e2h.data.synthetic`: ``problem`` the text above, ``solution`` the steps
joined by the step separator, ``answer`` the digit; ids are ``chains/L{level}/{split}/{index}``.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from e2h.data.prompts import STEP_SEPARATOR
from e2h.data.records import Problem
from e2h.data.step_solutions import (
    StepSolution,
    completion_steps,
    corrupted_solutions,
    labels_to_first_error,
    strip_answer_section,
)
from e2h.data.synthetic import counts_per_level
from e2h.generation.seeding import stable_seed

SOURCE = "chains"
SUBJECT = "Pointer chains (mod 10)"
DEFINITIONS = 7
"""Definitions in every problem: its chain and distractors, so levels 1-6 (2-7 operations) look alike."""
MAX_LEVEL = DEFINITIONS - 1
NAMES = "abcdefghijklmnopqrstuvwxyz"
END = "."
FILLER = "~"
# Multiplying by an even operand favours even answers, 0 most: always answering 0 is right 14.1-14.8% of
# the time at levels 1-5 (measured on 40,000 random problems a level). That best guess, rounded up, is the
# chance level beside which every figure of this benchmark is read.
ANSWER_CHANCE = 0.15
STEP_ERRORS = ("result", "operation", "pointer", "format")

_DEFINITION_RE = re.compile(r"([a-z])([+*-])([0-9])>([a-z.])")
_PROBLEM_RE = re.compile(r"([0-9])>([a-z])\|((?:[a-z][+*-][0-9]>[a-z.] ?)+)")
_STEP_RE = re.compile(r"([a-z])([+*-])([0-9])=([0-9])>([a-z.])")


@dataclass(frozen=True)
class Chain:
    """A parsed problem: its start value, its first name, and every name's (operator, operand, next name)."""

    start: int
    first: str
    definitions: dict[str, tuple[str, int, str]]

    def operations(self) -> list[str]:
        """The names of the chain's operations, in order."""
        names, name = [], self.first
        while name != END:
            names.append(name)
            name = self.definitions[name][2]
        return names


def apply(value: int, operator: str, operand: int) -> int:
    """value op operand modulo 10."""
    if operator == "+":
        return (value + operand) % 10
    if operator == "-":
        return (value - operand) % 10
    return (value * operand) % 10


def parse(problem: str) -> Chain:
    """Read a problem text; ValueError when it is not one (problems are ours, so a bad one is a bug)."""
    match = _PROBLEM_RE.fullmatch(problem.strip()) if isinstance(problem, str) else None
    if match is None:
        raise ValueError(
            f"not a pointer-chain problem: {problem!r}; expected 'START>NAME|' and definitions like 'f+8>q' "
            "separated by spaces (e.g. '3>f|a*4>. f+8>q q*3>a')"
        )
    definitions = {}
    for name, op, digit, nxt in _DEFINITION_RE.findall(match.group(3)):
        if name in definitions:
            raise ValueError(f"pointer-chain problem {problem!r} defines {name!r} twice")
        definitions[name] = (op, int(digit), nxt)
    chain = Chain(int(match.group(1)), match.group(2), definitions)
    seen, name = set(), chain.first
    while name != END:
        if name not in definitions or name in seen:
            raise ValueError(f"pointer-chain problem {problem!r}: the chain from {chain.first!r} reaches "
                             f"{'an undefined' if name not in definitions else 'a repeated'} name {name!r}")
        seen.add(name)
        name = definitions[name][2]
    return chain


def level_of(problem: str) -> int:
    """A problem's level: the number of operations in its chain, minus one."""
    return len(parse(problem).operations()) - 1


def solve_steps(problem: str) -> list[str]:
    """The correct solution, without fillers: one step per operation of the chain."""
    chain = parse(problem)
    steps, value = [], chain.start
    for name in chain.operations():
        op, operand, nxt = chain.definitions[name]
        value = apply(value, op, operand)
        steps.append(f"{name}{op}{operand}={value}>{nxt}")
    return steps


def _value_of(step: str) -> str:
    """The value a right step writes (``f+8=1>q`` -> ``1``)."""
    return step.split("=")[1][0]


def answer_of(problem: str) -> str:
    """The true answer: the value after the chain's last operation."""
    return _value_of(solve_steps(problem)[-1])


def _check_fillers(fillers: float) -> None:
    if not 0 <= fillers < 1:
        raise ValueError(f"fillers is the probability of one more filler step, in [0, 1); got {fillers!r}")


def with_fillers(steps: Sequence[str], fillers: float, rng: random.Random) -> list[str]:
    """`steps` with filler steps before each one: one more each time with probability `fillers`."""
    out: list[str] = []
    for step in steps:
        while rng.random() < fillers:
            out.append(FILLER)
        out.append(step)
    return out


# ---------------------------------------------------------------------------------------------------------
# Checking written steps (a trained generator's output)


def step_errors(problem: str, steps: Sequence[str]) -> list[str | None]:
    """What is wrong with each written step (None: nothing), judged locally:

    Step i is judged against the value and pointer *written* by the step before it (the problem's start
    value and first name for the first step), so a step that continues correctly from an earlier mistake
    is right. A right step is exactly ``{name}{op}{operand}={value}>{next}`` for the name pointed to, with
    that name's definition. Filler steps (``~``) are right while the chain has not ended. Errors:

    - ``pointer``: the step's name is not the one pointed to, or the next name it writes is not its name's
      (an early ``.`` ends the chain too soon);
    - ``operation``: the name is right, its operator or operand is not the definition's;
    - ``result``: the operation is right, its value wrong (an arithmetic slip);
    - ``format``: not a step, or a step after the chain had ended (or after an unreadable step).
    """
    chain = parse(problem)
    if isinstance(steps, str):
        raise TypeError("steps must be a sequence of step strings, not one string; split it on the step separator")
    errors: list[str | None] = []
    state: tuple[int, str] | None = (chain.start, chain.first)  # (value, pointer); None: nothing to go on from
    for step in steps:
        text = strip_answer_section(step).strip() if isinstance(step, str) else None
        if state is None or state[1] == END or text is None:
            errors.append("format")
            if text is None:
                state = None
            continue
        if text == FILLER:
            errors.append(None)
            continue
        match = _STEP_RE.fullmatch(text)
        if match is None:
            errors.append("format")
            state = None
            continue
        name, op, operand, written, nxt = match.groups()
        value, pointer = state
        defined = chain.definitions.get(name)
        if name != pointer or defined is None:
            errors.append("pointer")
        elif (op, int(operand)) != defined[:2]:
            errors.append("operation")
        elif int(written) != apply(value, op, int(operand)):
            errors.append("result")
        elif nxt != defined[2]:
            errors.append("pointer")
        else:
            errors.append(None)
        state = (int(written), nxt)
    return errors


def check_steps(problem: str, steps: Sequence[str]) -> list[int]:
    """1 for each right step, 0 for each wrong one (`step_errors`)."""
    return [int(error is None) for error in step_errors(problem, steps)]


def is_filler(step: str) -> bool:
    """Whether a written step is a filler: always right, and no reasoning to judge (step AUROC leaves it out)."""
    return isinstance(step, str) and strip_answer_section(step).strip() == FILLER


def _real_steps(steps: Sequence[str]) -> list[str]:
    return [s for s in steps if not is_filler(s)]


def final_answer(steps: Sequence[str]) -> str | None:
    """The value a written solution ends on: its last real step's value if that step points to the end."""
    real = _real_steps(steps) if not isinstance(steps, str) else []
    if not real or not isinstance(real[-1], str):
        return None
    match = _STEP_RE.fullmatch(strip_answer_section(real[-1]).strip())
    return match.group(4) if match is not None and match.group(5) == END else None


def solves(problem: str, completion: str) -> bool:
    """Whether a written solution solves the problem for real: every step right and the chain ended.

    A right final digit reached through wrong steps does not count. Fillers are allowed; the answer
    section after the last step is not judged here (grading reads it)."""
    steps = completion_steps(completion)
    return bool(steps) and all(check_steps(problem, steps)) and final_answer(steps) is not None


def label_steps(problem: str, steps: Sequence[str]) -> tuple[list[int | None], int]:
    """Process labels in the PRM800K convention (`check_steps` up to the first wrong step, None after it),
    and the outcome label: whether the solution's final answer is the true one."""
    return labels_to_first_error(check_steps(problem, steps)), int(final_answer(steps) == answer_of(problem))


# ---------------------------------------------------------------------------------------------------------
# Solutions with one wrong step (reward-model training data)

ERROR_KINDS = ("result", "operation", "pointer")
"""What `corrupt_steps` can write wrong (`step_errors` names a fourth kind, ``format``, that it does not)."""


def corrupt_steps(problem: str, rng: random.Random, position: int | None = None, kind: str = "result") -> tuple[
    list[str], int
]:
    """A solution with exactly one wrong step, and that step's index.

    At `position` (random when None) one step goes wrong, in one of three ways (`kind`):

    - ``result``: the value is replaced by a different digit (an arithmetic slip); later steps continue
      from the written value, so the answer is wrong;
    - ``operation``: the operand (or, for ``+``/``-``, the operator) is not the definition's, and the value
      is computed for what was written; later steps continue from it;
    - ``pointer``: the step points to ``.`` instead of its next name, so the chain ends early, on that
      step's value. This is the error a generator makes on chains longer than any it was trained on. The
      last step already points to ``.``, so `position` is drawn from the others (a level-L chain has L).
    """
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; choose one of {ERROR_KINDS}")
    chain = parse(problem)
    names = chain.operations()
    count = len(names) - 1 if kind == "pointer" else len(names)
    if position is None:
        position = rng.randrange(count)
    elif isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < count:
        raise ValueError(f"position must be a step index in 0..{count - 1} for a {kind} error in {problem!r}, "
                         f"got {position!r}")
    # As solve_steps, with the one wrong step written at `position` and later steps going on from it.
    out, value = [], chain.start
    for index, name in enumerate(names):
        op, operand, nxt = chain.definitions[name]
        wrong = index == position
        if wrong and kind == "operation":
            op, operand = _miscopied_operation(op, operand, rng)
        value = apply(value, op, operand)
        if wrong and kind == "result":
            value = (value + rng.randrange(1, 10)) % 10
        if wrong and kind == "pointer":
            nxt = END
        out.append(f"{name}{op}{operand}={value}>{nxt}")
        if nxt == END:
            break
    return out, position


def _miscopied_operation(op: str, operand: int, rng: random.Random) -> tuple[str, int]:
    """Another operation than (op, operand): a different operand, or the other of ``+``/``-``."""
    if op != "*" and rng.random() < 0.5:
        return ("-" if op == "+" else "+"), operand
    pool = range(2, 10) if op == "*" else range(1, 10)
    return op, rng.choice([d for d in pool if d != operand])


def generate_step_solutions(
    problems: Sequence[Problem],
    wrong_fraction: float = 0.5,
    seed: int = 0,
    error_kinds: Sequence[str] = ("pointer",),
    fillers: float = 0.0,
) -> list[StepSolution]:
    """One step-labelled solution per problem: correct, or with one wrong step (`corrupt_steps`) at a random
    position (`e2h.data.step_solutions.corrupted_solutions`), with filler steps as `with_fillers` puts them.

    Give a reward model's corruptions the fillers its generator writes: a PRM trained on corruptions without
    fillers, beside the generator's own samples with them, learned to check pointers only in solutions without
    fillers (measured in docs/study-tiny.md)."""
    _check_fillers(fillers)
    return corrupted_solutions(sys.modules[__name__], problems, wrong_fraction, seed, error_kinds, fillers)


# ---------------------------------------------------------------------------------------------------------
# Generating problems


def _operation(rng: random.Random) -> tuple[str, int]:
    op = rng.choice("+-*")
    # x*0 and x*1 would make a step's value independent of (or equal to) its input: multiply by 2-9.
    return op, rng.randrange(2, 10) if op == "*" else rng.randrange(1, 10)


def random_problem(level: int, rng: random.Random) -> str:
    """One random level-`level` problem text (its chain, then distractors chained among themselves)."""
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"a pointer-chain level must be an integer in 1..{MAX_LEVEL}, got {level!r}")
    names = rng.sample(NAMES, DEFINITIONS)
    chain, distractors = names[: level + 1], names[level + 1 :]
    definitions = []
    for group in (chain, distractors):
        for i, name in enumerate(group):
            op, operand = _operation(rng)
            definitions.append(f"{name}{op}{operand}>{group[i + 1] if i + 1 < len(group) else END}")
    rng.shuffle(definitions)
    return f"{rng.randrange(10)}>{chain[0]}|" + " ".join(definitions)


def generate_problems(
    n_per_level: int | Mapping[int, int],
    levels: Sequence[int] | None = None,
    seed: int = 0,
    exclude: set[str] | frozenset[str] = frozenset(),
    split: str = "train",
    fillers: float = 0.0,
) -> list[Problem]:
    """Distinct random problems, grouped by level; none equal to a text in `exclude`. Deterministic given
    `seed`. `fillers` > 0 puts random filler steps into the reference solutions (see the module doc)."""
    _check_fillers(fillers)
    rng = random.Random(seed)
    # Fillers draw from their own stream, so the problems are the same whatever `fillers` is.
    filler_rng = random.Random(stable_seed("e2h.chains.fillers", seed))
    problems: list[Problem] = []
    for level, n in counts_per_level(n_per_level, levels):
        seen: set[str] = set()
        k = 0
        while k < n:
            text = random_problem(level, rng)
            if text in seen or text in exclude:
                continue
            seen.add(text)
            reference = solve_steps(text)
            problems.append(
                Problem(
                    problem=text,
                    solution=STEP_SEPARATOR.join(with_fillers(reference, fillers, filler_rng)),
                    answer=_value_of(reference[-1]),
                    level=level,
                    subject=SUBJECT,
                    unique_id=f"{SOURCE}/L{level}/{split}/{k}",
                )
            )
            k += 1
    return problems


def benchmark_splits(
    n_train_per_level: int | Mapping[int, int],
    n_test_per_level: int | Mapping[int, int],
    levels: Sequence[int] | None = None,
    seed: int = 0,
    fillers: float = 0.0,
) -> tuple[list[Problem], list[Problem]]:
    """Train and test problems with disjoint texts. Only the train split's solutions carry fillers (a test
    solution is a reference); the problems themselves do not depend on `fillers`."""
    train = generate_problems(
        n_train_per_level, levels, stable_seed("e2h.chains", seed, "train"), split="train", fillers=fillers
    )
    test = generate_problems(
        n_test_per_level,
        levels,
        stable_seed("e2h.chains", seed, "test"),
        exclude={p.problem for p in train},
        split="test",
    )
    return train, test
