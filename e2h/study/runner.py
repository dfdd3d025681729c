"""Running a study's plan: each stage a subprocess in its workspace with its log, independent stages side by
side, finished stages skipped."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from e2h.data.files import atomic_write_text
from e2h.study.plan import REPO, Plan, Stage, command, done_marker


def run_stage(stage: Stage, plan: Plan, threads: int) -> float:
    workspace = plan.out / stage.workspace
    workspace.mkdir(parents=True, exist_ok=True)
    cmd = command(stage, plan)
    log = plan.out / "logs" / f"{stage.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    start = time.perf_counter()
    with log.open("w") as f:
        f.write("$ " + shlex.join(cmd) + f"\n# in {workspace}\n\n")
        f.flush()
        done = subprocess.run(cmd, cwd=workspace, env=env, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage.name} failed (exit {done.returncode}); its output: {log}")
    atomic_write_text(json.dumps({"seconds": round(seconds, 1), "command": cmd}) + "\n", done_marker(plan, stage))
    return seconds


def make_links(plan: Plan) -> None:
    """The plan's symlinks (e.g. ``shared/data`` -> the data folder the configs read), made before any stage
    runs; an existing link is left as it is."""
    for relative, target in plan.links.items():
        link = plan.out / relative
        if link.is_symlink() or link.exists():
            continue
        if not Path(target).is_dir():
            raise FileNotFoundError(f"{relative} would link to {target}, which is not a folder: the configs read their "
                                    "data there (give bin/study.py --data DIR, or set E2H_SHARED_DATA)")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(target).resolve(), target_is_directory=True)


def run(plan: Plan, jobs: int = 1, only: set[str] | None = None) -> None:
    """Run every stage not yet done (of `only`, else every stage but the extensions), `jobs` at a time, each
    after the stages it needs."""
    make_links(plan)
    threads = max((os.cpu_count() or 1) // jobs, 1)
    wanted = (lambda s: s.name in only) if only is not None else (lambda s: not s.extension)
    todo = {s.name: s for s in plan.stages if not done_marker(plan, s).exists() and wanted(s)}
    finished = {s.name for s in plan.stages if done_marker(plan, s).exists()}
    for s in plan.stages:
        if s.name in finished:
            print(f"[study] {s.name}: done before, skipped", flush=True)
    running: dict[Future, Stage] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while todo or running:
            ready = [s for s in todo.values() if all(a in finished for a in s.after)]
            for s in ready[: jobs - len(running)]:
                print(f"[study] {s.name}: {s.about} ...", flush=True)
                running[pool.submit(run_stage, s, plan, threads)] = todo.pop(s.name)
            if not running:
                blocked = ", ".join(f"{s.name} (needs {[a for a in s.after if a not in finished]})" for s in todo.values())
                raise RuntimeError(f"stages cannot run, their inputs were not selected or failed: {blocked}")
            complete, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in complete:
                stage = running.pop(future)
                seconds = future.result()  # a failed stage stops the study, with its log named
                finished.add(stage.name)
                print(f"[study] {stage.name}: done in {seconds:.0f} s", flush=True)
