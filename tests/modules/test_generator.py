"""The generator stage: configs, SFT loss on packed batches, resume, sampling JSONL, export, ICL, MetaMath."""

import json
import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from transformers import AutoModelForCausalLM

from e2h.cli.main import main
from e2h.datamodules import FewShot, ProblemsDataModule, ProblemSource
from e2h.eval.budget import BudgetTooShort
from e2h.modules import GeneratorModule
from e2h.training.callbacks import SampleWriter

REPO = Path(__file__).resolve().parents[2]
SMALL_SYNTHETIC = {"train": 100, "test": 10}


# --- the module on real batches --------------------------------------------------------------------------


@pytest.fixture
def make_module(tiny_llama):
    """``make_module(**kwargs)``: a from-scratch tiny generator (seed 0) on the char tokenizer."""

    def make(**kwargs) -> GeneratorModule:
        torch.manual_seed(0)
        config = tiny_llama.config(max_position_embeddings=1024)
        module = GeneratorModule(tokenizer="char", model_config=config, max_new_tokens=40, budget_check="warn", **kwargs)
        module.configure_model()
        return module

    return make


def test_packed_batch_gives_the_same_loss_as_padded_batch(make_module, problems_data):
    module = make_module()
    padded, packed = problems_data(), problems_data(pack=True, max_length=256)
    padded.setup("fit")
    packed.setup("fit")
    n = sum(len(row["input_ids"]) for row in padded.sft["train"][:6])
    rows = packed.sft["train"]
    # the same first examples, packed into rows: compare the loss over identical token sets
    examples = padded.sft["train"][:6]
    from e2h.text.packing import pack_sequences

    packed_rows = pack_sequences(examples, 256)
    assert len(packed_rows) < len(examples) and rows  # packing did combine examples
    loss_padded, n_padded = module.sft_loss(padded._collate_sft(examples))
    loss_packed, n_packed = module.sft_loss(packed._collate_sft(packed_rows))
    assert n_padded == n_packed and n > n_padded
    assert loss_packed.item() == pytest.approx(loss_padded.item(), abs=1e-5)


class LossRecorder(Callback):
    def __init__(self):
        self.losses = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = outputs["loss"].item()


def fit(module, datamodule, root, max_steps, ckpt_path=None, callbacks=()):
    recorder = LossRecorder()
    trainer = Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=root, callbacks=[recorder, *callbacks],
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, recorder.losses


def test_resume_mid_epoch_gives_the_same_losses(tmp_path, make_module, problems_data):
    # 200 examples / batch 8 = 25 batches an epoch: stopping after 7 steps is mid-epoch.
    _, straight = fit(make_module(), problems_data(), tmp_path / "a", max_steps=12)
    # The run is stopped after step 7; the checkpoint is the one ModelCheckpoint wrote during training.
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="stop", every_n_train_steps=7, save_top_k=-1)
    _, first = fit(make_module(), problems_data(), tmp_path / "b", max_steps=7, callbacks=[saver])
    ckpt = tmp_path / "ckpt" / "stop.ckpt"
    _, resumed = fit(make_module(), problems_data(), tmp_path / "b", max_steps=12, ckpt_path=str(ckpt))
    assert sorted(first) == list(range(1, 8)) and sorted(resumed) == list(range(8, 13))
    for step in range(1, 13):
        assert {**first, **resumed}[step] == pytest.approx(straight[step], rel=1e-5), step


def test_export_loads_with_transformers_and_gives_the_same_logits(tmp_path, make_module, problems_data):
    module = make_module()
    trainer, _ = fit(module, problems_data(), tmp_path, max_steps=2)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    assert main(["export", str(ckpt), str(tmp_path / "hf")]) == 0
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    ids = torch.tensor([[5, 6, 7, 8]])
    module.model.eval()
    assert torch.allclose(loaded(ids).logits, module.model(ids).logits, atol=1e-5)


def test_icl_validate_runs_on_an_untrained_model_and_logs_accuracy_by_level(tiny_model_dir, problems_data):
    module = GeneratorModule(model=tiny_model_dir, max_new_tokens=8, budget_check="warn")
    dm = problems_data(
        tokenizer=None,
        val=ProblemSource(split="test", levels=[1, 4], limit=6, synthetic_per_level=SMALL_SYNTHETIC),
        few_shot=FewShot(k=2, levels=[1, 2], pool=ProblemSource(split="train", synthetic_per_level=SMALL_SYNTHETIC)),
    )
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    (metrics,) = trainer.validate(module, datamodule=dm)
    assert {"val/acc_all", "val/acc_easy", "val/acc_hard", "val/acc_level_1", "val/acc_level_4"} <= set(metrics)
    assert "val/acc_level_2" not in metrics  # no level-2 problem was evaluated
    # beside each accuracy: its problem count, clip rate and exactly-solved share (synthetic problems)
    assert metrics["val/n_level_1"] == 3 and metrics["val/n_all"] == 6
    # 8 tokens cannot hold a level-1 solution (30 with its EOS), so a random model's completions are all cut
    assert metrics["val/clip_all"] == 1.0 and metrics["val/solved_all"] == 0.0


