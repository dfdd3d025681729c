"""Problem records in the MATH schema: loading, normalising, difficulty filtering, held-out exclusion.

One normalised record per problem::

    Problem(problem, solution, answer, level: int | None, subject, unique_id)

Accepted sources (all through `datasets`): a Hugging Face dataset id (e.g. ``hendrycks/competition_math``,
hub schema: ``type`` and ``level: "Level 3"``) or a local ``.jsonl`` / ``.json`` / ``.parquet`` file
(PRM800K split schema: ``subject`` and integer ``level``). Both become the same record.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from e2h.data.errors import DataError
from e2h.data.files import require_local_path

log = logging.getLogger(__name__)

T = TypeVar("T")

EASY_LEVELS = (1, 2, 3)
HARD_LEVELS = (4, 5)
ALL_LEVELS = (1, 2, 3, 4, 5)


@dataclasses.dataclass(frozen=True)
class Problem:
    problem: str
    solution: str
    answer: str
    level: int | None
    subject: str
    unique_id: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def difficulty_group(level: int | None) -> str:
    """'easy' for levels 1-3, 'hard' for 4-5, 'unknown' otherwise (the paper's split)."""
    if level in EASY_LEVELS:
        return "easy"
    if level in HARD_LEVELS:
        return "hard"
    return "unknown"


def level_key(level: int | None) -> str:
    """A level's subset key in metrics, reports and TensorBoard tags: ``level_3`` (``level_unknown``)."""
    return "level_unknown" if level is None else f"level_{level}"


def subset_keys(level: int | None) -> tuple[str, str, str]:
    """The subsets a problem of `level` counts in: ``all``, its easy/hard group and its level."""
    return "all", difficulty_group(level), level_key(level)


SUBSET_KEYS = ("all", "easy", "hard", *(level_key(level) for level in ALL_LEVELS))
"""Every subset measured on MATH's levels, in table order."""


# --- normalising raw rows -------------------------------------------------------------------------------

_LEVEL_RE = re.compile(r"^\s*(?:level\s*)?(\d+)\s*$", re.IGNORECASE)
# How a record says its level is not known (MATH has a few "Level ?" problems).
_UNKNOWN_LEVELS = {"", "?", "level ?", "unknown"}


def parse_level(value: Any, where: str = "record") -> int | None:
    """A record's level as an int in 1-5 (MATH's scale): accepts 3, 3.0, "3" and "Level 3". A level stated as
    unknown (missing, null, "", "?" or "Level ?") is None: such records have no place on the easy/hard scale
    and a level filter drops them (counting them). Anything else ("hard", 3.5, 7, -1) is a DataError naming
    `where` (file and line), never a silent None."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _UNKNOWN_LEVELS):
        return None
    level = None
    if isinstance(value, int) and not isinstance(value, bool):
        level = value
    elif isinstance(value, float) and value.is_integer():
        level = int(value)
    elif isinstance(value, str) and (m := _LEVEL_RE.match(value)):
        level = int(m.group(1))
    if level is None or level not in ALL_LEVELS:
        raise DataError(
            f"{where}: level {value!r} is not a level; use an integer 1-5, \"Level N\", or null / \"Level ?\" "
            "for an unknown level"
        )
    return level


def normalize_record(row: Mapping[str, Any], where: str, default_id: str | None = None) -> Problem:
    """One raw row (hub MATH schema or PRM800K split schema) as a Problem.

    ``answer`` comes from the row, else from the solution's last ``\\boxed{}`` / ``# Answer``. Without a
    ``unique_id`` or ``id``, the record's id is `default_id` (else `where`).
    """
    problem = row.get("problem")
    if not isinstance(problem, str) or not problem.strip():
        raise DataError(f"{where}: missing required field 'problem' (fields present: {sorted(k for k, v in row.items() if v is not None)})")
    solution = row.get("solution")
    solution = solution if isinstance(solution, str) else ""
    answer = row.get("answer")
    if answer is None:
        from e2h.grading import extract_answer

        # A reference states its answer (a box or '# Answer'); the free-text guess is for model completions.
        answer = extract_answer(solution, free_text=False) if solution else None
        if answer is None:
            raise DataError(
                f"{where}: no 'answer' field and no final answer (\\boxed{{}} or '# Answer') in 'solution'"
            )
    subject = row.get("subject") or row.get("type") or ""
    unique_id = row.get("unique_id") or row.get("id") or default_id or where
    return Problem(
        problem=problem,
        solution=solution,
        answer=str(answer),
        level=parse_level(row.get("level"), where),
        subject=str(subject),
        unique_id=str(unique_id),
    )


# --- loading --------------------------------------------------------------------------------------------

_LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def _local_builder(source: str) -> str | None:
    from pathlib import Path

    path = Path(source)
    builder = _LOCAL_BUILDERS.get(path.suffix.lower())
    if builder is None:
        if path.exists():
            raise DataError(f"{source}: unsupported file type {path.suffix!r}; use .jsonl, .json or .parquet")
        return None
    if not path.is_file():
        raise DataError(f"{source}: file not found")
    return builder


def _locate_json_error(path: str) -> None:
    """Re-read a JSON-lines file with our own reader so a parse failure names its line."""
    from e2h.data.files import read_jsonl

    try:
        for _ in read_jsonl(path):
            pass
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _is_blank(path: str) -> bool:
    with open(path, "rb") as f:
        return not any(line.strip() for line in f)


def load_rows(source: str, split: str = "train", name: str | None = None) -> Iterable[Mapping[str, Any]]:
    """Rows of a local file or a Hugging Face dataset, loaded through `datasets`."""
    import datasets

    builder = _local_builder(source)
    if builder is None:
        # Not a local file: a hub dataset id (or a dataset folder `datasets` understands). A value that looks
        # like a path is not looked up on the hub (36 s of retries for a typo'd `train.jsnl`).
        require_local_path(source, "data source")
        return datasets.load_dataset(source, name, split=split)
    if builder == "json" and _is_blank(source):
        raise DataError(f"{source}: the file holds no records (it is empty or blank)")
    verbosity = datasets.logging.get_verbosity()
    # datasets logs its own parse error ("Failed to load JSON from file ... in row 1") before raising; the one
    # line below, with the file's line and column, says it better
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        return datasets.load_dataset(builder, data_files={split: source}, split=split)
    except Exception as e:  # datasets wraps parse errors in its own types; find the line ourselves
        if builder == "json" and source.endswith(".jsonl"):
            _locate_json_error(source)
        raise DataError(f"{source}: could not be loaded ({type(e).__name__}: {e})") from e
    finally:
        datasets.logging.set_verbosity(verbosity)


def load_problems(source: str, split: str = "train", name: str | None = None) -> list[Problem]:
    """Load and normalise problem records from a local .jsonl/.json/.parquet file or a hub dataset id."""
    rows = load_rows(source, split=split, name=name)
    # Messages count records from 1, like line numbers; the ids of records without one keep their 0-based
    # index (ids already written to samples files must not change).
    return [normalize_record(row, f"{source}: record {i + 1}", f"{source}: record {i}") for i, row in enumerate(rows)]


# --- selecting --------------------------------------------------------------------------------------------


def count_levels(levels: Iterable[int | None]) -> dict[int | None, int]:
    """How often each level occurs, in level order, None (unknown level) last."""
    counts = Counter(levels)
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def level_counts(problems: Iterable[Problem]) -> dict[int | None, int]:
    """Problems per level, None (unknown level) last."""
    return count_levels(p.level for p in problems)


def filter_levels(
    items: Sequence[T],
    levels: Iterable[int] | None,
    *,
    level_of: Callable[[T], int | None] = operator.attrgetter("level"),
    noun: str = "problem",
    where: str | None = None,
) -> list[T]:
    """Keep the items (problems, step-labelled solutions, samples...) whose level is in `levels` (None keeps all).

    Items of unknown level cannot be placed on the easy/hard scale, so a level filter excludes them and logs
    how many. A filter that keeps nothing is an error naming the levels that exist (and `where`, if given).
    """
    if levels is None:
        return list(items)
    wanted = set(levels)
    prefix = f"{where}: " if where else ""
    kept = [x for x in items if level_of(x) in wanted]
    unknown = sum(level_of(x) is None for x in items)
    if unknown:
        log.warning("%slevel filter %s: excluded %d %s(s) of unknown level", prefix, sorted(wanted), unknown, noun)
    if not kept:
        present = count_levels(level_of(x) for x in items)
        raise DataError(
            f"{prefix}level filter {sorted(wanted)} keeps no {noun}; levels present (level: count): {present}"
        )
    return kept


def normalize_problem_text(text: str) -> str:
    """Problem text compared across splits: whitespace collapsed, so reformatting does not hide a leak."""
    return " ".join(text.split())


def exclude_held_out(problems: Sequence[Problem], held_out: Iterable[Problem]) -> list[Problem]:
    """Drop every problem that appears in `held_out` (e.g. MATH500) by unique_id or by problem text."""
    held = list(held_out)
    ids = {p.unique_id for p in held}
    texts = {normalize_problem_text(p.problem) for p in held}
    kept = [p for p in problems if p.unique_id not in ids and normalize_problem_text(p.problem) not in texts]
    if len(kept) < len(problems):
        log.info("held-out exclusion: removed %d of %d problems", len(problems) - len(kept), len(problems))
    return kept
