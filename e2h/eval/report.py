"""`e2h data report`: re-ranking accuracy against N, by level and easy/hard, from sampled and scored solutions.

Inputs: the samples JSONL written by `e2h predict`, and one scored samples JSONL per reward model (the same
lines plus ``steps``, ``step_scores`` and the solution ``score``), named on the command line
(``--scores orm=PATH prm=PATH``). Each scored file must cover exactly the samples of the samples file.

Outputs (``--out DIR``, each written atomically): ``report.md`` (one table per subset, methods by N),
``report.csv`` and ``report.json`` (one row per method, N and subset), ``accuracy_vs_n.png`` (easy / hard
/ all panels), and optionally TensorBoard scalars ``rerank/{subset}/{method}`` at step N. Where the problems have
an exact step checker (the generated benchmarks), the Markdown, the JSON (``step_auroc``) and TensorBoard also
hold each scorer's step AUROC by level and error kind, beside the step position's own (`e2h.eval.step_auroc`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from e2h.data.errors import DataError
from e2h.data.files import atomic_write_text, read_jsonl
from e2h.data.records import parse_level
from e2h.data.samples import read_samples
from e2h.eval.plots import new_figure, save_figure
from e2h.eval.reranking import (
    MAX_EXHAUSTIVE_SUBSETS,
    GradingCache,
    ProblemSamples,
    accuracy_by_subset,
    methods_for,
    ns_up_to,
)
from e2h.eval.step_auroc import format_step_auroc, labelled_steps, step_auroc

SCORED_FIELDS = ("problem_id", "sample_index", "score")
#: Scorer names become part of method names ("weighted:orm") and TensorBoard tags.
SCORER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
#: The panels of the plot, in order.
PLOT_PANELS = ("easy", "hard", "all")
OUTPUT_FILES = ("report.md", "report.csv", "report.json", "accuracy_vs_n.png")


# --------------------------------------------------------------------------------------------------
# Reading and matching the inputs
# --------------------------------------------------------------------------------------------------

SampleIndex = dict[str, dict[Any, int]]  # problem id -> sample_index -> position in the problem's rows


def _require_file(path: str | Path) -> None:
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")


def index_samples(path: str | Path, by_problem: Mapping[str, Sequence[Mapping[str, Any]]]) -> SampleIndex:
    """Position of every (problem id, sample_index) in its problem's rows; a repeated pair is a DataError."""
    index: SampleIndex = {}
    for pid, rows in by_problem.items():
        positions: dict[Any, int] = {}
        for pos, row in enumerate(rows):
            key = row["sample_index"]
            if key in positions:
                raise DataError(f"{path}: problem {pid!r} has sample_index {key!r} more than once")
            positions[key] = pos
        index[pid] = positions
    return index


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_scores(
    name: str, path: str | Path, samples_path: str | Path, index: SampleIndex, rows: Iterable[tuple[int, dict]]
) -> dict[str, list[float]]:
    """One scorer's solution scores, laid out like the samples (problem id -> score per sample position), from
    the (line number, row) pairs of its scored file at `path`.

    Every line must name a sample of the samples file and carry a finite ``score``; every sample must be
    scored exactly once. Errors name the file and line (or the scorer and how many samples are missing).
    """
    scores: dict[str, list[float | None]] = {pid: [None] * len(pos) for pid, pos in index.items()}
    first_line: dict[tuple[str, int], int] = {}
    for lineno, row in rows:
        missing = [f for f in SCORED_FIELDS if f not in row]
        if missing:
            raise DataError(f"{path}:{lineno}: scored sample is missing field(s) {missing}")
        pid, key = str(row["problem_id"]), row["sample_index"]
        if pid not in index:
            raise DataError(f"{path}:{lineno}: problem_id {pid!r} is not in the samples file {samples_path}")
        if key not in index[pid]:
            raise DataError(
                f"{path}:{lineno}: problem_id {pid!r} has no sample_index {key!r} in the samples file {samples_path} "
                f"(it has {len(index[pid])} samples)"
            )
        if not _is_finite_number(row["score"]):
            raise DataError(f"{path}:{lineno}: field 'score' must be a finite number, got {row['score']!r}")
        pos = index[pid][key]
        if (pid, pos) in first_line:
            raise DataError(
                f"{path}:{lineno}: problem_id {pid!r} sample_index {key!r} is scored twice (first on line {first_line[pid, pos]})"
            )
        first_line[pid, pos] = lineno
        scores[pid][pos] = float(row["score"])
    unscored = [(pid, pos) for pid, values in scores.items() for pos, v in enumerate(values) if v is None]
    if unscored:
        total = sum(len(values) for values in scores.values())
        pid, pos = unscored[0]
        key = next(k for k, p in index[pid].items() if p == pos)
        raise DataError(
            f"scorer {name!r} ({path}): {len(unscored)} of {total} samples in {samples_path} have no score "
            f"(first: problem_id {pid!r} sample_index {key!r})"
        )
    return scores  # type: ignore[return-value]  # no None left, checked above


