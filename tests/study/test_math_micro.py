"""The micro MATH study (`bin/study.py --profile math --micro`): every stage of the math profile on a CPU, on the
real files in ../shared/data (skipped, naming the missing file, when they are absent), with a micro model built
here (byte-level BPE trained on MATH train, a tiny random Llama, one Hugging Face folder) and a PRM800K-format
stand-in on MATH train problems. Numbers from a random model mean nothing: what is checked is that every stage
runs, hands on what the next one reads, and that the report is complete.

The whole study took 2 min 45 s on 2 lightly loaded CPU cores and 4 min 43 s on busy ones (--jobs 2); see
docs/study-math-micro.md.
"""

import json

import pytest

from e2h.cli.prm800k import main as prm800k_main
from e2h.cli.study import main as study_main
from e2h.data.prompts import PromptFormat
from e2h.data.records import load_problems
from e2h.data.step_solutions import read_step_solutions
from e2h.study.micro import build_micro_tokenizer, gold_steps, write_prm800k_standin
from e2h.study.plan import done_marker, math_plan
from e2h.text.encoding import encode_sft, encode_step_solution


@pytest.fixture(scope="module")
def math_files(shared_file):
    return shared_file("math/train.jsonl"), shared_file("math/test.jsonl")


@pytest.fixture(scope="module")
def micro_tokenizer(math_files):
    problems = load_problems(str(math_files[0]))[:400]
    return build_micro_tokenizer([f"{p.problem}\n\n{p.solution}" for p in problems], vocab_size=512)


def test_the_micro_tokenizer_is_byte_level_bpe_with_a_llama_template(micro_tokenizer, math_files):
    tok = micro_tokenizer
    text = "Find $\\frac{\\pi}{2}$ — or 3°.\n\n# Answer\n\n\\boxed{12}"  # non-ASCII: byte-level, no <unk>
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == text
    assert tok(text)["input_ids"][0] == tok.bos_token_id  # a Llama-style template: BOS first
    assert tok.eos_token is not None and tok.pad_token is not None
    fmt = PromptFormat("paper")
    (problem, *_) = load_problems(str(math_files[1]))
    enc = encode_sft(tok, fmt.prompt(problem.problem), fmt.response(problem))
    assert enc["input_ids"][0] == tok.bos_token_id and enc["input_ids"][-1] == tok.eos_token_id


def test_gold_solutions_split_into_steps_outside_math():
    solution = "We have $x = 1. 5$ here. So \\$3 and $y=2$.\n\nThen\n$$z=3. A$$. Done \\[w. B\\]. Last."
    assert gold_steps(solution) == ["We have $x = 1. 5$ here.", "So \\$3 and $y=2$.", "Then\n$$z=3. A$$.",
                                    "Done \\[w. B\\].", "Last."]


def test_the_prm800k_standin_converts_with_the_official_rules(math_files, micro_tokenizer, tmp_path, capsys):
    """The stand-in is in the raw phase-2 schema: `e2h data prm800k` joins it to MATH train by problem text,
    drops its MATH500 records (--exclude) and its hard ones (--levels), and keeps right and wrong steps; every
    example encodes with a subword tokenizer, its labels on step ends."""
    train, test = math_files
    raw = write_prm800k_standin(tmp_path / "raw.jsonl", train, test, easy=24, hard=4, held_out=3)
    record = json.loads(raw.read_text().splitlines()[0])
    assert {"question", "label", "generation"} <= set(record) and "finish_reason" in record["label"]
    out = tmp_path / "steps.jsonl"
    assert prm800k_main(["--input", str(raw), "--out", str(out), "--math", str(train), "--levels", "1", "2", "3",
                         "--exclude", str(test)]) == 0
    printed = capsys.readouterr().out
    counts = dict(part.strip().rsplit(" ", 1) for part in printed.split("skipped:")[1].split(","))
    assert int(counts["held-out"]) > 0 and int(counts["level"]) > 0  # MATH500 and hard records dropped
    examples = list(read_step_solutions(out))
    assert {e.level for e in examples} <= {1, 2, 3} and {e.labels[-1] for e in examples} == {0, 1}
    fmt = PromptFormat("paper")
    for e in examples:
        enc = encode_step_solution(micro_tokenizer, fmt.prompt(e.problem), e, label_all_step_tokens=True)
        assert all(p > 0 for p in enc.step_end_positions)
        assert enc.step_labels[enc.step_end_positions[-1]] == e.labels[-1]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_micro_math_study_runs_every_stage(math_files, tmp_path, monkeypatch):
    """Every stage of the math profile, on MATH train / MATH500 and the PRM800K test steps, then the report."""
    monkeypatch.setenv("E2H_SHARED_DATA", str(math_files[0].parents[1]))
    out = tmp_path / "study"
    assert study_main(["--profile", "math", "--micro", "--jobs", "2", "--out", str(out)]) == 0
    plan = math_plan(out, None, None, micro=True)
    assert all(done_marker(plan, s).exists() for s in plan.stages), [s.name for s in plan.stages
                                                                    if not done_marker(plan, s).exists()]
    # the built model is one Hugging Face folder, taken as a user's --model
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= {p.name for p in (out / "micro" / "model").iterdir()}
    text = (out / "report" / "study.md").read_text()
    for s in plan.stages:  # every stage in the time table, with its seconds
        line = next(line for line in text.splitlines() if line.startswith(f"| {s.name} |"))
        assert "not run" not in line
    for row in ("ICL, exemplars from all levels", "ICL, exemplars from hard levels", "ICL, exemplars from easy levels",
                "SFT on all levels (Full)", "SFT on easy levels (Easy-to-Hard)",
                "PPO, easy outcome + PRM process reward", "PPO, final-answer reward only (easy answers)",
                "PPO, final-answer reward on all levels (full supervision)"):
        line = next(line for line in text.splitlines() if line.startswith(f"| {row} |"))
        assert "%" in line  # measured, not "-"
    assert "No chance level applies" in text and "Chance:" not in text
    assert "| weighted:prm |" in text and "| best_of_n:oprm |" in text
    assert "| PRM | step AUROC, PRM800K rated steps |" in text
    assert "PPO (PRM reward) training" in text
    study = json.loads((out / "report" / "study.json").read_text())
    assert study["chance"] is None and study["samples"]["all"]["clip_rate"] is not None
    assert set(study["evaluator_validation"]) >= {"prm", "oprm"}
    assert set(json.loads((out / "report" / "rerank" / "report.json").read_text())["scorers"]) == {"orm", "prm", "oprm"}
    # the stand-in went through the real conversion: MATH500 and hard records dropped, easy steps kept
    log = (out / "logs" / "prm800k.log").read_text()
    assert "held-out 0," not in log and "level 0," not in log
    assert (out / "main" / "runs" / "math" / "prm800k_test.jsonl").stat().st_size > 0
