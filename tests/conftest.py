"""Shared test setup: no hub access, and the location of the real data beside the checkout."""

import os
from pathlib import Path

import pytest

# Nothing may reach a model or dataset hub at test time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(os.environ.get("E2H_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """A file of the real data, or a skip that names the missing file."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"real data file {path} is absent (set E2H_SHARED_DATA to the data folder)")
    return path