def load_scored_problems(
    samples_path: str | Path, scores: Mapping[str, str | Path]
) -> tuple[list[ProblemSamples], int, dict[str, dict[str, Any]]]:
    """The graded problems with each scorer's scores, how many problems were left out for lack of gold, and
    each scorer's step AUROC on the samples' own steps (`e2h.eval.step_auroc`; scorers of problems without an
    exact step checker have none). Each scored file is read once."""
    _require_file(samples_path)
    for name in scores:
        if not SCORER_NAME.match(name):
            raise DataError(f"scorer name {name!r}: use letters, digits, '_', '.' or '-'")
    by_problem = read_samples(samples_path)
    index = index_samples(samples_path, by_problem)
    scored, step_figures = {}, {}
    for name, path in scores.items():
        _require_file(path)
        lines = list(read_jsonl(path))  # (line number, row): one read serves the scores and the step AUROC
        scored[name] = read_scores(name, path, samples_path, index, lines)
        steps = labelled_steps(row for _, row in lines)
        if steps:
            step_figures[name] = step_auroc(steps)
    problems: list[ProblemSamples] = []
    no_gold = 0
    for pid, rows in by_problem.items():
        gold = rows[0]["gold"]
        if gold is None:
            no_gold += 1  # cannot be graded; the report says how many
            continue
        problems.append(
            ProblemSamples(
                problem_id=pid,
                level=parse_level(rows[0]["level"]),
                gold=str(gold),
                answers=tuple(None if r["answer"] is None else str(r["answer"]) for r in rows),
                scores={name: tuple(values[pid]) for name, values in scored.items()},
            )
        )
    if not problems:
        raise DataError(f"{samples_path}: no problem has a gold answer, so nothing can be graded")
    return problems, no_gold, step_figures


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRow:
    """Accuracy (a fraction) of one method at one N on one subset ("level_3", "easy", "hard", "all")."""

    method: str
    n: int
    subset: str
    accuracy: float
    problems: int


@dataclass
class Report:
    """Re-ranking accuracies and what they were computed from."""

    samples: str
    scorers: dict[str, str]
    n_max: int
    ns: list[int]
    num_subsets: int
    seed: int
    methods: list[str]
    subsets: list[str]  # table order
    problems: dict[str, int]  # problems per subset
    rows: list[ReportRow] = field(default_factory=list)
    no_gold: int = 0  # problems left out: no gold answer
    samples_per_problem: tuple[int, int] = (0, 0)  # fewest, most
    grader_calls: int = 0
    # scorer -> its step AUROC on the samples' own steps, where the problems have an exact step checker
    step_auroc: dict[str, dict[str, Any]] = field(default_factory=dict)

    def accuracy(self, method: str, n: int, subset: str) -> float:
        """The accuracy of one table cell; KeyError when the report has no such cell."""
        for row in self.rows:
            if (row.method, row.n, row.subset) == (method, n, subset):
                return row.accuracy
        raise KeyError((method, n, subset))


def subset_order(labels: Sequence[str]) -> list[str]:
    """Levels in numeric order, then easy, hard, unknown and all (those present)."""
    levels = [s for s in labels if s.startswith("level_")]

    def number(label: str) -> tuple[int, int]:
        suffix = label.removeprefix("level_")
        return (0, int(suffix)) if suffix.isdigit() else (1, 0)

    return sorted(levels, key=number) + [s for s in ("easy", "hard", "unknown", "all") if s in labels]


