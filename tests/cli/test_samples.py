"""`e2h data samples`: the accuracy table of a samples file."""

import json

from e2h.cli.samples import main


def sample(pid, level, i, answer, gold):
    return {"problem_id": pid, "level": level, "sample_index": i, "prompt": "p", "completion": "c",
            "answer": answer, "gold": gold, "correct": None, "num_tokens": 3}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_command_prints_the_table(tmp_path, capsys):
    path = write(tmp_path / "s.jsonl", [sample("a", 2, 0, "4", "4")])
    assert main([str(path)]) == 0
    assert "| level_2 | 1 | 1 | 100.0% | 100.0% | 100.0% |" in capsys.readouterr().out
