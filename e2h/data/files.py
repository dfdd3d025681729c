"""Small file helpers: JSONL reading with file:line errors, and atomic writes (never a half-written file)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from e2h.data.errors import DataError


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a bad line raises DataError naming file and line."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = line.rstrip("\r\n")  # a column past the line's end is clearer than "column 1" of the next
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                what = re.sub(r"\s+at$", " here", e.msg)  # "Unterminated string starting at" (a column follows)
                cut = f"; the line ends at column {len(text)}: cut short?" if (
                    e.pos >= len(text) - 1 or e.msg.startswith("Unterminated")) else ""
                raise DataError(f"{path}:{lineno}:{e.colno}: malformed JSON ({what}{cut})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block succeeds, deleted
    when it fails, so `path` is never left half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    # mkstemp creates the file private (0600); give it the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside `path` to fill; it replaces `path` (an older folder there is removed only
    after the new one is complete) when the block succeeds and is deleted when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write text to path through a temporary file in the same folder, renamed into place."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write rows as JSONL atomically; returns the number of rows."""
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_text("".join(line + "\n" for line in lines), path)
    return len(lines)


_FILE_SUFFIX = re.compile(r"\.[A-Za-z]{2,8}$")


def looks_like_path(value: str) -> bool:
    """Whether a model or data value is meant as a local path rather than a hub id (``org/name``): it starts
    with ``/``, ``.`` or ``~``, has more than one ``/``, or ends with a file extension (``train.jsnl``)."""
    return value.startswith(("/", ".", "~")) or value.count("/") > 1 or bool(_FILE_SUFFIX.search(value))


def require_local_path(value: str, what: str) -> None:
    """A `DataError` naming `value` at once when it looks like a local path that does not exist (instead of
    the hub lookup, retries and "Repo id must be in the form..." that would follow). A run's Hugging Face
    export (``.../hf``) is written by the fit whose ``default_root_dir`` is its parent: the message says so."""
    if not looks_like_path(value) or Path(value).expanduser().exists():
        return
    hint = ""
    path = Path(value)
    if path.name == "hf":
        hint = (f"; it is the Hugging Face export that a fit writes at its end into its run folder {path.parent} "
                "(trainer.default_root_dir): run that stage first")
        config = Path("configs") / path.parent.parent.name / f"{path.parent.name}.yaml"
        if path.parent.parent.parent.name == "runs" and config.exists():
            hint += f" (e2h fit --config {config})"
    raise DataError(f"{what} {value}: no such file or folder{hint}")
