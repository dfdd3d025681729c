"""PRM800K to step-labelled solutions (`StepSolution`), the way the easy-to-hard paper prepares PRM data.

Raw PRM800K records (one labelling session a line) hold, for each step of a solution, several rated
candidate completions. Each rated completion becomes one example::

    steps  = [chosen step 1, ..., chosen step k-1, candidate for step k]
    labels = [None,          ..., None,             label of the candidate]

Ratings map to labels as in the official conversion: -1 -> 0, +1 -> 1, and the neutral 0 -> 1 by default
(``neutral="positive"``); ``"negative"`` maps it to 0 and ``"drop"`` skips such examples. Completions
with no rating are skipped. After a step, the prefix grows by the step's ``chosen_completion`` (an index
into its completions), else by its ``human_completion`` (a labeller-written step); when neither exists
the labeller stopped, and so does the walk.

Problem-level selection (shared by both layouts):

* ``levels_of`` maps a normalised problem text (see `e2h.data.records.normalize_problem_text`) to its MATH level; build it with
  `levels_by_problem`. It sets each example's ``level``.
* ``levels``: keep problems whose level is in it, and problems absent from ``levels_of`` (the official rule
  keeps PRM800K problems that are not in the MATH split). A problem present with level ``None`` is dropped.
* ``exclude_problems``: problem texts to drop (MATH500, the held-out test split), compared normalised.
* Exact duplicate examples (same problem text, steps and labels) are dropped; the first is kept.

`convert_files` reads PRM800K files the way ``e2h data prm800k`` does (errors name file:line).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from e2h.data.errors import DataError
from e2h.data.files import read_jsonl
from e2h.data.prompts import answer_section
from e2h.data.records import Problem, load_problems, normalize_problem_text
from e2h.data.step_solutions import StepSolution

NeutralPolicy = Literal["positive", "negative", "drop"]
NEUTRAL_POLICIES: tuple[str, ...] = ("positive", "negative", "drop")

RAW_SOURCE = "prm800k"
STEPWISE_SOURCE = "prm800k-stepwise"


@dataclasses.dataclass
class ConversionCounts:
    """What a conversion read, kept and dropped. Example counts are after the neutral policy."""

    inputs: int = 0  # raw records, or stepwise rows, read
    examples: int = 0  # examples kept
    positive: int = 0  # kept examples whose last label is 1
    negative: int = 0  # kept examples whose last label is 0
    unrated: int = 0  # completions (or rows) with a null rating: skipped
    neutral_dropped: int = 0  # neutral examples skipped under neutral="drop"
    held_out_dropped: int = 0  # examples of a problem in exclude_problems
    level_dropped: int = 0  # examples of a problem whose level is not in `levels`
    duplicates_dropped: int = 0  # exact repeats of a kept example


def levels_by_problem(problems: Iterable[Problem]) -> dict[str, int | None]:
    """Map each problem's normalised text (`e2h.data.records.normalize_problem_text`) to its MATH level (None where unknown).

    When the same text occurs twice the first level is kept."""
    levels: dict[str, int | None] = {}
    for p in problems:
        levels.setdefault(normalize_problem_text(p.problem), p.level)
    return levels


def rating_to_label(rating: int, neutral: NeutralPolicy = "positive") -> int | None:
    """Label of a rated step: -1 -> 0, +1 -> 1, 0 -> 1 / 0 / None (drop) by the neutral policy."""
    if rating == -1:
        return 0
    if rating == 1:
        return 1
    if rating == 0:
        return {"positive": 1, "negative": 0, "drop": None}[neutral]
    raise ValueError(f"rating must be -1, 0 or 1, got {rating!r}")


def _check_neutral(neutral: str) -> None:
    if neutral not in NEUTRAL_POLICIES:
        raise ValueError(f"neutral must be one of {NEUTRAL_POLICIES}, got {neutral!r}")


def _check_rating(value: Any, where: str) -> int | None:
    # bool is an int in Python, but true/false is not a PRM800K rating.
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value in (-1, 0, 1)):
        return value
    raise DataError(f"{where}: must be -1, 0, 1 or null, got {value!r} ({type(value).__name__})")


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """obj[key], checked to be a `kind`; a missing field or a wrong type raises DataError naming it."""
    if not isinstance(obj, Mapping):
        raise DataError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(f"{where}: missing field {key!r} (has {sorted(obj)})")
    value = obj[key]
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}")
    return value


class _Selector:
    """Applies the problem-level rules (held-out, levels) and de-duplication, and counts what it drops."""

    def __init__(
        self,
        levels_of: Mapping[str, int | None] | None,
        levels: Collection[int] | None,
        exclude_problems: Collection[str],
        counts: ConversionCounts,
    ) -> None:
        if levels is not None and levels_of is None:
            # Without a level map every problem counts as "not in MATH" and would be kept: a silent no-op.
            raise ValueError("filtering by levels needs levels_of (a map from problem text to MATH level)")
        self.levels_of = levels_of or {}
        self.levels = None if levels is None else frozenset(levels)
        self.excluded = frozenset(normalize_problem_text(p) for p in exclude_problems)
        self.counts = counts
        self.seen: set[tuple[str, tuple[str, ...], tuple[int | None, ...]]] = set()
        self.kept: list[StepSolution] = []

    def level(self, problem: str) -> int | None:
        return self.levels_of.get(normalize_problem_text(problem))

    def offer(self, example: StepSolution) -> None:
        """Keep the example unless its problem is held out, of a level not asked for, or it is a repeat."""
        key = normalize_problem_text(example.problem)
        if key in self.excluded:
            self.counts.held_out_dropped += 1
            return
        if self.levels is not None and key in self.levels_of and self.levels_of[key] not in self.levels:
            self.counts.level_dropped += 1
            return
        identity = (example.problem, example.steps, example.labels)
        if identity in self.seen:
            self.counts.duplicates_dropped += 1
            return
        self.seen.add(identity)
        self.kept.append(example)
        self.counts.examples += 1
        if example.labels[-1] == 1:
            self.counts.positive += 1
        else:
            self.counts.negative += 1


def _walk_record(
    record: Any, index: int, where: str, neutral: NeutralPolicy, selector: _Selector
) -> None:
    """Offer every rated completion of one raw record to the selector (see the module docstring)."""
    question = _field(record, "question", Mapping, where)
    problem = _field(question, "problem", str, f"{where}: question")
    answer = question.get("ground_truth_answer")
    answer = None if answer is None else str(answer)
    steps = _field(_field(record, "label", Mapping, where), "steps", list, f"{where}: label")
    level = selector.level(problem)

    prefix: list[str] = []
    for s, step in enumerate(steps):
        at = f"{where}: label.steps[{s}]"
        completions = _field(step, "completions", list, at)
        for c, completion in enumerate(completions):
            at_c = f"{at}.completions[{c}]"
            text = _field(completion, "text", str, at_c)
            rating = _check_rating(_field(completion, "rating", object, at_c), f"{at_c}.rating")
            if rating is None:
                selector.counts.unrated += 1
                continue
            label = rating_to_label(rating, neutral)
            if label is None:
                selector.counts.neutral_dropped += 1
                continue
            selector.offer(
                StepSolution(
                    problem=problem,
                    steps=(*prefix, text),
                    labels=(*([None] * len(prefix)), label),
                    answer=answer,
                    level=level,
                    unique_id=f"{RAW_SOURCE}/{index}/{s}/{c}",
                    source=RAW_SOURCE,
                )
            )
        chosen = step.get("chosen_completion")
        human = step.get("human_completion")
        if chosen is not None:
            if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(completions):
                raise DataError(
                    f"{at}.chosen_completion: must be null or an index below {len(completions)}, got {chosen!r}"
                )
            prefix.append(completions[chosen]["text"])
        elif human is not None:
            prefix.append(_field(human, "text", str, f"{at}.human_completion"))
        else:
            # No step was accepted here: the labeller ended the solution (error found, gave up, or done).
            break


_Walker = Callable[[Any, int, str, NeutralPolicy, _Selector], None]


def _convert(
    located: Iterable[tuple[str, Any]],
    walk: _Walker,
    neutral: NeutralPolicy,
    levels_of: Mapping[str, int | None] | None,
    levels: Collection[int] | None,
    exclude_problems: Collection[str],
) -> tuple[list[StepSolution], ConversionCounts]:
    """Run `walk` over (location for errors, record) pairs through one selector."""
    _check_neutral(neutral)
    counts = ConversionCounts()
    selector = _Selector(levels_of, levels, exclude_problems, counts)
    for index, (where, record) in enumerate(located):
        walk(record, index, where, neutral, selector)
        counts.inputs += 1
    return selector.kept, counts


def convert_raw_with_counts(
    records: Iterable[Mapping[str, Any]],
    *,
    neutral: NeutralPolicy = "positive",
    levels_of: Mapping[str, int | None] | None = None,
    levels: Collection[int] | None = None,
    exclude_problems: Collection[str] = (),
    where: str = "prm800k",
) -> tuple[list[StepSolution], ConversionCounts]:
    """`convert_raw`, also returning the counts of what was kept and dropped."""
    # Errors name the record 1-based: its line, for a jsonl file without blank lines.
    located = ((f"{where}: record {i + 1}", r) for i, r in enumerate(records))
    return _convert(located, _walk_record, neutral, levels_of, levels, exclude_problems)


def convert_raw(
    records: Iterable[Mapping[str, Any]],
    *,
    neutral: NeutralPolicy = "positive",
    levels_of: Mapping[str, int | None] | None = None,
    levels: Collection[int] | None = None,
    exclude_problems: Collection[str] = (),
    where: str = "prm800k",
) -> list[StepSolution]:
    """Raw PRM800K records -> one `StepSolution` per rated completion (rules in the module docstring).

    ``unique_id`` is ``prm800k/{record index, 0-based}/{step index}/{completion index}``; ``answer`` is the
    question's ``ground_truth_answer``; ``level`` comes from ``levels_of``; ``outcome`` is None (PRM800K
    rates steps, not whole solutions). A malformed record raises DataError naming ``where``, the record
    (1-based) and the field."""
    examples, _ = convert_raw_with_counts(
        records,
        neutral=neutral,
        levels_of=levels_of,
        levels=levels,
        exclude_problems=exclude_problems,
        where=where,
    )
    return examples


def _stepwise_example(row: Any, index: int, where: str, neutral: NeutralPolicy, selector: _Selector) -> None:
    """Offer one stepwise-critique row to the selector (null-rated and neutral-dropped rows are counted)."""
    problem = _field(row, "instruction", str, where)
    responses = _field(row, "responses", list, where)
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise DataError(f"{where}: responses[{i}] must be a string, got {type(r).__name__}")
    text = _field(row, "next_response", str, where)
    stated = _field(row, "answer", (str, type(None)), where)
    rating = _check_rating(_field(row, "rating", object, where), f"{where}: field 'rating'")
    if rating is None:  # a human-written step, or an unrated candidate
        selector.counts.unrated += 1
        return
    label = rating_to_label(rating, neutral)
    if label is None:
        selector.counts.neutral_dropped += 1
        return
    if stated is not None:
        # This layout moved the step's "# Answer" block into `answer`; put it back so the step reads as
        # the raw PRM800K step (and as e2h's solution format).
        text = text + answer_section(stated)
    selector.offer(
        StepSolution(
            problem=problem,
            steps=(*responses, text),
            labels=(*([None] * len(responses)), label),
            answer=None,  # the layout carries no ground-truth answer
            level=selector.level(problem),
            unique_id=f"{STEPWISE_SOURCE}/{index}",
            source=STEPWISE_SOURCE,
        )
    )


def convert_stepwise_critique_with_counts(
    rows: Iterable[Mapping[str, Any]],
    *,
    neutral: NeutralPolicy = "positive",
    levels_of: Mapping[str, int | None] | None = None,
    levels: Collection[int] | None = None,
    exclude_problems: Collection[str] = (),
    where: str = "prm800k-stepwise",
) -> tuple[list[StepSolution], ConversionCounts]:
    """`convert_stepwise_critique`, also returning the counts of what was kept and dropped."""
    located = ((f"{where}: row {i + 1}", r) for i, r in enumerate(rows))
    return _convert(located, _stepwise_example, neutral, levels_of, levels, exclude_problems)


def convert_stepwise_critique(
    rows: Iterable[Mapping[str, Any]],
    *,
    neutral: NeutralPolicy = "positive",
    levels_of: Mapping[str, int | None] | None = None,
    levels: Collection[int] | None = None,
    exclude_problems: Collection[str] = (),
    where: str = "prm800k-stepwise",
) -> list[StepSolution]:
    """Rows of the "stepwise critique" layout (PRM800K phase-1 test, denormalised) -> `StepSolution`s.

    The only copy available here is on MATH500 problems: use it for format and pipeline tests, never
    for training (it would contaminate MATH500 evaluation).

    Each row is one candidate step: ``instruction`` (problem), ``responses`` (the earlier chosen steps, a
    list of strings), ``next_response`` (the candidate), ``answer`` (the candidate's own stated final
    answer, split off its text; it is put back as ``"\\n\\n# Answer\\n\\n{answer}"``), ``rating``. Labels
    follow the same mapping as `convert_raw`; null-rated rows (human-written steps) are skipped; the
    problem selection and de-duplication rules are the same. ``answer`` is None (no ground truth in this
    layout); ``unique_id`` is ``prm800k-stepwise/{row index, 0-based}``."""
    examples, _ = convert_stepwise_critique_with_counts(
        rows,
        neutral=neutral,
        levels_of=levels_of,
        levels=levels,
        exclude_problems=exclude_problems,
        where=where,
    )
    return examples


def jsonl_files(path: str | Path | Iterable[str | Path]) -> list[Path]:
    """A file, a folder (its ``*.jsonl`` files, sorted) or a list of either, as a list of files."""
    if isinstance(path, (str, Path)):
        p = Path(path)
        if p.is_dir():
            files = sorted(p.glob("*.jsonl"))
            if not files:
                raise DataError(f"{p}: folder holds no .jsonl files")
            return files
        return [p]
    return [f for item in path for f in jsonl_files(item)]


def _read_located(path: str | Path | Iterable[str | Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    for file in jsonl_files(path):
        for lineno, obj in read_jsonl(file):
            yield f"{file}:{lineno}", obj


def read_raw(path: str | Path | Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """Raw PRM800K records from a jsonl file, a folder of ``*.jsonl`` files, or a list of those
    (malformed JSON raises DataError naming file:line)."""
    for _, obj in _read_located(path):
        yield obj


def _problem_levels_from_file(path: str) -> dict[str, int | None]:
    """Level map from a MATH-schema problem file (any source `load_problems` reads)."""
    return levels_by_problem(load_problems(path))


def _problems_from_file(path: str) -> set[str]:
    return {p.problem for p in load_problems(path)}


def convert_files(
    paths: str | Path | Iterable[str | Path],
    *,
    layout: Literal["raw", "stepwise"] = "raw",
    neutral: NeutralPolicy = "positive",
    math: str | None = None,
    levels: Collection[int] | None = None,
    exclude: str | None = None,
) -> tuple[list[StepSolution], ConversionCounts]:
    """Convert PRM800K files (a file, a folder of ``*.jsonl`` files, or a list of those) in the raw or the
    stepwise-critique layout. `math` is a MATH-schema problem file giving each problem's level (needed by
    `levels`); `exclude` a problem file to drop (e.g. MATH500). Errors name the file and line."""
    if levels is not None and math is None:
        raise ValueError("filtering by levels needs the MATH problem file that gives each problem's level")
    levels_of = _problem_levels_from_file(math) if math else None
    excluded = _problems_from_file(exclude) if exclude else set()
    walk = _walk_record if layout == "raw" else _stepwise_example
    return _convert(_read_located(paths), walk, neutral, levels_of, levels, excluded)
