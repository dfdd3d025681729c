"""Step-labelled solutions: the one schema ORM, PRM and OPRM training reads.

A solution is a list of steps (joined by a blank line, the paper's step separator). Each step carries a
label: 1 (good), 0 (bad) or None (not supervised, e.g. the already-rated prefix of a PRM800K example).
``outcome`` is the optional solution-level label (final answer correct?), used by ORM and OPRM.

JSONL layout, one solution a line::

    {"problem": "...", "steps": ["...", "..."], "labels": [1, null], "outcome": 0,
     "answer": "7", "level": 2, "unique_id": "...", "source": "prm800k"}
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from e2h.data.errors import DataError
from e2h.data.files import atomic_write_jsonl, read_jsonl
from e2h.data.prompts import ANSWER_HEADING, STEP_SEPARATOR, answer_section
from e2h.data.records import parse_level


def split_steps(solution: str) -> list[str]:
    """The steps of a solution text: the chunks between blank lines.

    The paper's answer section (``# Answer`` then the answer) is attached to the step before it, so the last
    step's score is read after the final answer. So ``"a\n\nb\n\n# Answer\n\n3"`` has two steps, ``"a"``
    and ``"b\n\n# Answer\n\n3"``; joining the steps with `STEP_SEPARATOR` gives the text back. (PRM800K's
    records keep ``# Answer\n\nX`` as a rated step of its own: a reward model trained on them is read, on a
    sampled completion, at the answer's end, where its answer step was trained, but not separately at the
    end of the step before it.)
    """
    chunks = solution.split(STEP_SEPARATOR)
    steps: list[str] = []
    attach = False  # the chunk after a "# Answer" heading belongs to the answer section too
    for chunk in chunks:
        if steps and (attach or chunk.strip() == ANSWER_HEADING):
            steps[-1] += STEP_SEPARATOR + chunk
            attach = chunk.strip() == ANSWER_HEADING
        else:
            steps.append(chunk)
    return steps


def strip_answer_section(step: str) -> str:
    """A step without the answer section attached to it (see `split_steps`)."""
    head, found, _ = step.partition(STEP_SEPARATOR + ANSWER_HEADING)
    return head if found else step


def step_char_spans(steps: Sequence[str], separator: str = STEP_SEPARATOR) -> list[tuple[int, int]]:
    """Character span ``[start, end)`` of every step in ``separator.join(steps)`` (an empty step: start == end)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for step in steps:
        spans.append((start, start + len(step)))
        start += len(step) + len(separator)
    return spans


def completion_step_spans(completion: str) -> list[tuple[int, int]]:
    """Character spans in `completion` of the steps a reward model scores: `split_steps`, blank chunks dropped.

    A generator can write more than one blank line between steps; the chunks between them are blank and
    have no content to judge (nor, for some tokenizers, a token of their own to read a score at), so they
    are not steps.
    """
    steps = split_steps(completion)
    return [span for step, span in zip(steps, step_char_spans(steps)) if step.strip()]


def completion_steps(completion: str) -> list[str]:
    """The steps a reward model scores in a sampled completion (see `completion_step_spans`). Scoring reads
    them joined by the step separator."""
    return [completion[start:end] for start, end in completion_step_spans(completion)]


def labels_to_first_error(checks: Sequence[int]) -> list[int | None]:
    """Step labels in the PRM800K convention from per-step checks (1 right, 0 wrong): every check up to and
    including the first wrong step, None after it (labelling stops at the first error, as PRM800K's raters
    did)."""
    labels: list[int | None] = list(checks)
    if 0 in labels:
        first_wrong = labels.index(0)
        labels[first_wrong + 1 :] = [None] * (len(labels) - first_wrong - 1)
    return labels


def _check_label(value: Any, what: str) -> int | None:
    # bool is an int subclass; JSON true/false is accepted as 1/0, anything else must be 0, 1 or null.
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    raise DataError(f"{what} must be 0, 1 or null, got {value!r} ({type(value).__name__})")


