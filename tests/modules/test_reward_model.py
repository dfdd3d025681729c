"""The reward model: label placement through the loss, supervision variants, packed batches, backbone
loading (zero head), metrics, data sources and their errors, resume, export, and learning on easy levels."""

import math
import random

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from transformers import AutoModelForTokenClassification

from e2h.cli.main import main
from e2h.data.records import Problem
from e2h.data.step_solutions import StepSolution, write_step_solutions
from e2h.data.synthetic import benchmark_splits, label_steps, solve_steps
from e2h.datamodules import StepsDataModule, StepSource
from e2h.datamodules.reward_model import encode_example
from e2h.datamodules.sources import LabelledExample
from e2h.modules import RewardModelModule
from e2h.modules.reward_metrics import BinaryScoreMetrics
from e2h.modules.reward_model import reward_loss, select_labels
from e2h.text.encoding import IGNORE_LABEL
from e2h.text.packing import pack_sequences

SMALL_SYNTHETIC = {"train": 100, "test": 10}
PROMPT = "# Question\n\n1+2+4\n\n# Solution\n\n"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def make_module(tiny_llama):
    """``make_module(**kwargs)``: a from-scratch tiny reward model (seed 0) on the char tokenizer."""

    def make(**kwargs) -> RewardModelModule:
        torch.manual_seed(0)
        module = RewardModelModule(model_config=tiny_llama.config(max_position_embeddings=512), tokenizer="char", **kwargs)
        module.configure_model()
        return module

    return make


def randomize_head(module: RewardModelModule) -> None:
    # The head starts at zero (every logit 0); a random one makes each position's logit distinct.
    with torch.no_grad():
        module.model.score.weight.normal_(0.0, 1.0)
        module.model.score.bias.fill_(0.1)


def bce(logit: float, label: float) -> float:
    """Binary cross-entropy of one logit, written out: -(y log s + (1 - y) log(1 - s)), s = sigmoid(x)."""
    s = 1.0 / (1.0 + math.exp(-logit))
    return -(label * math.log(s) + (1 - label) * math.log(1 - s))


def one_solution_batch(module, steps=("1+2=3 3+4", "3+4=8\n\n# Answer\n\n8"), labels=(1, 0), outcome=0):
    solution = StepSolution(problem="1+2+4", steps=steps, labels=labels, outcome=outcome, level=1, unique_id="u")
    row = encode_example(module.tokenizer, LabelledExample(solution, PROMPT, "test"), max_length=None)
    dm = StepsDataModule(val=[], tokenizer="char")
    return dm._collate([row])


# --- label placement through the loss --------------------------------------------------------------------


def test_process_loss_is_the_bce_at_each_step_end(make_module):
    module = make_module(supervision="process")
    randomize_head(module)
    batch = one_solution_batch(module)
    logits = module(batch)[0].tolist()
    # Char tokenizer: token i is character i, no BOS. Step 0 ends at its last character; step 1 starts after
    # the blank line and ends at the answer digit; the EOS follows.
    end0 = len(PROMPT) + len("1+2=3 3+4") - 1
    end1 = end0 + 2 + len("3+4=8\n\n# Answer\n\n8")
    assert batch["input_ids"].shape[1] == end1 + 2
    expected = (bce(logits[end0], 1) + bce(logits[end1], 0)) / 2
    loss, n = module.loss(batch)
    assert n == 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_outcome_and_both_supervision_read_the_final_token(make_module):
    batch = None
    for supervision in ("outcome", "both"):
        module = make_module(supervision=supervision)
        randomize_head(module)
        batch = batch or one_solution_batch(module)
        logits = module(batch)[0].tolist()
        end0 = len(PROMPT) + len("1+2=3 3+4") - 1
        end1 = end0 + 2 + len("3+4=8\n\n# Answer\n\n8")
        eos = end1 + 1
        loss, n = module.loss(batch)
        if supervision == "outcome":
            assert n == 1 and loss.item() == pytest.approx(bce(logits[eos], 0), rel=1e-5)
        else:
            expected = (bce(logits[end0], 1) + bce(logits[end1], 0) + bce(logits[eos], 0)) / 3
            assert n == 3 and loss.item() == pytest.approx(expected, rel=1e-5)


def test_label_all_step_tokens_labels_every_character_of_a_labelled_step(make_module):
    module = make_module(supervision="process", label_all_step_tokens=True)
    randomize_head(module)
    # step 1 unlabelled (as after a first error): only step 0's nine characters carry its label
    batch = one_solution_batch(module, labels=(0, None), outcome=None)
    logits = module(batch)[0].tolist()
    start = len(PROMPT)
    positions = range(start, start + len("1+2=3 3+4"))
    loss, n = module.loss(batch)
    assert n == 9
    assert loss.item() == pytest.approx(sum(bce(logits[p], 0) for p in positions) / 9, rel=1e-5)


