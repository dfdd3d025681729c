"""Scoring samples with a reward model: `e2h predict` writes scored JSONL (one step score per step, the solution
score the aggregation of them, resumable without duplicates)."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForTokenClassification

from e2h.cli.main import main
from e2h.data.errors import DataError
from e2h.data.step_solutions import completion_steps
from e2h.eval.scoring import aggregate
from e2h.modules import RewardModelModule
from e2h.training.callbacks import ScoreWriter

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


# --- scoring end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reward_model_dir(tiny_llama, tmp_path_factory) -> str:
    """A tiny reward model saved as a Hugging Face folder, with a random (non-zero) head so scores differ."""
    folder = tmp_path_factory.mktemp("tiny-rm")
    torch.manual_seed(0)
    module = RewardModelModule(model_config=tiny_llama.config(max_position_embeddings=512), tokenizer="char")
    module.configure_model()
    with torch.no_grad():
        module.model.score.weight.normal_(0.0, 1.0)
    module.save_hf(str(folder))
    return str(folder)


PROMPT = "# Question\n\n{}\n\n# Solution\n\n"


def sample(pid: str, index: int, problem: str, completion: str, level: int, correct: bool, few_shot: str = "") -> dict:
    return {"problem_id": pid, "level": level, "sample_index": index, "prompt": few_shot + PROMPT.format(problem),
            "completion": completion, "answer": completion[-1:] or None, "gold": "7", "correct": correct,
            "num_tokens": len(completion) + 1}


SAMPLES = [
    sample("synthetic/L1/test/0", 0, "1+2+4", "1+2=3 3+4\n\n3+4=7\n\n# Answer\n\n7", 1, True),
    sample("synthetic/L1/test/0", 1, "1+2+4", "1+2=3 3+4\n\n\n\n3+4=8\n\n# Answer\n\n8", 1, False),
    sample("synthetic/L1/test/0", 2, "1+2+4", "", 1, False),
    sample("synthetic/L2/test/5", 0, "5-1+2+1", "5-1=4 4+2+1\n\n4+2=6 6+1\n\n6+1=7\n\n# Answer\n\n7", 2, True,
           few_shot="# Question\n\n2+2+2\n\n# Solution\n\n2+2=4 4+2\n\n4+2=6\n\n# Answer\n\n6\n\n\n"),
    sample("synthetic/L2/test/5", 1, "5-1+2+1", "5-1=4", 2, False),
]


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def score_args(tmp_path, model_dir, samples_path, output, **model_args) -> list[str]:
    override = {
        "trainer": {
            "callbacks": [{"class_path": "e2h.training.callbacks.ScoreWriter", "init_args": {"output": str(output)}}],
            "enable_progress_bar": False,
        },
        "model": {"init_args": {"model": model_dir, **model_args}},
        "data": {"init_args": {"predict": {"path": str(samples_path)}, "eval_batch_size": 2}},
    }
    path = tmp_path / "score_override.yaml"
    path.write_text(yaml.safe_dump(override))
    return ["predict", "--config", str(REPO / "configs/tiny/score.yaml"), "--config", str(path)]


def hand_step_scores(model_dir: str, line: dict) -> tuple[list[float], float]:
    """Step scores read straight from the saved model, positions counted by hand: the char tokenizer gives
    one token per character (no BOS), steps are joined by a blank line and an EOS (id 2) ends the text."""
    from e2h.text.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    steps = completion_steps(line["completion"])
    text = line["prompt"] + "\n\n".join(steps)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert len(ids) == len(text) + 1
    ends, start = [], len(line["prompt"])
    for step in steps:
        ends.append(start + len(step) - 1)
        start += len(step) + 2
    model = AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(input_ids=torch.tensor([ids])).logits[0, :, 0])
    return [float(probs[p]) for p in ends], float(probs[-1])


def test_scoring_writes_one_score_per_step_and_the_min_of_them(tmp_path, reward_model_dir, write_jsonl):
    samples = write_jsonl(tmp_path / "samples.jsonl", SAMPLES)
    out = tmp_path / "scored.jsonl"
    assert main(score_args(tmp_path, reward_model_dir, samples, out)) == 0
    rows = read_lines(out)
    assert [(r["problem_id"], r["sample_index"]) for r in rows] == [(s["problem_id"], s["sample_index"]) for s in SAMPLES]
    for row, original in zip(rows, SAMPLES):
        assert {k: row[k] for k in original} == original  # the sample line is kept as it was
        assert row["steps"] == completion_steps(original["completion"])
        assert len(row["step_scores"]) == len(row["steps"])
        assert row["score"] == pytest.approx(aggregate(row["step_scores"], "min"))
        expected_steps, _final = hand_step_scores(reward_model_dir, original)
        assert row["step_scores"] == pytest.approx(expected_steps, abs=1e-5)
    assert rows[1]["steps"] == ["1+2=3 3+4", "3+4=8\n\n# Answer\n\n8"]  # the extra blank line is no step
    assert rows[2]["steps"] == [] and rows[2]["score"] == 0.0  # an empty completion
    assert len({round(s, 6) for r in rows for s in r["step_scores"]}) > 3  # the scores are not all alike
    assert not list(tmp_path.glob("scored.rank*.jsonl"))  # per-rank files merged away


def test_orm_scoring_reads_the_final_token(tmp_path, reward_model_dir, write_jsonl):
    samples = write_jsonl(tmp_path / "samples.jsonl", SAMPLES[:2])
    out = tmp_path / "orm.jsonl"
    main(score_args(tmp_path, reward_model_dir, samples, out, supervision="outcome"))
    for row, original in zip(read_lines(out), SAMPLES):
        _steps, final = hand_step_scores(reward_model_dir, original)
        assert row["score"] == pytest.approx(final, abs=1e-5)
        assert not math.isclose(row["score"], min(row["step_scores"]), abs_tol=1e-6)


def test_scoring_resumes_without_duplicates_and_keeps_what_was_scored(tmp_path, reward_model_dir, write_jsonl):
    samples = write_jsonl(tmp_path / "samples.jsonl", SAMPLES)
    out = tmp_path / "scored.jsonl"
    main(score_args(tmp_path, reward_model_dir, samples, out))
    complete = read_lines(out)

    # A stopped run: three lines in the per-rank file (one marked, to see it is not scored again), a torn fourth.
    kept = [dict(complete[0], score=123.0)] + complete[1:3]
    rank_file = ScoreWriter(str(out)).rank_file(0)
    out.unlink()
    rank_file.write_text("".join(json.dumps(r) + "\n" for r in kept) + json.dumps(complete[3])[:25])
    main(score_args(tmp_path, reward_model_dir, samples, out))
    resumed = read_lines(out)
    assert len(resumed) == len(SAMPLES)
    assert len({(r["problem_id"], r["sample_index"]) for r in resumed}) == len(SAMPLES)
    assert resumed[0]["score"] == 123.0  # skipped, not rescored
    assert resumed[1:] == complete[1:]
    assert not rank_file.exists()

    # Running again on a finished output changes nothing.
    main(score_args(tmp_path, reward_model_dir, samples, out))
    assert read_lines(out) == resumed


def test_scoring_refuses_to_overwrite_its_input(tmp_path, reward_model_dir, write_jsonl):
    samples = write_jsonl(tmp_path / "samples.jsonl", SAMPLES[:1])
    with pytest.raises(ValueError, match="overwrite"):
        main(score_args(tmp_path, reward_model_dir, samples, samples))


def test_scoring_a_sample_without_prompt_names_the_line(tmp_path, reward_model_dir, write_jsonl, capsys):
    bad = dict(SAMPLES[1])
    del bad["prompt"]
    samples = write_jsonl(tmp_path / "samples.jsonl", [SAMPLES[0], bad])
    assert main(score_args(tmp_path, reward_model_dir, samples, tmp_path / "out.jsonl")) == 2
    assert re.search(r"^error: .*samples.jsonl:2: .*\['prompt'\]", capsys.readouterr().err, re.M)
