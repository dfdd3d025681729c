"""What produced an output file: the module and its settings, the weights it loaded, the data it read.

`e2h predict` appends to its samples (or scores) file and, started again, continues it. That is only right
when the new run would produce the same lines: the same model weights, sampling settings and data selection.
A record of those is written beside the output (``OUTPUT.provenance.json``) and compared when a run finds an
existing output: any difference is shown, and the run refuses to mix the two (or, on request, starts the file
over). Paths among the settings are recorded with a fingerprint of what they hold (size and modification time
of the file, or of the weight files in a model folder), so retraining a model in place, or rewriting an input
file, counts as a change.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Settings that change how a run goes, not what it writes.
IGNORED = {"num_workers", "log_samples", "log_rollouts", "budget_check"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".json", ".model")


def fingerprint(path: str) -> dict[str, Any] | None:
    """Size and modification time of a file, or of the files of a folder (a model folder); None otherwise."""
    p = Path(path)
    try:
        if p.is_file():
            stat = p.stat()
            return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if p.is_dir():
            return {f.name: fingerprint(str(f)) for f in sorted(p.iterdir()) if f.suffix in WEIGHT_SUFFIXES}
    except OSError:
        return None
    return None


def _plain(value: Any) -> Any:
    """JSON-ready settings, with paths fingerprinted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items()) if k not in IGNORED}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) < 4096 and os.path.exists(value):
        return {"path": value, "fingerprint": fingerprint(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def provenance(module: Any, datamodule: Any) -> dict[str, Any]:
    """The record of a predict run: module and data module classes and their settings (the module's
    hyperparameters, the data module's `settings`: its constructor arguments)."""
    record = {"module": f"{type(module).__module__}.{type(module).__qualname__}",
              "model": _plain(dict(getattr(module, "hparams", {})))}
    if datamodule is not None:
        record["data_module"] = f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"
        record["data"] = _plain(dict(getattr(datamodule, "settings", {})))
    return json.loads(json.dumps(record))  # tuples become lists, as they read back


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two records (``model.temperature: 0.7 -> 1.0``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            name = f"{prefix}.{key}" if prefix else key
            if key not in old:
                out.append(f"{name}: (absent) -> {json.dumps(new[key])[:120]}")
            elif key not in new:
                out.append(f"{name}: {json.dumps(old[key])[:120]} -> (absent)")
            else:
                out += differences(old[key], new[key], name)
        return out
    return [] if old == new else [f"{prefix}: {json.dumps(old)[:120]} -> {json.dumps(new)[:120]}"]
