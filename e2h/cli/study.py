"""The easy-to-hard study end to end (`bin/study.py`): plan the stages, run those not done, write the report.

    python bin/study.py --profile tiny                       # the synthetic benchmark on CPU
    python bin/study.py --profile math --model MODEL --prm800k FILE   # MATH train / MATH500, GPUs
    python bin/study.py --profile math --micro --jobs 2      # every MATH stage on a CPU, micro model (3-5 min)
    python bin/study.py --profile tiny --dry-run             # print the plan (stages and commands)
    python bin/study.py --profile tiny --extensions          # and GRPO, ReST-EM, iterative DPO beside PPO

The micro study's inputs can also be built alone (`e2h.study.micro`):

    python -m e2h.cli.study micro model OUT_DIR [--math MATH_TRAIN.jsonl]
    python -m e2h.cli.study micro prm800k OUT.jsonl [--math MATH_TRAIN.jsonl] [--test MATH500.jsonl]
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from e2h.study.plan import MATH_TEST, MATH_TRAIN, QUICK_STAGES, command, math_plan, tiny_plan
from e2h.study.report import write_report
from e2h.study.runner import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/study.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=["tiny", "math"], default="tiny")
    parser.add_argument("--model", help="math profile: the base model (Hugging Face path or hub id)")
    parser.add_argument("--prm800k", help="math profile: PRM800K phase-2 train file (raw schema, JSONL)")
    parser.add_argument("--micro", action="store_true",
                        help="math profile on a CPU: every stage cut to a subset of problems and a few steps; without "
                             "--model / --prm800k it builds a micro model and a PRM800K-format stand-in (3-5 minutes)")
    parser.add_argument("--data", help="math profile: the data folder holding math/ and prm800k/ "
                                       "(default: $E2H_SHARED_DATA, else ../shared/data beside the checkout)")
    parser.add_argument("--out", help="the study's folder (default: runs/study-PROFILE, runs/study-math-micro)")
    parser.add_argument("--jobs", type=int, default=1, help="stages run side by side (CPU profile: 2 on 2 cores)")
    parser.add_argument("--stages", nargs="+", help="run only these stages (their inputs must be done)")
    parser.add_argument("--quick", action="store_true",
                        help=f"only {', '.join(QUICK_STAGES)}: the generator side of the study (16 minutes measured on 2 CPU cores)")
    parser.add_argument("--extensions", action="store_true",
                        help="tiny profile: also run the extension stages, the paper's other ways to train with the easy "
                             "PRM beside PPO: GRPO, 2 rounds of ReST-EM, 2 rounds of iterative DPO (with --stages: add them "
                             "to those)")
    parser.add_argument("--smoke", action="store_true",
                        help="cut every stage to a few steps and batches: checks the pipeline end to end (minutes)")
    parser.add_argument("--dry-run", action="store_true", help="print the stages and their commands, run nothing")
    args = parser.parse_args(argv)
    if args.micro and args.profile != "math":
        parser.error("--micro is the math profile cut to a CPU's size: give --profile math")
    out = Path(args.out or f"runs/study-{args.profile}{'-micro' if args.micro else ''}").resolve()
    if args.profile == "math":
        if not args.micro and (not args.model or not args.prm800k):
            parser.error("--profile math needs --model (a Hugging Face path or hub id) and --prm800k FILE "
                         "(or --micro, which builds a micro model and a PRM800K-format stand-in)")
        prm800k = str(Path(args.prm800k).resolve()) if args.prm800k else None
        plan = math_plan(out, args.model, prm800k, data=Path(args.data).resolve() if args.data else None,
                         micro=args.micro)
    else:
        plan = tiny_plan(out)
    plan.smoke = plan.smoke or args.smoke
    unknown = set(args.stages or ()) - {s.name for s in plan.stages}
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; the stages are: {[s.name for s in plan.stages]}")
    if args.dry_run:
        for s in plan.stages:
            extension = " [extension: --extensions]" if s.extension else ""
            print(f"# {s.name}: {s.about}{extension} (in {out / s.workspace}; after {', '.join(s.after) or 'nothing'})")
            print(shlex.join(command(s, plan)))  # quoted: each line can be pasted into a shell
        return 0
    if args.quick and args.stages:
        parser.error("--quick chooses the stages itself; give --quick or --stages, not both")
    stages = set(QUICK_STAGES) if args.quick else set(args.stages) if args.stages else None
    if args.extensions:
        extensions = {s.name for s in plan.stages if s.extension}
        if not extensions:
            parser.error(f"the {args.profile} profile has no extension stages")
        stages = (stages if stages is not None else {s.name for s in plan.stages if not s.extension}) | extensions
    if stages is not None:  # the stages that build the micro study's inputs go with any selection
        stages |= {s.name for s in plan.stages if s.module != "e2h.cli"}
    start = time.perf_counter()
    run(plan, args.jobs, stages)
    report = write_report(plan)
    print(report.read_text(), flush=True)
    print(f"[study] finished in {time.perf_counter() - start:.0f} s; report: {report}", flush=True)
    return 0


def micro_main(argv: list[str] | None = None) -> int:
    """`python -m e2h.cli.study micro model|prm800k OUT`: build one of the micro study's inputs."""
    from e2h.study.micro import build_micro_model, write_prm800k_standin

    ap = argparse.ArgumentParser(prog="python -m e2h.cli.study micro",
                                 description="build the micro MATH study's inputs (e2h.study.micro)")
    sub = ap.add_subparsers(dest="what", required=True)
    model = sub.add_parser("model", help="the micro model folder: byte-level BPE trained on MATH train, tiny random Llama")
    model.add_argument("out")
    model.add_argument("--math", default=MATH_TRAIN, help="MATH train (MATH-schema JSONL)")
    prm = sub.add_parser("prm800k", help="the PRM800K-format stand-in: raw phase-2 schema on MATH train problems")
    prm.add_argument("out")
    prm.add_argument("--math", default=MATH_TRAIN, help="MATH train (MATH-schema JSONL)")
    prm.add_argument("--test", default=MATH_TEST, help="MATH500: a few records on it, which the conversion must drop")
    args = ap.parse_args(argv)
    if args.what == "model":
        print(build_micro_model(args.out, args.math), flush=True)
    else:
        print(write_prm800k_standin(args.out, args.math, args.test), flush=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(micro_main(sys.argv[2:]) if sys.argv[1:2] == ["micro"] else main())
