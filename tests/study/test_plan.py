"""The study's plan: the shipped configs in dependency order, the Easy-to-Hard generator feeding sampling, the
reward models and PPO, and a cut-off training stage resuming from its last checkpoint."""

from pathlib import Path

import pytest
import torch

from e2h.study.plan import PROFILES, Plan, command, math_plan, tiny_plan


def _configs(plan: Plan) -> list[Path]:
    return [Path(s.args[i + 1]) for s in plan.stages for i, a in enumerate(s.args) if a == "--config"]


@pytest.mark.parametrize("make", [lambda out: tiny_plan(out), lambda out: math_plan(out, "MODEL", "/data/prm800k.jsonl")],
                         ids=["tiny", "math"])
def test_plan_uses_shipped_configs_in_dependency_order(make, tmp_path):
    plan = make(tmp_path / "study")
    configs = _configs(plan)
    assert configs and all(c.exists() for c in configs), [c for c in configs if not c.exists()]
    seen: set[str] = set()
    for s in plan.stages:
        assert set(s.after) <= seen, f"{s.name} runs before its inputs"
        seen.add(s.name)
    assert len(seen) == len(plan.stages)  # names are unique
    names = {s.name for s in plan.stages}
    # the paper's comparisons, each a stage
    assert {"sft_easy", "sft_full", "sample", "orm", "prm", "oprm", "rerank", "ppo_prm", "ppo_outcome", "ppo_full",
            "eval_ppo_prm", "eval_ppo_outcome", "eval_ppo_full"} <= names
    # ICL needs a pretrained model: the math profile has its three arms, the tiny one (a random model) none
    icl = {"icl_full", "icl_hard", "icl_easy"}
    assert icl <= names if plan.profile == "math" else not icl & names
    # sampling and PPO start from the Easy-to-Hard generator, never from the full one; so do the MATH
    # reward models (the tiny ones train from scratch)
    easy_hf = plan.path("main", f"runs/{plan.profile}/{PROFILES[plan.profile]['sft_easy_dir']}/hf")
    full_hf = plan.path("full", f"runs/{plan.profile}/{PROFILES[plan.profile]['sft_full_dir']}/hf")
    rms = ("orm", "prm", "oprm") if plan.profile == "math" else ()
    for name in ("ppo_prm", "ppo_outcome", "ppo_full", "sample", *rms):
        (stage,) = [s for s in plan.stages if s.name == name]
        assert easy_hf in stage.args and "sft_easy" in stage.after
    assert not any(full_hf in s.args for s in plan.stages if s.name != "eval_sft_full")


def test_a_cut_off_training_stage_resumes_from_its_last_checkpoint(tmp_path):
    plan = tiny_plan(tmp_path)
    (sft,) = [s for s in plan.stages if s.name == "sft_easy"]
    assert "--ckpt_path" not in command(sft, plan)
    folder = tmp_path / "main" / sft.checkpoints
    folder.mkdir(parents=True)
    last, older = folder / "last.ckpt", folder / "epoch=0-step=100.ckpt"
    torch.save({"global_step": 100}, older)
    last.write_bytes(b"")  # a save cut off: resume falls back to the newest complete checkpoint
    assert command(sft, plan)[-2:] == ["--ckpt_path", str(older)]
    torch.save({"global_step": 200}, last)
    assert command(sft, plan)[-2:] == ["--ckpt_path", str(last)]


def test_the_full_supervision_ppo_arm_sees_every_answer_and_no_reward_model(tmp_path):
    args = tiny_plan(tmp_path).stage("ppo_full").args
    assert args[args.index("--data.init_args.hide_answers_for_levels") + 1] == "[]"
    assert args[args.index("--model.init_args.reward_model") + 1] == "null"
    assert args[args.index("--model.init_args.rewards") + 1] == '{"process": null}'


def test_planning_writes_nothing_and_the_runner_links_the_data(tmp_path, monkeypatch):
    """A plan (and so --dry-run) is only computed: the math plan's data link is made by the runner when it
    runs, never when it plans."""
    from e2h.study import runner

    out = tmp_path / "study"
    data = tmp_path / "data"
    (data / "math").mkdir(parents=True)
    plan = math_plan(out, "MODEL", "/data/prm800k.jsonl", data=data)
    micro = math_plan(tmp_path / "micro", None, None, data=data, micro=True)
    assert not out.exists() and not (tmp_path / "micro").exists()
    assert plan.links == {"shared/data": data} and micro.links == {"shared/data": data}
    monkeypatch.setattr(runner, "run_stage", lambda stage, plan, threads: 0.0)
    runner.run(plan, only=set())
    assert (out / "shared" / "data").resolve() == data.resolve()
    runner.make_links(plan)  # made once; a second run leaves it
    with pytest.raises(FileNotFoundError, match="not a folder"):
        runner.make_links(math_plan(tmp_path / "other", "M", "P", data=tmp_path / "missing"))


def test_the_prm800k_test_steps_are_converted_from_their_stepwise_layout_with_levels(tmp_path):
    args = math_plan(tmp_path, "MODEL", "/data/prm800k.jsonl").stage("prm800k_test").args
    assert args[args.index("--format") + 1] == "stepwise"  # the shipped file is the stepwise-critique layout
    assert args[args.index("--math") + 1] == "../shared/data/math/test.jsonl"  # levels, for step AUROC by level


def test_the_micro_plan_is_the_math_plan_cut_to_a_cpu(tmp_path):
    full = math_plan(tmp_path, "MODEL", "/data/prm800k.jsonl")
    micro = math_plan(tmp_path, None, None, micro=True)
    names = [s.name for s in micro.stages]
    assert names == ["micro_model", "micro_prm800k", *[s.name for s in full.stages]]
    assert micro.smoke
    model = str(tmp_path / "micro" / "model")
    for stage in micro.stages:
        if stage.module == "e2h.cli.study":  # the builders: `python -m e2h.cli.study micro ...`
            assert stage.args[0] == "micro" and command(stage, micro)[1:3] == ["-m", "e2h.cli.study"]
            continue
        if stage.args[0] in ("fit", "test", "predict") and not stage.name.startswith("score_"):
            assert {"--trainer.accumulate_grad_batches", "--data.init_args.eval_batch_size"} & set(stage.args), stage.name
        if model in stage.args:  # stages that read the built model wait for it
            assert "micro_model" in stage.after, stage.name
    prm = micro.stage("prm800k")
    assert prm.args[prm.args.index("--input") + 1] == str(tmp_path / "micro" / "prm800k_standin.jsonl")
    assert "micro_prm800k" in prm.after
    # a user's model and PRM800K file replace the built ones
    given = math_plan(tmp_path, "MODEL", "/data/prm800k.jsonl", micro=True)
    assert [s.name for s in given.stages] == [s.name for s in full.stages]
    with pytest.raises(ValueError, match="needs a model"):
        math_plan(tmp_path, None, None)


def test_the_configs_are_found_in_the_installed_package_first(tmp_path, monkeypatch):
    from e2h.study import plan as plan_module

    assert plan_module.config_root() == plan_module.REPO / "configs"  # a checkout: no e2h/configs inside
    packaged = tmp_path / "site" / "e2h"
    (packaged / "configs" / "tiny").mkdir(parents=True)

    class Files:
        def __truediv__(self, name):
            return packaged / name

    monkeypatch.setattr(plan_module.resources, "files", lambda package: Files())
    assert plan_module.config_root() == packaged / "configs"
    assert tiny_plan(tmp_path).stage("sft_easy").args[2] == str(packaged / "configs" / "tiny" / "sft.yaml")