@dataclasses.dataclass(frozen=True)
class StepSolution:
    problem: str
    steps: tuple[str, ...]
    labels: tuple[int | None, ...]
    outcome: int | None = None
    answer: str | None = None
    level: int | None = None
    unique_id: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        where = f"step-labelled record {self.unique_id or '<no unique_id>'}"
        if not isinstance(self.problem, str):
            raise DataError(f"{where}: 'problem' must be the problem's text, got {self.problem!r}")
        if not isinstance(self.steps, (list, tuple)) or not all(isinstance(s, str) for s in self.steps):
            raise DataError(f"{where}: 'steps' must be a list of strings")
        if not isinstance(self.labels, (list, tuple)):
            raise DataError(f"{where}: 'labels' must be a list, got {type(self.labels).__name__}")
        if len(self.labels) != len(self.steps):
            raise DataError(
                f"{where}: {len(self.steps)} steps but {len(self.labels)} labels; give one label (0, 1 or null) per step"
            )
        labels = tuple(_check_label(v, f"{where}: labels[{i}]") for i, v in enumerate(self.labels))
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "outcome", _check_label(self.outcome, f"{where}: 'outcome'"))

    @property
    def solution(self) -> str:
        """The solution text as the model reads it: steps joined by the step separator."""
        return STEP_SEPARATOR.join(self.steps)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["steps"], d["labels"] = list(self.steps), list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "record") -> StepSolution:
        for field in ("problem", "steps", "labels"):
            if field not in d:
                raise DataError(f"{where}: missing required field {field!r} (has {sorted(d)})")
        try:
            return cls(
                problem=d["problem"],
                steps=d["steps"],
                labels=d["labels"],
                outcome=d.get("outcome"),
                answer=d.get("answer"),
                level=parse_level(d.get("level"), where),
                unique_id=str(d.get("unique_id") or ""),
                source=str(d.get("source") or ""),
            )
        except DataError as e:
            raise DataError(f"{where}: {e}") from None


def read_step_solutions(path: str | Path) -> Iterator[StepSolution]:
    """Read a step-labelled JSONL file; errors name the file and line."""
    for lineno, d in read_jsonl(path):
        yield StepSolution.from_dict(d, f"{path}:{lineno}")


def write_step_solutions(solutions: Iterable[StepSolution], path: str | Path) -> int:
    """Write step-labelled records as JSONL (atomically: a temporary file renamed into place)."""
    return atomic_write_jsonl((s.to_dict() for s in solutions), path)


def corrupted_solutions(
    benchmark: ModuleType,
    problems: Sequence[Any],
    wrong_fraction: float,
    seed: int,
    error_kinds: Sequence[str],
    fillers: float = 0.0,
) -> list[StepSolution]:
    """One step-labelled solution per problem of a generated benchmark: correct, or with one wrong step.

    `benchmark` is the benchmark's module (`e2h.data.synthetic` or `e2h.data.chains`): its ``ERROR_KINDS``,
    ``corrupt_steps``, ``solve_steps``, ``final_answer``, ``label_steps``, ``answer_of`` and ``SOURCE``.
    Exactly round(wrong_fraction * len(problems)) solutions, chosen at random, are corrupted, each with an
    error kind drawn uniformly from `error_kinds`. Labels and outcome come from checking the written steps
    (``label_steps``), not from knowing where the error was put. `fillers` > 0 puts filler steps into every
    solution (``benchmark.with_fillers``, pointer chains only), drawn from their own random stream so that the
    same solutions go wrong in the same way whatever `fillers` is.
    """
    kinds = benchmark.ERROR_KINDS
    unknown = [k for k in error_kinds if k not in kinds]
    if not error_kinds or unknown:
        raise ValueError(f"error_kinds must be a non-empty list of {kinds}, got {list(error_kinds)!r}")
    if isinstance(wrong_fraction, bool) or not isinstance(wrong_fraction, (int, float)) or not 0 <= wrong_fraction <= 1:
        raise ValueError(f"wrong_fraction must be a number in [0, 1], got {wrong_fraction!r}")
    rng = random.Random(seed)
    filler_rng = random.Random(f"fillers/{seed}")
    wrong = set(rng.sample(range(len(problems)), round(wrong_fraction * len(problems))))
    solutions: list[StepSolution] = []
    for i, problem in enumerate(problems):
        text = problem.problem
        try:
            if i in wrong:
                kind = error_kinds[0] if len(error_kinds) == 1 else rng.choice(list(error_kinds))
                steps = benchmark.corrupt_steps(text, rng, kind=kind)[0]
            else:
                steps = benchmark.solve_steps(text)
        except ValueError as e:
            raise ValueError(f"problem {problem.unique_id or i}: {e}") from None
        if fillers:
            steps = benchmark.with_fillers(steps, fillers, filler_rng)
        # The solution as the generator writes it (SFT format): the answer section ends the last step.
        steps[-1] += answer_section(benchmark.final_answer(steps))
        labels, outcome = benchmark.label_steps(text, steps)
        solutions.append(
            StepSolution(
                problem=text,
                steps=tuple(steps),
                labels=tuple(labels),
                outcome=outcome,
                answer=benchmark.answer_of(text),
                level=problem.level,
                unique_id=problem.unique_id,
                source=benchmark.SOURCE,
            )
        )
    return solutions
