"""The easy-to-hard study's plan: every stage of the paper's comparison as an `e2h` command, in dependency
order (`e2h.study.runner` runs it, `e2h.study.report` reads what the stages wrote).

Each stage is one command line with the shipped configs (the same a user types, printed in the plan). The
configs write to paths such as ``runs/tiny/sft``; each arm of the study (Easy-to-Hard SFT and what builds
on it, Full SFT, each ICL variant, each scorer, the final-answer-only PPO baseline) runs in its own folder
under the study's output folder, so the same configs serve every arm without editing paths.

``--micro`` (math profile) cuts every stage to a CPU's size and builds what a GPU run is given: a micro model
and a PRM800K-format stand-in (`e2h.study.micro`), as the plan's first stages.

A stage that finished leaves ``.done/<stage>`` (with its wall time); a stopped study started again skips
those, and a training stage that was cut off resumes from its ``last.ckpt``. Independent stages run side
by side with ``--jobs N`` (each gets cores / N threads).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from e2h.training.checkpoint_io import is_complete_checkpoint, newest_complete_checkpoint

REPO = Path(__file__).resolve().parents[2]  # the source checkout, when e2h runs from one
# What stages write where the report reads it: names shared by the plan and `e2h.study.report`.
METRICS_FILE = "metrics.json"  # a validate / test stage's metrics (MetricsFile), in its workspace
SAMPLES_FILE = "samples.jsonl"  # the sampling stage's output, under the profile's runs/ folder
REPORT_FOLDER = "report"  # the study's report, and the workspace of the re-ranking report inside it
RERANK_FOLDER = "rerank"
# The math configs' data, relative to a workspace (the runner links shared/data beside the workspaces).
MATH_TRAIN = "../shared/data/math/train.jsonl"
MATH_TEST = "../shared/data/math/test.jsonl"
MICRO_FOLDER = "micro"  # the micro study's built model and PRM800K stand-in


@dataclass(frozen=True)
class Stage:
    """One command of the study. `workspace` is the folder it runs in (relative to the study's folder);
    `checkpoints` (relative to the workspace) marks a training stage that can resume."""

    name: str
    workspace: str
    args: tuple[str, ...]
    after: tuple[str, ...] = ()
    checkpoints: str | None = None
    about: str = ""
    module: str = "e2h.cli"  # run as `python -m MODULE ARGS`: the e2h command, or the micro inputs' builder
    extension: bool = False  # run only when asked for (bin/study.py --extensions or --stages NAME)


@dataclass
class Plan:
    profile: str
    out: Path
    stages: list[Stage] = field(default_factory=list)
    smoke: bool = False  # every stage cut to a few steps / batches: the pipeline checked, numbers meaningless
    # Symlinks the runner makes before the first stage (path inside the study folder -> target); planning
    # itself (and --dry-run) writes nothing.
    links: dict[str, Path] = field(default_factory=dict)

    def add(self, name: str, workspace: str, args: list[str], after: list[str] | tuple[str, ...] = (), **kw) -> None:
        known = {s.name for s in self.stages}
        missing = [a for a in after if a not in known]
        assert not missing, f"stage {name} runs after unknown stages {missing}"
        self.stages.append(Stage(name, workspace, tuple(args), tuple(after), **kw))

    def path(self, workspace: str, relative: str) -> str:
        """An absolute path to `relative` inside a workspace (how stages read each other's outputs)."""
        return str((self.out / workspace / relative).resolve())

    def stage(self, name: str) -> Stage:
        """The stage called `name`; a KeyError naming the stages there are otherwise."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"the {self.profile} plan has no stage {name!r}; its stages: {[s.name for s in self.stages]}")

    @property
    def runs(self) -> str:
        """Where the profile's configs write, relative to a workspace."""
        return f"runs/{self.profile}"

    def metrics_file(self, name: str) -> Path:
        """The metrics a validate / test stage wrote."""
        return self.out / self.stage(name).workspace / METRICS_FILE

    def ppo_folder(self, name: str) -> Path:
        """The run folder of a PPO stage (its TensorBoard logs, checkpoints and export)."""
        return self.out / self.stage(name).workspace / self.runs / PROFILES[self.profile]["ppo_dir"]

    def samples_file(self) -> Path:
        return self.out / self.stage("sample").workspace / self.runs / SAMPLES_FILE

    def report_folder(self) -> Path:
        return self.out / REPORT_FOLDER

    def rerank_report(self) -> Path:
        return self.out / self.stage("rerank").workspace / RERANK_FOLDER / "report.json"


def config_root() -> Path:
    """The shipped configs: inside the installed package (``e2h/configs``, package data of a wheel), else the
    source checkout's ``configs/`` (a checkout, or an editable install of it)."""
    packaged = Path(str(resources.files("e2h") / "configs"))
    return packaged if packaged.is_dir() else REPO / "configs"


def _config(name: str) -> str:
    return str(config_root() / name)


def default_data() -> Path:
    """The real data folder (math/, prm800k/): $E2H_SHARED_DATA, else ``../shared/data`` beside the checkout."""
    return Path(os.environ.get("E2H_SHARED_DATA") or REPO.parent / "shared" / "data").resolve()


def _metrics(path: str = METRICS_FILE) -> list[str]:
    return ["--trainer.callbacks+", "e2h.training.callbacks.MetricsFile", "--trainer.callbacks.path", path]


# ---------------------------------------------------------------------------------------------------------
# Profiles: which configs, in which order

# What differs between the profiles: config names and the output paths those configs write.
PROFILES = {
    "tiny": {
        "icl": None, "sft_easy": ["sft"], "sft_full": ["sft"], "full_levels": True, "eval": "eval",
        "sft_easy_dir": "sft", "sft_full_dir": "sft", "ppo": "ppo", "ppo_dir": "ppo", "scored": "scored.jsonl",
    },
    "math": {
        "icl": "test", "sft_easy": ["sft_easy"], "sft_full": ["sft_easy", "sft_full"], "full_levels": False,
        "eval": "icl", "sft_easy_dir": "sft_easy", "sft_full_dir": "sft_full", "ppo": "ppo_prm",
        "ppo_dir": "ppo_prm", "scored": "scored_prm.jsonl",
    },
}


def tiny_plan(out: Path) -> Plan:
    """The synthetic benchmark on a CPU (configs/tiny)."""
    return _plan("tiny", out, model_args=[])


def math_plan(out: Path, model: str | None, prm800k: str | None, data: Path | None = None,
              micro: bool = False) -> Plan:
    """MATH train / MATH500 with the user's model and PRM800K file (configs/math), sized for GPUs.

    The configs read `../shared/data/...` relative to where they run: the runner links ``shared/data`` beside
    the workspaces to `data` (default: `default_data`). With `micro`, every stage is cut to a CPU's size
    (`micro_args`, on top of the smoke limits); a missing `model` is built (`e2h.study.micro.build_micro_model`) and
    a missing `prm800k` file is the stand-in of `e2h.study.micro.write_prm800k_standin`, both as stages."""
    if not micro and (model is None or prm800k is None):
        raise ValueError("the math plan needs a model and a PRM800K file (or micro=True, which makes both)")
    builders: list[tuple[str, str, list[str], str]] = []
    if model is None:
        model = str((out / MICRO_FOLDER / "model").resolve())
        builders.append(("micro_model", MICRO_FOLDER, ["micro", "model", model, "--math", MATH_TRAIN],
                         "the micro model: byte-level BPE trained on MATH train, a tiny random Llama"))
    if prm800k is None:
        prm800k = str((out / MICRO_FOLDER / "prm800k_standin.jsonl").resolve())
        builders.append(("micro_prm800k", MICRO_FOLDER, ["micro", "prm800k", prm800k, "--math", MATH_TRAIN,
                         "--test", MATH_TEST], "PRM800K-format stand-in on MATH train problems (not PRM800K labels)"))
    plan = _plan("math", out, model_args=["--model.init_args.model", model], prm800k=prm800k,
                 builders=builders)
    plan.links["shared/data"] = Path(data) if data is not None else default_data()
    if micro:
        plan.smoke = True
        plan.stages = [replace(s, args=(*s.args, *micro_args(s))) for s in plan.stages]
    return plan


def _plan(profile: str, out: Path, model_args: list[str], prm800k: str | None = None,
          builders: list[tuple[str, str, list[str], str]] = ()) -> Plan:
    p = Plan(profile, out)
    # Stages that make the inputs (the micro model, the PRM800K stand-in) come first; every stage waits for them.
    for name, workspace, args, about in builders:
        p.add(name, workspace, args, about=about, module="e2h.cli.study")
    made = [name for name, *_ in builders]
    model_made = ["micro_model"] if "micro_model" in made else []
    k = PROFILES[profile]
    c = lambda name: _config(f"{profile}/{name}.yaml")  # noqa: E731
    configs = lambda names: [a for n in names for a in ("--config", c(n))]  # noqa: E731
    runs = f"runs/{profile}"
    easy_hf = p.path("main", f"{runs}/{k['sft_easy_dir']}/hf")
    full_hf = p.path("full", f"{runs}/{k['sft_full_dir']}/hf")
    all_levels = "[1,2,3,4,5]"
    greedy_only = ["--data.init_args.few_shot", "null"] if k["eval"] == "icl" else []

    # Generators: in-context learning with exemplars from all / hard / easy levels, then SFT full vs easy.
    # The tiny profile has no pretrained model, so ICL would measure a random model: it has no ICL stages.
    for arm, levels in (("full", all_levels), ("hard", "[4,5]"), ("easy", "[1,2,3]")) if k["icl"] else ():
        p.add(f"icl_{arm}", f"icl_{arm}", [k["icl"], "--config", c("icl"), *model_args,
              "--data.init_args.few_shot.levels", levels, *_metrics()],
              after=model_made, about=f"in-context learning, exemplars from levels {levels}")
    p.add("sft_easy", "main", ["fit", *configs(k["sft_easy"]), *model_args], after=model_made,
          checkpoints=f"{runs}/{k['sft_easy_dir']}/checkpoints", about="Easy-to-Hard SFT (levels 1-3)")
    p.add("sft_full", "full", ["fit", *configs(k["sft_full"]), *model_args,
          *(["--data.init_args.train.levels", all_levels] if k["full_levels"] else [])], after=model_made,
          checkpoints=f"{runs}/{k['sft_full_dir']}/checkpoints", about="Full SFT (levels 1-5)")
    for arm, hf in (("easy", easy_hf), ("full", full_hf)):
        p.add(f"eval_sft_{arm}", f"eval_sft_{arm}", ["test", "--config", c(k["eval"]), "--model.init_args.model",
              hf, *greedy_only, *_metrics()], after=[f"sft_{arm}"], about=f"greedy accuracy of {arm} SFT by level")

    # Evaluators trained on easy levels only, then scoring the generator's N samples of each test problem.
    p.add("sample", "main", ["predict", "--config", c("sample"), "--model.init_args.model", easy_hf],
          after=["sft_easy"], about="N samples per test problem from Easy-to-Hard SFT")
    rm_inputs = ["sft_easy"]
    if profile == "math":
        p.add("sample_train", "main", ["predict", *configs(["sample", "sample_train"]), "--model.init_args.model",
              easy_hf], after=["sft_easy"], about="samples of easy training problems (outcome labels)")
        p.add("prm800k", "main", ["data", "prm800k", "--input", prm800k, "--out", f"{runs}/prm800k_easy.jsonl",
              "--math", MATH_TRAIN, "--levels", "1", "2", "3",
              "--exclude", MATH_TEST], after=[n for n in made if n == "micro_prm800k"],
              about="PRM800K steps of easy MATH problems")
        # the test steps ship in the stepwise-critique layout; MATH500 gives their levels (step AUROC by level)
        p.add("prm800k_test", "main", ["data", "prm800k", "--format", "stepwise", "--input",
              "../shared/data/prm800k/phase1_test.stepwise_critique.jsonl", "--math", MATH_TEST,
              "--out", f"{runs}/prm800k_test.jsonl"], about="PRM800K test steps (validation)")
        rm_inputs += ["sample_train", "prm800k", "prm800k_test", "sample"]
    # On MATH the reward models start from the Easy-to-Hard generator, as the paper. The tiny ones train from
    # scratch as their configs say: starting from the tiny generator measured no better (configs/tiny/prm.yaml)
    # and costs 8x the compute per step.
    rm_init = ["--model.init_args.model", easy_hf] if profile == "math" else []
    for rm in ("orm", "prm", "oprm"):
        p.add(rm, "main", ["fit", "--config", c(rm), *rm_init], after=rm_inputs,
              checkpoints=f"{runs}/{rm}/checkpoints", about=f"{rm.upper()} trained on levels 1-3")
    samples = str(p.samples_file().resolve())
    supervision = {"orm": "outcome", "prm": "process", "oprm": "both"}
    for rm in ("orm", "prm", "oprm"):
        p.add(f"score_{rm}", f"score_{rm}", ["predict", "--config", c("score"),
              "--model.init_args.model", p.path("main", f"{runs}/{rm}/hf"),
              "--model.init_args.supervision", supervision[rm], "--data.init_args.predict.path", samples],
              after=["sample", rm], about=f"{rm.upper()} scores of the samples")
    scored = f"{runs}/{k['scored']}"
    scores = [f"{rm}={p.path(f'score_{rm}', scored)}" for rm in ("orm", "prm", "oprm")]
    p.add("rerank", REPORT_FOLDER,
          ["data", "report", "--samples", samples, "--scores", *scores, "--out", RERANK_FOLDER],
          after=["score_orm", "score_prm", "score_oprm"], about="majority / weighted / best-of-N against N")

    # PPO with the easy-supervised PRM, and the final-answer-only baseline; then greedy accuracy by level.
    prm_hf = p.path("main", f"{runs}/prm/hf")
    p.add("ppo_prm", "main", ["fit", "--config", c(k["ppo"]), "--model.init_args.policy", easy_hf,
          "--model.init_args.reward_model", prm_hf], after=["sft_easy", "prm"],
          checkpoints=f"{runs}/{k['ppo_dir']}/checkpoints", about="PPO, reward: easy outcome + PRM process (min)")
    p.add("ppo_outcome", "ppo_outcome", ["fit", "--config", c(k["ppo"]), "--model.init_args.policy", easy_hf,
          "--model.init_args.reward_model", "null",
          # a mapping, not --model.init_args.rewards.process null: jsonargparse reads a nested null as a string
          "--model.init_args.rewards", '{"process": null}'],
          after=["sft_easy"], checkpoints=f"{runs}/{k['ppo_dir']}/checkpoints", about="PPO, reward: final answer only")
    # The paper's full-supervision baseline: final-answer reward on every level, hard answers visible.
    p.add("ppo_full", "ppo_full", ["fit", "--config", c(k["ppo"]), "--model.init_args.policy", easy_hf,
          "--model.init_args.reward_model", "null", "--model.init_args.rewards", '{"process": null}',
          "--data.init_args.hide_answers_for_levels", "[]"],
          after=["sft_easy"], checkpoints=f"{runs}/{k['ppo_dir']}/checkpoints",
          about="PPO, reward: final answer on all levels (full supervision)")
    for arm, ws in (("prm", "main"), ("outcome", "ppo_outcome"), ("full", "ppo_full")):
        p.add(f"eval_ppo_{arm}", f"eval_ppo_{arm}", ["test", "--config", c(k["eval"]), "--model.init_args.model",
              p.path(ws, f"{runs}/{k['ppo_dir']}/hf"), *greedy_only, *_metrics()], after=[f"ppo_{arm}"],
              about=f"greedy accuracy of PPO ({arm}) by level")
    if profile == "tiny":
        _add_rl_alternatives(p, c, easy_hf, prm_hf)
    return p


SELF_TRAINING_ROUNDS = 2  # the paper's ReST-EM stopped at 2 (a third lost accuracy); DPO gets as many, to compare


def _add_rl_alternatives(p: Plan, c, easy_hf: str, prm_hf: str) -> None:
    """The paper's other ways to train a generator with the easy PRM, beside PPO, as extension stages:
    GRPO (no value model), and `SELF_TRAINING_ROUNDS` rounds each of ReST-EM and iterative DPO. A round samples
    training problems with the current policy, scores the samples with the PRM, selects (accepted solutions /
    best-against-worst pairs) and trains; round 1 of both starts from the same samples of Easy-to-Hard SFT."""
    runs, extension = p.runs, {"extension": True}
    greedy = lambda name, ws, hf, about: p.add(  # noqa: E731
        f"eval_{name}", f"eval_{name}", ["test", "--config", c("eval"), "--model.init_args.model", hf, *_metrics()],
        after=[name], about=f"greedy accuracy of {about} by level", **extension)
    p.add("grpo", "grpo", ["fit", "--config", c("ppo"), "--config", c("grpo"), "--model.init_args.policy", easy_hf,
          "--model.init_args.reward_model", prm_hf], after=["sft_easy", "prm"],
          checkpoints=f"{runs}/grpo/checkpoints", about="GRPO, reward: easy outcome + PRM process (min)", **extension)
    greedy("grpo", "grpo", p.path("grpo", f"{runs}/grpo/hf"), "GRPO")

    def sample_and_score(ws: str, policy: str, after: str, round_: int) -> str:
        """Stages `ws`_sample / `ws`_score: the current policy's samples of training problems, PRM-scored."""
        samples = p.path(ws, f"{runs}/self_samples.jsonl")
        p.add(f"{ws}_sample", ws, ["predict", "--config", c("sample"), "--config", c("self_sample"),
              "--model.init_args.model", policy], after=[after], about=f"round {round_}: samples of training problems",
              **extension)
        p.add(f"{ws}_score", ws, ["predict", "--config", c("score"), "--model.init_args.model", prm_hf,
              "--data.init_args.predict.path", samples], after=[f"{ws}_sample", "prm"],
              about=f"round {round_}: PRM scores of those samples", **extension)
        return p.path(ws, f"{runs}/scored.jsonl")

    first_round = sample_and_score("self_1", easy_hf, "sft_easy", 1)
    for method in ("rest_em", "dpo"):
        policy, scored, after = easy_hf, first_round, "self_1_score"
        for r in range(1, SELF_TRAINING_ROUNDS + 1):
            name = ws = f"{method}_{r}"
            if r > 1:  # the previous round's policy samples this round's problems
                scored = sample_and_score(f"{name}_self", policy, f"{method}_{r - 1}", r)
                after = f"{name}_self_score"
            if method == "rest_em":
                p.add(f"{name}_data", ws, ["data", "accepted", scored, "--out", p.path(ws, f"{runs}/rest_em.jsonl"),
                      "--threshold", "0.5", "--max-per-problem", "10"], after=[after],
                      about=f"ReST-EM round {r}: the solutions the evaluator accepts", **extension)
                p.add(name, ws, ["fit", "--config", c("sft"), "--config", c("rest_em")], after=[f"{name}_data"],
                      checkpoints=f"{runs}/rest_em/checkpoints", about=f"ReST-EM round {r}: SFT from the base on them",
                      **extension)
                policy = p.path(ws, f"{runs}/rest_em/hf")
            else:
                p.add(f"{name}_pairs", ws, ["data", "pairs", scored, "--out", p.path(ws, f"{runs}/dpo_pairs.jsonl")],
                      after=[after], about=f"iterative DPO round {r}: best against worst pairs", **extension)
                p.add(name, ws, ["fit", "--config", c("dpo"), "--model.init_args.model", policy],
                      after=[f"{name}_pairs"], checkpoints=f"{runs}/dpo/checkpoints",
                      about=f"iterative DPO round {r}: DPO from the current policy", **extension)
                policy = p.path(ws, f"{runs}/dpo/hf")
            greedy(name, ws, policy, f"{'ReST-EM' if method == 'rest_em' else 'iterative DPO'} round {r}")


# ---------------------------------------------------------------------------------------------------------
# Running


# --quick: the generator side only (Easy-to-Hard SFT, its greedy accuracy by level, N samples per problem);
# the report then shows the samples' accuracy, majority@N and pass@N by level. The README's main job.
QUICK_STAGES = ("sft_easy", "eval_sft_easy", "sample")

# --smoke: a few optimizer steps (4 = one tiny PPO rollout) and one batch of each evaluation; scoring is
# left whole, so the re-ranking report finds a score for every sample.
SMOKE = {
    "fit": ["--trainer.max_steps", "4", "--trainer.val_check_interval", "4", "--trainer.limit_val_batches", "1"],
    "validate": ["--trainer.limit_val_batches", "1"],
    "test": ["--trainer.limit_test_batches", "1"],
    "sample": ["--trainer.limit_predict_batches", "1"],
}


# --micro (math profile): on top of the smoke limits, every stage sized for a CPU: a subset of problems, short
# generations, few samples, one-row batches without accumulation (so a few optimizer steps fit in the
# little data there is), PPO rollouts of 4 responses. The configs' own precision (bf16-true) is kept: it runs
# on a CPU as fast as float32 for the micro model (measured), and it is the path a GPU run takes.
# 32 new tokens are far below MATH solutions' length: the budget check warns instead of stopping the stage.
MICRO_GENERATION = ["--model.init_args.max_new_tokens", "32", "--model.init_args.budget_check", "warn"]
MICRO_EVAL = ["--data.init_args.test.limit", "24", "--data.init_args.eval_batch_size", "24", *MICRO_GENERATION]
MICRO_STEPS = ["--trainer.accumulate_grad_batches", "1", "--trainer.log_every_n_steps", "1"]
MICRO_FIT = [*MICRO_STEPS, "--data.init_args.batch_size", "1"]
MICRO_SAMPLE = ["--data.init_args.predict.limit", "24", "--data.init_args.eval_batch_size", "24",
                "--model.init_args.num_samples", "4", *MICRO_GENERATION]
MICRO_PPO = [*MICRO_STEPS, "--model.init_args.batch", '{"rollout": 4, "minibatch": 2, "ppo_epochs": 1, "generation": 4, "forward": 4}',
             "--model.init_args.sampling.max_new_tokens", "32", "--model.init_args.sampling.budget_check", "warn",
             "--model.init_args.eval_max_new_tokens", "32",
             "--data.init_args.train.limit", "32", "--data.init_args.val.limit", "8", "--data.init_args.eval_batch_size", "8"]


def micro_args(stage: Stage) -> list[str]:
    """What --micro adds to a math stage's command line (see `MICRO_EVAL` and the others above)."""
    if stage.module != "e2h.cli" or stage.args[0] == "data":
        return []
    name = stage.name
    if name.startswith(("icl_", "eval_")):
        return MICRO_EVAL
    if name.startswith("sft_"):
        return [*MICRO_FIT, "--data.init_args.train.limit", "64", "--data.init_args.val.limit", "8", *MICRO_GENERATION]
    if name.startswith("sample"):
        return MICRO_SAMPLE
    if name in ("orm", "prm", "oprm"):
        return MICRO_FIT
    if name.startswith("score_"):
        return []  # every sample scored, in the config's batches
    if name.startswith("ppo_"):
        return MICRO_PPO
    raise AssertionError(f"--micro has no sizes for stage {name}")


def command(stage: Stage, plan: Plan) -> list[str]:
    """The stage's command line; a cut-off training stage resumes from its last checkpoint."""
    args = list(stage.args)
    if plan.smoke:
        sampling = stage.name.startswith("sample") or stage.name.endswith("_sample")
        args += SMOKE.get("sample" if sampling else args[0], [])
    if stage.checkpoints:
        # last.ckpt normally; a cut-off save falls back to the newest complete checkpoint beside it
        folder = plan.out / stage.workspace / stage.checkpoints
        last = folder / "last.ckpt"
        resume = last if is_complete_checkpoint(last) else newest_complete_checkpoint(folder)
        if resume is not None:
            args += ["--ckpt_path", str(resume)]
    return [sys.executable, "-m", stage.module, *args]


def done_marker(plan: Plan, stage: Stage) -> Path:
    return plan.out / ".done" / stage.name
