"""The samples writer's notion of a finished problem: every sample index present."""

import json
import math
import re
from pathlib import Path

from e2h.training.callbacks import complete_problems


def test_complete_problems_needs_every_sample_index():
    rows = [{"problem_id": "a", "sample_index": i} for i in range(3)] + [{"problem_id": "b", "sample_index": 0}]
    assert complete_problems(rows, 3) == {"a"}
    assert complete_problems(rows, 1) == {"a", "b"}


def test_divergence_by_hand():
    from e2h.training.callbacks import divergence

    # lr 1e3 on the tiny SFT: 4.7 -> 7.3e5 -> back to 4.6 (ln 100): a blow-up, not a recovery
    assert "rose to 7.3e+05, more than 10x its first value 4.7" in divergence(4.7, 4.6, 7.3e5, 4.6, math.log(100))
    # learned (best 0.02), then went back to the uniform level
    assert "back to 4.5" in divergence(4.7, 0.02, 4.7, 4.5, math.log(100))
    assert "is nan" in divergence(4.7, 0.1, 4.7, float("nan"), None)
    # normal runs: a falling loss; a reward model that stayed near ln 2 without ever learning (not divergence)
    assert divergence(4.7, 0.01, 4.9, 0.012, math.log(100)) is None
    assert divergence(0.69, 0.66, 0.72, 0.69, math.log(2)) is None


def test_a_diverged_fit_fails_and_keeps_the_earlier_export(tmp_path, capsys):
    from e2h.cli.main import main

    repo = Path(__file__).resolve().parents[2]
    small = json.dumps({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                        "num_attention_heads": 2})
    few = json.dumps({"train": 20, "test": 2})
    args = ["fit", "--config", str(repo / "configs/tiny/sft.yaml"), "--trainer.default_root_dir", str(tmp_path),
            "--trainer.max_steps", "6", "--trainer.num_sanity_val_steps", "0", "--trainer.limit_val_batches", "0",
            "--trainer.enable_progress_bar", "false", "--model.init_args.model_config", small,
            "--data.init_args.train.synthetic_per_level", few, "--data.init_args.val.synthetic_per_level", few,
            "--data.init_args.batch_size", "8", "--trainer.gradient_clip_val", "null"]
    main(args)
    export = tmp_path / "hf" / "model.safetensors"
    good = export.read_bytes()
    (tmp_path / "checkpoints").rename(tmp_path / "first-checkpoints")  # the same folder, trained again from scratch
    assert main(args + ["--model.init_args.optimizer.init_args.lr", "1000"]) == 2
    assert re.search(r"^error: training diverged: the training loss rose to .*not exported", capsys.readouterr().err, re.M)
    assert export.read_bytes() == good
