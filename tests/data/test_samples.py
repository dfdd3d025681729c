
import pytest

from e2h.data.errors import DataError
from e2h.data.samples import read_samples


def test_missing_fields_name_file_line_and_field(tmp_path, write_jsonl, sample_line):
    bad = sample_line("a", 1, 0, "4", "4")
    del bad["gold"]
    path = write_jsonl(tmp_path / "s.jsonl", [sample_line("a", 1, 1, "4", "4"), bad])
    with pytest.raises(DataError, match=r"s\.jsonl:2: sample is missing field\(s\) \['gold'\]"):
        read_samples(path)