def choose_ns(requested: Sequence[int] | None, n_max: int) -> list[int]:
    """The N values: `requested` sorted without repeats, or powers of two up to N_max (and N_max)."""
    if not requested:
        return ns_up_to(n_max)
    bad = [n for n in requested if not 1 <= n <= n_max]
    if bad:
        raise DataError(f"N {bad} outside 1..{n_max} (N_max: the fewest samples any graded problem has)")
    return sorted(set(requested))


def build_report(
    samples_path: str | Path,
    scores: Mapping[str, str | Path],
    ns: Sequence[int] | None = None,
    num_subsets: int = 20,
    seed: int = 0,
    *,
    exhaustive: bool = False,
) -> Report:
    """Accuracy of every method at every N on every subset, from a samples file and its scored files.

    N_max is the fewest samples a graded problem has (normally all have the same number). The grader's
    answers are cached across methods, N and subsets.
    """
    if num_subsets < 1:
        raise DataError(f"num_subsets must be at least 1, got {num_subsets}")
    problems, no_gold, step_figures = load_scored_problems(samples_path, scores)
    counts = [len(p.answers) for p in problems]
    n_max = min(counts)
    chosen_ns = choose_ns(ns, n_max)
    if exhaustive:
        too_many = [n for n in chosen_ns if math.comb(max(counts), n) > MAX_EXHAUSTIVE_SUBSETS]
        if too_many:
            raise DataError(
                f"--exhaustive: N {too_many} give more than {MAX_EXHAUSTIVE_SUBSETS} subsets of {max(counts)} samples; "
                "use random subsets (--subsets) for these"
            )
    methods = methods_for(scores)
    cache = GradingCache()
    rows: list[ReportRow] = []
    problems_per_subset: dict[str, int] = {}
    for method in methods:
        for n in chosen_ns:
            by_subset = accuracy_by_subset(problems, method, n, num_subsets, seed, exhaustive=exhaustive, cache=cache)
            for subset, (acc, count) in by_subset.items():
                rows.append(ReportRow(method, n, subset, acc, count))
                problems_per_subset[subset] = count
    order = subset_order(list(problems_per_subset))
    rank = {s: i for i, s in enumerate(order)}
    rows.sort(key=lambda r: (rank[r.subset], methods.index(r.method), r.n))
    return Report(
        samples=str(samples_path),
        scorers={name: str(path) for name, path in scores.items()},
        n_max=n_max,
        ns=chosen_ns,
        num_subsets=num_subsets,
        seed=seed,
        methods=methods,
        subsets=order,
        problems={s: problems_per_subset[s] for s in order},
        rows=rows,
        no_gold=no_gold,
        samples_per_problem=(min(counts), max(counts)),
        grader_calls=cache.calls,
        step_auroc=step_figures,
    )


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------


def header_line(report: Report) -> str:
    """One line: samples file, scorers, N_max, problems per subset, subsets per N and seed."""
    scorers = ", ".join(f"{name} (`{path}`)" for name, path in report.scorers.items()) or "none"
    problems = ", ".join(f"{s}: {c}" for s, c in report.problems.items())
    parts = [
        f"samples: `{report.samples}`",
        f"scorers: {scorers}",
        f"N_max: {report.n_max}",
        f"problems: {problems}",
        f"subsets per N: {report.num_subsets}",
        f"seed: {report.seed}",
    ]
    low, high = report.samples_per_problem
    if low != high:
        parts.append(f"samples per problem: {low}-{high} (N_max is the fewest)")
    if report.no_gold:
        parts.append(f"left out: {report.no_gold} problem(s) without a gold answer")
    return " · ".join(parts)


def format_markdown(report: Report) -> str:
    """The header line, then one table per subset: methods as rows, N as columns, accuracy in percent; then
    each scorer's step AUROC, where the problems have an exact step checker."""
    lines = ["# Re-ranking accuracy", "", header_line(report)]
    cells = {(r.subset, r.method, r.n): r.accuracy for r in report.rows}
    for subset in report.subsets:
        lines += ["", f"## {subset} ({report.problems[subset]} problems)", ""]
        lines.append("| method | " + " | ".join(f"N={n}" for n in report.ns) + " |")
        lines.append("|---|" + "---:|" * len(report.ns))
        for method in report.methods:
            values = " | ".join(f"{cells[subset, method, n]:.1%}" for n in report.ns)
            lines.append(f"| {method} | {values} |")
    text = "\n".join(lines) + "\n"
    for name, figures in report.step_auroc.items():
        text += "\n" + format_step_auroc(name, figures)
    return text


