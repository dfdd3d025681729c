"""The easy-to-hard study end to end (`bin/study.py`): plan the stages, run those not done, write the report.

    python bin/study.py --profile tiny                       # the synthetic benchmark on CPU
    python bin/study.py --profile math --model MODEL         # MATH train / MATH500, GPUs
    python bin/study.py --profile tiny --dry-run             # print the plan (stages and commands)
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from e2h.study.plan import QUICK_STAGES, command, math_plan, tiny_plan
from e2h.study.report import write_report
from e2h.study.runner import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/study.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=["tiny", "math"], default="tiny")
    parser.add_argument("--model", help="math profile: the base model (Hugging Face path or hub id)")
    parser.add_argument("--prm800k", help="math profile: PRM800K phase-2 train file (raw schema, JSONL)")
    parser.add_argument("--out", help="the study's folder (default: runs/study-PROFILE)")
    parser.add_argument("--jobs", type=int, default=1, help="stages run side by side (CPU profile: 2 on 2 cores)")
    parser.add_argument("--stages", nargs="+", help="run only these stages (their inputs must be done)")
    parser.add_argument("--quick", action="store_true",
                        help=f"only {', '.join(QUICK_STAGES)}: the generator side of the study (~15 minutes on 2 CPU cores)")
    parser.add_argument("--smoke", action="store_true",
                        help="cut every stage to a few steps and batches: checks the pipeline end to end (minutes)")
    parser.add_argument("--dry-run", action="store_true", help="print the stages and their commands, run nothing")
    args = parser.parse_args(argv)
    out = Path(args.out or f"runs/study-{args.profile}").resolve()
    if args.profile == "math":
        if not args.model or not args.prm800k:
            parser.error("--profile math needs --model (a Hugging Face path or hub id) and --prm800k FILE")
        plan = math_plan(out, args.model, str(Path(args.prm800k).resolve()))
    else:
        plan = tiny_plan(out)
    plan.smoke = args.smoke
    unknown = set(args.stages or ()) - {s.name for s in plan.stages}
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; the stages are: {[s.name for s in plan.stages]}")
    if args.dry_run:
        for s in plan.stages:
            print(f"# {s.name}: {s.about} (in {out / s.workspace}; after {', '.join(s.after) or 'nothing'})")
            print(shlex.join(command(s, plan)))  # quoted: each line can be pasted into a shell
        return 0
    if args.quick and args.stages:
        parser.error("--quick chooses the stages itself; give --quick or --stages, not both")
    stages = set(QUICK_STAGES) if args.quick else set(args.stages) if args.stages else None
    start = time.perf_counter()
    run(plan, args.jobs, stages)
    report = write_report(plan)
    print(report.read_text(), flush=True)
    print(f"[study] finished in {time.perf_counter() - start:.0f} s; report: {report}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
