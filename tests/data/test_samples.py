import json

import pytest

from e2h.data.errors import DataError
from e2h.data.samples import read_samples


def sample(pid, level, i, answer, gold):
    return {"problem_id": pid, "level": level, "sample_index": i, "prompt": "p", "completion": "c",
            "answer": answer, "gold": gold, "correct": None, "num_tokens": 3}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_missing_fields_name_file_line_and_field(tmp_path):
    bad = sample("a", 1, 0, "4", "4")
    del bad["gold"]
    path = write(tmp_path / "s.jsonl", [sample("a", 1, 1, "4", "4"), bad])
    with pytest.raises(DataError, match=r"s\.jsonl:2: sample is missing field\(s\) \['gold'\]"):
        read_samples(path)