def format_csv(report: Report) -> str:
    """One line per (method, N, subset): method, n, subset, accuracy (a fraction), problems."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "n", "subset", "accuracy", "problems"])
    for r in report.rows:
        writer.writerow([r.method, r.n, r.subset, repr(r.accuracy), r.problems])
    return buf.getvalue()


def format_json(report: Report) -> str:
    """The whole report (settings, problems per subset, rows) as indented JSON."""
    data = asdict(report)
    data["samples_per_problem"] = list(report.samples_per_problem)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_markdown(report: Report, path: str | Path) -> None:
    atomic_write_text(format_markdown(report), path)


def write_csv(report: Report, path: str | Path) -> None:
    atomic_write_text(format_csv(report), path)


def write_json(report: Report, path: str | Path) -> None:
    atomic_write_text(format_json(report), path)


def write_plot(report: Report, path: str | Path) -> None:
    """PNG of accuracy against N (log2 axis), one line per method, one panel per easy / hard / all.

    Drawn on a bare Agg canvas (no pyplot), so it neither needs a display nor changes the process's
    matplotlib backend; saved under a temporary name and renamed into place.
    """
    from matplotlib.ticker import FixedLocator, NullLocator, PercentFormatter

    fig, axes = new_figure((5 * len(PLOT_PANELS), 4.2), len(PLOT_PANELS), sharey=True)
    cells = {(r.subset, r.method, r.n): r.accuracy for r in report.rows}
    for ax, subset in zip(axes, PLOT_PANELS):
        count = report.problems.get(subset, 0)
        ax.set_title(f"{subset} ({count} problems)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N (samples per problem)")
        ax.grid(alpha=0.3)
        if not count:
            ax.text(0.5, 0.5, "no problems", ha="center", va="center", transform=ax.transAxes)
            continue
        for method in report.methods:
            # The baseline and the ceiling frame the re-ranking methods: draw them dashed.
            style = "--" if method in ("mean", "pass") else "-"
            ys = [100 * cells[subset, method, n] for n in report.ns]
            ax.plot(report.ns, ys, style, marker="o", markersize=3, label=method)
        ax.xaxis.set_major_locator(FixedLocator(report.ns))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(n) for n in report.ns])
    axes[0].set_ylabel("accuracy")
    axes[0].yaxis.set_major_formatter(PercentFormatter())
    axes[0].set_ylim(-2, 102)
    handles, labels = next(((a.get_legend_handles_labels()) for a in axes if a.lines), ([], []))
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize="small")
    save_figure(fig, path)


def log_tensorboard(report: Report, log_dir: str | Path) -> None:
    """Every accuracy as a TensorBoard scalar: tag ``rerank/{subset}/{method}``, step N. Each scorer's step AUROC
    by subset as ``step_auroc/{subset}/{scorer}``, beside the step position's own (the reference; it depends on
    the labels only, so it is the same for every scorer) as ``step_auroc/{subset}/position_alone``, at step 0."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for r in report.rows:
            writer.add_scalar(f"rerank/{r.subset}/{r.method}", r.accuracy, global_step=r.n)
        for name, figures in report.step_auroc.items():
            for subset, f in figures["by_subset"].items():
                for tag, value in ((name, f["auroc"]), ("position_alone", f["position_auroc"])):
                    if value is not None:
                        writer.add_scalar(f"step_auroc/{subset}/{tag}", value, global_step=0)
    finally:
        writer.close()


def write_outputs(report: Report, out_dir: str | Path) -> list[Path]:
    """report.md, report.csv, report.json and accuracy_vs_n.png in `out_dir`; returns their paths."""
    out = Path(out_dir)
    paths = [out / name for name in OUTPUT_FILES]
    for writer, path in zip((write_markdown, write_csv, write_json, write_plot), paths):
        writer(report, path)
    return paths