def test_a_budget_shorter_than_the_reference_solutions_stops_before_generating(tiny_model_dir, problems_data):
    module = GeneratorModule(model=tiny_model_dir, max_new_tokens=40)  # level 4 needs 75 tokens, level 1 30
    dm = problems_data(tokenizer=None, val=ProblemSource(split="test", levels=[1, 4], limit=6,
                                                         synthetic_per_level=SMALL_SYNTHETIC))
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    with pytest.raises(BudgetTooShort, match=r"max_new_tokens \(the val split\) = 40 tokens[\s\S]*level 4: 3 of 3"):
        trainer.validate(module, datamodule=dm)


# --- sampling ------------------------------------------------------------------------------------------------


def write_sampling_config(tmp_path, model_dir, output, limit=6, num_samples=3) -> list[str]:
    override = {
        "trainer": {
            "callbacks": [{"class_path": "e2h.training.callbacks.SampleWriter", "init_args": {"output": str(output)}}],
            "enable_progress_bar": False,
        },
        "model": {"init_args": {"model": model_dir, "num_samples": num_samples, "max_new_tokens": 12,
                                          "budget_check": "warn"}},
        "data": {"init_args": {"predict": {"source": "synthetic", "split": "test", "levels": [1, 2, 3],
                                           "limit": limit, "synthetic_per_level": SMALL_SYNTHETIC},
                               "eval_batch_size": 2}},
    }
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(override))
    return ["predict", "--config", str(REPO / "configs/tiny/sample.yaml"), "--config", str(path)]


def read_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_sampling_writes_jsonl_reproducibly_and_resumes_without_duplicates(tmp_path, tiny_model_dir):
    out_a, out_b = tmp_path / "a" / "samples.jsonl", tmp_path / "b" / "samples.jsonl"
    main(write_sampling_config(tmp_path, tiny_model_dir, out_a))
    rows = read_lines(out_a)
    assert len(rows) == 6 * 3
    assert set(rows[0]) == {"problem_id", "level", "sample_index", "prompt", "completion", "answer", "gold",
                            "correct", "solved", "num_tokens", "clipped", "undecided"}
    assert [r["sample_index"] for r in rows[:3]] == [0, 1, 2]
    assert all(r["level"] in (1, 2, 3) and r["gold"] is not None and isinstance(r["correct"], bool) for r in rows)
    assert all(0 < r["num_tokens"] <= 12 for r in rows)
    # a random model rarely stops within 12 tokens: those samples are marked clipped, and none is "solved"
    assert all(r["num_tokens"] == 12 for r in rows if r["clipped"])
    assert any(r["clipped"] for r in rows) and not any(r["solved"] for r in rows)

    main(write_sampling_config(tmp_path, tiny_model_dir, out_b))
    assert out_b.read_text() == out_a.read_text()  # same seed, same samples

    # Stop halfway: two problems complete in the per-rank file, a third cut mid-line.
    lines = out_a.read_text().splitlines(keepends=True)
    out_a.unlink()
    rank_file = SampleWriter(str(out_a)).rank_file(0)
    rank_file.write_text("".join(lines[:6]) + lines[6][:20])
    main(write_sampling_config(tmp_path, tiny_model_dir, out_a))
    resumed = read_lines(out_a)
    assert len(resumed) == 18
    assert len({(r["problem_id"], r["sample_index"]) for r in resumed}) == 18
    assert resumed[:6] == rows[:6]
    assert not rank_file.exists()


def test_a_samples_file_from_other_settings_or_weights_is_not_continued(tmp_path, tiny_model_dir, capsys):
    import shutil

    out = tmp_path / "samples.jsonl"
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    main(write_sampling_config(tmp_path, str(model), out, limit=3, num_samples=2))
    first = out.read_text()
    # another temperature: refused, with the difference named, and the file untouched
    args = write_sampling_config(tmp_path, str(model), out, limit=3, num_samples=2)
    assert main(args + ["--model.init_args.temperature", "1.0"]) == 2
    assert re.search(r"^error: .*holds samples from another run[\s\S]*model.temperature: 0.7 -> 1.0",
                     capsys.readouterr().err, re.M)
    assert out.read_text() == first
    # the model retrained in place (new weights, same path): refused too
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert main(write_sampling_config(tmp_path, str(model), out, limit=3, num_samples=2)) == 2
    assert "model.model.fingerprint" in capsys.readouterr().err
    # on request, the file starts over
    args = write_sampling_config(tmp_path, str(model), out, limit=3, num_samples=2)
    main(args + ["--trainer.callbacks.init_args.on_change", "restart"])
    assert len(read_lines(out)) == 6 and (tmp_path / "samples.jsonl.provenance.json").exists()


# --- learning (the slowest test: a few minutes on 2 cores) -------------------------------------------------