def test_select_labels_combines_outcome_and_steps_for_oprm():
    ignore = float(IGNORE_LABEL)
    batch = {
        "step_labels": torch.tensor([[1.0, 1.0, 0.0, ignore]]),
        "step_end_labels": torch.tensor([[ignore, 1.0, 0.0, ignore]]),
        "outcome_labels": torch.tensor([[ignore, ignore, ignore, 0.0]]),
    }
    assert select_labels(batch, "process").tolist() == [[ignore, 1.0, 0.0, ignore]]
    assert select_labels(batch, "process", label_all_step_tokens=True).tolist() == [[1.0, 1.0, 0.0, ignore]]
    assert select_labels(batch, "outcome").tolist() == [[ignore, ignore, ignore, 0.0]]
    assert select_labels(batch, "both").tolist() == [[ignore, 1.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="supervision"):
        select_labels(batch, "steps")


def test_a_batch_without_labels_gives_zero_loss_and_keeps_the_graph():
    logits = torch.randn(2, 3, requires_grad=True)
    loss, n = reward_loss(logits, torch.full((2, 3), float(IGNORE_LABEL)))
    assert n == 0 and loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(2, 3))


def test_nan_loss_stops_training_before_the_optimizer_step(tmp_path, make_module, steps_data):
    module = make_module()
    with torch.no_grad():  # a NaN weight makes every loss NaN
        module.model.score.weight.fill_(float("nan"))
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    dm = steps_data(train=[StepSource(split="train", levels=[1], limit=16, synthetic_per_level=SMALL_SYNTHETIC)])
    with pytest.raises(FloatingPointError, match="reward-model loss is nan at step 0; stopping before the optimizer"):
        trainer.fit(module, datamodule=dm)
    after = module.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k != "score.weight")
    assert not list(tmp_path.rglob("*.ckpt"))


def test_packed_batch_gives_the_same_loss_as_padded_batch(make_module, steps_data):
    module = make_module(supervision="both")
    randomize_head(module)
    dm = steps_data(train=[StepSource(split="train", levels=[1, 2], limit=6, synthetic_per_level=SMALL_SYNTHETIC)])
    dm.setup("fit")
    rows = dm.encoded["train"]
    packed = pack_sequences(rows, 256, keys=("input_ids", "step_labels", "step_end_labels", "outcome_labels"))
    assert len(packed) < len(rows)
    loss_padded, n_padded = module.loss(dm._collate(rows))
    loss_packed, n_packed = module.loss(dm._collate(packed))
    assert n_padded == n_packed > len(rows)
    assert loss_packed.item() == pytest.approx(loss_padded.item(), abs=1e-5)


# --- backbone: from scratch, from a generator export, from a reward-model export --------------------------


def test_head_is_zero_initialised_from_scratch_and_from_a_generator_export(tmp_path, tiny_llama, make_module):
    module = make_module()
    assert torch.count_nonzero(module.model.score.weight) == 0 and torch.count_nonzero(module.model.score.bias) == 0
    assert module.model.dropout.p == 0.0

    generator = tiny_llama.build(seed=1)
    rm = RewardModelModule(model=tiny_llama.save(generator, tmp_path / "gen"))
    rm.configure_model()
    assert torch.count_nonzero(rm.model.score.weight) == 0
    # the decoder is the generator's, unchanged
    assert torch.equal(rm.model.model.layers[1].mlp.up_proj.weight, generator.model.layers[1].mlp.up_proj.weight)
    assert rm.model.dropout.p == 0.0


def test_a_reward_model_export_keeps_its_head(tmp_path, make_module):
    module = make_module()
    randomize_head(module)
    module.save_hf(str(tmp_path / "rm"))
    reloaded = RewardModelModule(model=str(tmp_path / "rm"))
    reloaded.configure_model()
    assert torch.equal(reloaded.model.score.weight, module.model.score.weight)
    assert torch.equal(reloaded.model.score.bias, module.model.score.bias)


# --- metrics -----------------------------------------------------------------------------------------------


def test_metrics_by_hand_and_auroc_only_with_both_classes():
    metrics = BinaryScoreMetrics(["all", "level_1"])
    # positives score 0.9 and 0.4, negatives 0.2 and 0.6: 3 of the 4 (positive, negative) pairs are ordered
    metrics.update(torch.tensor([0.9, 0.2, 0.6, 0.4]), torch.tensor([1, 0, 0, 1]), "all")
    metrics.update(torch.tensor([0.7, 0.3]), torch.tensor([1, 1]), "level_1")
    metrics.update(torch.tensor([0.5]), torch.tensor([1]), "level_9")  # not a key: ignored
    values = metrics.compute()
    assert values == pytest.approx({"acc_all": 0.5, "auroc_all": 0.75, "acc_level_1": 0.5})
    assert metrics.compute() == {}  # reset after computing


