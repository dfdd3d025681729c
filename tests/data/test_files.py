"""Atomic writes: a failed export leaves the previous folder whole and no temporary folder behind."""

import pytest

from e2h.data.files import atomic_folder


def test_atomic_folder_keeps_the_old_export_when_writing_fails(tmp_path):
    folder = tmp_path / "hf"
    with atomic_folder(folder) as tmp:
        (tmp / "weights").write_text("first")
    with pytest.raises(RuntimeError), atomic_folder(folder) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("killed mid-export")
    assert (folder / "weights").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no temporary folder left behind
    with atomic_folder(folder) as tmp:
        (tmp / "weights").write_text("second")
    assert (folder / "weights").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