def greedy_accuracy(module, levels, limit=60) -> dict[str, float]:
    dm = ProblemsDataModule(
        test=ProblemSource(split="test", levels=levels, limit=limit),  # the benchmark at the configs' size
        eval_batch_size=60,
    )
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.test(module, datamodule=dm)
    return metrics


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~10 minutes on 2 idle cores; more when the machine is shared
def test_tiny_sft_learns_the_easy_levels(tmp_path, monkeypatch):
    """The shipped tiny config (at most 800 steps on levels 1-3, seed 0) solves level-1 problems.

    Measured with this config on 2 CPU cores: the loss sits on a plateau (~0.16/token: the format learned,
    the arithmetic not) until about step 380, then falls to ~0 by step 500; greedy level-1 accuracy on the
    validation problems was 8% at step 200, 45% at 400 and 100% from 600 (levels 2-3: 100%; levels 4-5:
    5% and 18%). On an H200 the same config reached 100/100/100% at levels 1-3 (8% and 10% at 4-5); with a
    600-step schedule there it was still mid-breakthrough (87/75/12%): when the plateau breaks varies, so
    the config trains 800 steps. An untrained model scores 0% (it writes no answer) and one that learned the
    format but not the arithmetic ~10% (a random digit): the bound of 50% is five times that chance level.
    """
    monkeypatch.chdir(tmp_path)
    config = REPO / "configs/tiny/sft.yaml"
    # Validated on 20 level-1 problems every 100 steps, the run stops once more than 90% of them are right: the
    # claim is "within the config's 800 steps", and the plateau breaks at 400-500. 90%, not 50%, so that the 60
    # test problems clear the bound with a margin. Measured 2026-12-07: 15 / 0 / 0 / 50 / 95% at steps 100-500,
    # stopped at 500 (1,384 s on cores shared with a probe, against 1,982 s for all 800 steps).
    main(["fit", "--config", str(config), "--trainer.val_check_interval", "100",
          "--trainer.enable_progress_bar", "false", "--data.init_args.val.limit", "20",
          "--data.init_args.val.levels", "[1]",
          "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
          "--trainer.callbacks.monitor=val/acc_level_1", "--trainer.callbacks.mode=max",
          "--trainer.callbacks.stopping_threshold=0.9", "--trainer.callbacks.patience=1000"])
    model_config = yaml.safe_load(config.read_text())["model"]["init_args"]["model_config"]
    untrained = GeneratorModule(tokenizer="char", model_config=model_config, max_new_tokens=64)
    before = greedy_accuracy(untrained, [1])["test/acc_level_1"]
    after = greedy_accuracy(GeneratorModule(model=str(tmp_path / "runs/tiny/sft/hf"), max_new_tokens=64), [1])
    assert before == 0.0
    assert after["test/acc_level_1"] >= 0.5


def test_non_finite_loss_stops_before_the_optimizer_step(tmp_path, make_module, problems_data):
    module = make_module()
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    with torch.no_grad():  # a NaN weight makes every loss NaN
        module.model.model.norm.weight[0] = float("nan")
    before["model.norm.weight"] = module.model.model.norm.weight.clone()
    with pytest.raises(FloatingPointError, match="SFT loss is nan at step 0; stopping before the optimizer step"):
        fit(module, problems_data(), tmp_path, max_steps=3)
    after = module.model.state_dict()
    assert all(torch.equal(before[k], after[k]) or k == "model.norm.weight" for k in before)
    assert not list(tmp_path.rglob("*.ckpt"))  # no checkpoint of the broken state


class BreaksOnThirdStep(torch.optim.SGD):
    """SGD whose third step writes NaN into the weights (what a finite loss with an exploding update does)."""

    def __init__(self, params):
        super().__init__(params, lr=1e-3)
        self.steps = 0

    def step(self, closure=None):
        loss = super().step(closure)
        self.steps += 1
        if self.steps == 3:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return loss


def test_non_finite_weights_are_never_checkpointed_and_the_last_good_checkpoint_stays(tmp_path, make_module,
                                                                                     problems_data):
    module = make_module(optimizer=BreaksOnThirdStep)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_last=True)  # keeps 1 + last
    with pytest.raises(FloatingPointError, match=r"weights are not finite after step 3 .*; nothing is saved"):
        fit(module, problems_data(), tmp_path, max_steps=6, callbacks=[saver])
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert [p.name for p in (tmp_path / "ckpt").glob("epoch=*")] == ["epoch=0-step=2.ckpt"]  # not rotated away


def test_non_finite_gradients_stop_before_the_optimizer_step(tmp_path, make_module, problems_data):
    module = make_module()
    module.model.lm_head.weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    with pytest.raises(FloatingPointError, match="a gradient is not finite at step 0 although the loss is"):
        fit(module, problems_data(), tmp_path, max_steps=3)
    assert all(torch.equal(before[k], v) for k, v in module.model.state_dict().items())
