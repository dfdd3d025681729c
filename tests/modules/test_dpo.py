"""DPO: the loss starts at ln 2 and falls as the policy prefers the chosen side; the reference stays out of
checkpoints; exact resume; the NaN stop; the export; greedy validation."""

import json
import math

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from transformers import AutoModelForCausalLM

from e2h.cli.main import main
from e2h.datamodules import PreferencePairsDataModule, ProblemSource
from e2h.modules import DPOModule


@pytest.fixture(scope="module")
def policy(tiny_llama, tmp_path_factory) -> str:
    return tiny_llama.save(tiny_llama.build(max_position_embeddings=256), tmp_path_factory.mktemp("dpo-policy"))


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> str:
    """8 pairs: the right sum chosen, a wrong one rejected (the last one clipped: no EOS)."""
    rows = []
    for a in range(8):
        b = (a * 3) % 10
        rows.append({"prompt": f"# Question\n\n{a}+{b}\n\n# Solution\n\n",
                     "chosen": f"{a}+{b}={(a + b) % 10}\n\n# Answer\n\n{(a + b) % 10}",
                     "rejected": f"{a}+{b}={(a + b + 5) % 10}\n\n# Answer\n\n{(a + b + 5) % 10}",
                     "rejected_clipped": a == 7})
    path = tmp_path_factory.mktemp("dpo-data") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


class Losses(Callback):
    def __init__(self):
        self.losses, self.margins = {}, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = float(outputs["loss"])
        self.margins[trainer.global_step] = float(trainer.callback_metrics["train/rewards/margin"])


def fit(policy, pairs_file, root, max_steps, lr=1e-3, ckpt_path=None, callbacks=(), val=None):
    module = DPOModule(model=policy, beta=0.1, max_new_tokens=8, budget_check="off", log_samples=0,
                       optimizer=lambda params: torch.optim.AdamW(params, lr=lr))
    data = PreferencePairsDataModule(train=pairs_file, val=val, batch_size=4, max_length=64, eval_batch_size=8)
    losses = Losses()
    trainer = Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=root, callbacks=[losses, *callbacks],
                      limit_val_batches=0 if val is None else None, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module, trainer, losses


def test_dpo_starts_at_ln2_and_learns_to_prefer_the_chosen_side(tmp_path, policy, pairs_file, one_thread):
    module, trainer, rec = fit(policy, pairs_file, tmp_path, max_steps=20)
    assert rec.losses[1] == pytest.approx(math.log(2), abs=1e-5)  # policy = reference: every reward 0
    assert rec.margins[1] == pytest.approx(0.0, abs=1e-6)
    assert rec.losses[20] < 0.5 and rec.margins[20] > 0.5  # the chosen side pulled ahead of the rejected one
    assert float(trainer.callback_metrics["train/rewards/accuracy"]) == 1.0
    # The reference did not move: its weights are the starting policy's.
    start = AutoModelForCausalLM.from_pretrained(policy)
    for name, value in start.state_dict().items():
        assert torch.equal(module.reference.state_dict()[name], value), name
    ckpt = tmp_path / "dpo.ckpt"
    trainer.save_checkpoint(ckpt)
    assert not any(k.startswith("reference.") for k in torch.load(ckpt, weights_only=False)["state_dict"])
    # `e2h export` rebuilds the module from the bare checkpoint and writes the trained policy
    assert main(["export", str(ckpt), str(tmp_path / "hf")]) == 0
    ids = torch.tensor([[5, 6, 7, 8]])
    module.model.eval()
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert torch.allclose(exported(ids).logits, module.model(ids).logits, atol=1e-5)


def test_dpo_resumes_mid_fit_with_the_same_losses(tmp_path, policy, pairs_file, one_thread):
    _, _, straight = fit(policy, pairs_file, tmp_path / "a", max_steps=4)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="stop", every_n_train_steps=3, save_top_k=-1)
    _, _, first = fit(policy, pairs_file, tmp_path / "b", max_steps=3, callbacks=[saver])
    _, _, resumed = fit(policy, pairs_file, tmp_path / "b", max_steps=4, ckpt_path=str(tmp_path / "ckpt" / "stop.ckpt"))
    assert sorted(resumed.losses) == [4]  # step 4 is the second epoch's first batch, drawn in the same order
    for step in range(1, 5):
        assert {**first.losses, **resumed.losses}[step] == pytest.approx(straight.losses[step], rel=1e-5)
    assert len(set(straight.losses.values())) == 4


def test_a_non_finite_dpo_loss_stops_before_the_optimizer_step(tmp_path, policy, pairs_file, one_thread):
    class Poison(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 1:
                with torch.no_grad():
                    pl_module.model.lm_head.weight.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match="DPO loss is nan at step 1"):
        fit(policy, pairs_file, tmp_path, max_steps=3, callbacks=[Poison()])


def test_dpo_validates_greedy_accuracy_by_level(tmp_path, policy, pairs_file, one_thread):
    val = ProblemSource(split="test", levels=[1, 4], synthetic_per_level={"train": 4, "test": 4})
    _, trainer, _ = fit(policy, pairs_file, tmp_path, max_steps=2, val=val)
    assert {"val/acc_level_1", "val/acc_level_4", "val/acc_easy", "val/acc_hard"} <= set(trainer.callback_metrics)


def test_a_pairs_file_without_its_fields_names_the_line(tmp_path, policy):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n" + json.dumps({"prompt": "p"}) + "\n")
    data = PreferencePairsDataModule(train=str(bad), tokenizer="char")
    with pytest.raises(Exception, match=r"pairs.jsonl:2: a pair needs string field\(s\) \['chosen', 'rejected'\]"):
        data.setup("fit")