def test_validation_logs_metrics_by_level_and_group(make_module, steps_data):
    module = make_module()
    dm = steps_data(val=[StepSource(split="test", levels=[1, 4], synthetic_per_level=SMALL_SYNTHETIC)])
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    for kind in ("step", "outcome"):
        for key in ("all", "easy", "hard", "level_1", "level_4"):
            assert f"val/{kind}_acc_{key}" in metrics
    assert "val/step_acc_level_2" not in metrics
    # a zero head scores 0.5 everywhere: every score is the same, so AUROC is exactly chance
    assert metrics["val/step_auroc_all"] == pytest.approx(0.5)
    assert metrics["val/loss"] == pytest.approx(math.log(2), rel=1e-5)
    assert module._logged_texts == []  # handed to the logger (none here) and cleared


def test_validation_logs_the_step_position_reference(make_module, steps_data, tmp_path):
    # Position scores 1, 1/2, 1/3 by labelled step. Right steps: A's first two (1, 1/2) and B's (1); wrong: A's
    # third (1/3) and C's only step (1). Of the 6 (right, wrong) pairs, 3 are ordered (each right above 1/3),
    # 2 tie (1 against 1) and 1 is misordered (1/2 below 1): (3 + 2 * 0.5) / 6 = 2/3.
    def solution(uid, steps, labels):
        return StepSolution(problem="1+2+4", steps=steps, labels=labels, outcome=None, level=1, unique_id=uid)

    path = tmp_path / "val.jsonl"
    write_step_solutions(
        [solution("A", ("1+2=3 3+4", "3+4=7", "7=8"), (1, 1, 0)), solution("B", ("1+2=3 3+4",), (1,)),
         solution("C", ("1+2=4 4+4",), (0,))],
        path,
    )
    module = make_module()
    dm = steps_data(val=[StepSource(kind="steps", path=str(path))])
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    assert metrics["val/step_position_auroc_all"] == pytest.approx(2 / 3)
    assert metrics["val/step_position_auroc_level_1"] == pytest.approx(2 / 3)


# --- data sources --------------------------------------------------------------------------------------------


def test_supervision_without_matching_labels_is_refused_before_training(tmp_path, make_module, steps_data, write_jsonl):
    rows = [{"problem": "1+2+4", "steps": ["1+2=3 3+4", "3+4=7"], "labels": [1, 1], "level": 1}]
    path = write_jsonl(tmp_path / "steps.jsonl", rows)
    trainer = Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="'outcome' needs outcome labels"):
        trainer.fit(make_module(supervision="outcome"),
                    datamodule=steps_data(train=[StepSource(kind="steps", path=str(path))]))


# --- training: resume and export ------------------------------------------------------------------------


class LossRecorder(Callback):
    def __init__(self):
        self.losses = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = outputs["loss"].item()


def fit(make_module, steps_data, root, max_steps, ckpt_path=None, callbacks=()):
    recorder = LossRecorder()
    trainer = Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=root, callbacks=[recorder, *callbacks])
    dm = steps_data(train=[StepSource(split="train", levels=[1, 2], synthetic_per_level=SMALL_SYNTHETIC)])
    module = make_module(supervision="both")
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, module, recorder.losses


def test_resume_mid_epoch_gives_the_same_losses(tmp_path, make_module, steps_data):
    # 200 solutions / batch 8 = 25 batches an epoch: stopping after 5 steps is mid-epoch.
    _, _, straight = fit(make_module, steps_data, tmp_path / "a", max_steps=8)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="stop", every_n_train_steps=5, save_top_k=-1)
    _, _, first = fit(make_module, steps_data, tmp_path / "b", max_steps=5, callbacks=[saver])
    _, _, resumed = fit(make_module, steps_data, tmp_path / "b", max_steps=8, ckpt_path=str(tmp_path / "ckpt" / "stop.ckpt"))
    assert sorted(first) == [1, 2, 3, 4, 5] and sorted(resumed) == [6, 7, 8]
    for step in range(1, 9):
        assert {**first, **resumed}[step] == pytest.approx(straight[step], rel=1e-5), step


def test_export_writes_a_token_classification_folder_with_the_same_scores(tmp_path, make_module, steps_data):
    trainer, module, _ = fit(make_module, steps_data, tmp_path, max_steps=2)
    trainer.save_checkpoint(tmp_path / "rm.ckpt")
    assert main(["export", str(tmp_path / "rm.ckpt"), str(tmp_path / "hf")]) == 0
    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    ids = torch.tensor([[5, 6, 7, 8, 2]])
    module.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, module.model(ids).logits, atol=1e-6)
        assert torch.count_nonzero(loaded.score.weight) > 0  # trained, not re-zeroed


# --- learning --------------------------------------------------------------------------------------------------


def unreduced_slip(problem, rng: random.Random) -> StepSolution:
    """A synthetic solution that, half the time, forgets the modulo in one step whose result needs it (writes
    ``7+5=12 12+...`` or ``2-8=-6 -6...``); labelled by the benchmark's own exact checker (`label_steps`)."""
    steps = solve_steps(problem.problem)
    slips = []
    for k, step in enumerate(steps):
        a, op, b = int(step[0]), step[1], int(step[2])
        raw = a + b if op == "+" else a - b
        if not 0 <= raw <= 9:
            slips.append((k, raw))
    if slips and rng.random() < 0.5:
        k, raw = rng.choice(slips)
        rest = steps[k][6:]  # what the step restates after its result digit and the space
        steps[k] = f"{steps[k][:4]}{raw}" + (f" {raw}{rest[1:]}" if rest else "")
    written = steps[-1].split(" ")[0].split("=")[1]  # the last step's result, as written
    steps[-1] += f"\n\n# Answer\n\n{written}"
    labels, outcome = label_steps(problem.problem, steps)
    return StepSolution(problem.problem, tuple(steps), tuple(labels), outcome, problem.answer, problem.level,
                        problem.unique_id, "test")


def test_unreduced_slip_is_labelled_wrong_at_the_slip():
    problem = Problem("7+5-1", "", "1", 1, "", "p")  # 7+5 needs the modulo; 2-1 does not
    solutions = [unreduced_slip(problem, random.Random(seed)) for seed in range(20)]
    slipped = [s for s in solutions if s.labels[0] == 0]
    assert 0 < len(slipped) < len(solutions)
    assert {s.steps for s in slipped} == {("7+5=12 12-1", "2-1=1\n\n# Answer\n\n1")}
    assert all(s.labels == (0, None) for s in slipped)
    assert all(s.labels == (1, 1) and s.outcome == 1 for s in solutions if s.labels[0] == 1)


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~40 s on 2 idle cores; several times that when the machine is shared
def test_tiny_prm_trained_on_easy_levels_flags_hard_level_steps(tmp_path, tiny_llama, steps_data):
    """A from-scratch tiny PRM trained on levels 1-3 for 300 steps (seed 0) scores the steps of levels 4-5
    well above chance.

    The benchmark's own errors (a wrong result digit) need the mod-10 arithmetic, which a tiny reward model
    does not learn within a test's budget. Measured (step AUROC at step ends, levels 4-5): from scratch,
    six shapes from 64x2 to 256x4, 1,600-3,000 steps each on a GPU, stayed at 0.49-0.56 (levels 1-3:
    0.57-0.62, the position of a step alone); started from the tiny SFT generator's export, 0.53 after 200
    steps. So this test keeps the benchmark's problems and exact checker but makes the error one a step
    shows itself: the result is left unreduced (``7+5=12``). What it tests is the trainer: labels at step
    ends, the loss, the per-level metrics, and a step feature learned on short chains carried to longer ones,
    where the step end sits farther from the slip than in any training step.

    Measured with label_all_step_tokens (the official training; more stable across seeds than step-end
    labels only): hard-level AUROC after 300 steps 0.687 (seed 0, this test), 0.957 and 0.995 (seeds 1 and 2);
    between steps 150 and 300 never below 0.685 for any of the three. Easy levels: 0.97-1.00. The bound 0.6 is
    below every measured value and well above chance (0.5).
    """
    from lightning.pytorch import seed_everything

    seed_everything(0)
    train, test = benchmark_splits(700, 60, seed=0)
    rng = random.Random(0)
    train_path, test_path = tmp_path / "train_steps.jsonl", tmp_path / "test_steps.jsonl"
    write_step_solutions([unreduced_slip(p, rng) for p in train if p.level <= 3], train_path)
    write_step_solutions([unreduced_slip(p, rng) for p in test], test_path)

    module = RewardModelModule(
        model_config=tiny_llama.config(max_position_embeddings=256),
        tokenizer="char", supervision="process", label_all_step_tokens=True, log_samples=0,
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0, betas=(0.9, 0.98)),
    )
    dm = steps_data(
        train=[StepSource(kind="steps", path=str(train_path), levels=[1, 2, 3])],
        val=[StepSource(kind="steps", path=str(test_path), levels=[1, 2, 3, 4, 5])],
        batch_size=32, eval_batch_size=300,
    )
    options = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, default_root_dir=tmp_path)
    Trainer(max_steps=300, limit_val_batches=0, **options).fit(module, datamodule=dm)
    (metrics,) = Trainer(**options).validate(module, datamodule=dm, verbose=False)
    assert metrics["val/step_auroc_easy"] >= 0.95
    assert metrics["val/step_auroc_hard"] >= 0.6
