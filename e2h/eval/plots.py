"""Figures drawn without pyplot: a bare Agg canvas (no display needed, the process's matplotlib backend left
alone) and PNGs written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2h.data.files import atomic_path


def new_figure(size: tuple[float, float], panels: int, **subplots: Any) -> tuple[Any, Any]:
    """A figure with `panels` axes in a row, on a bare Agg canvas (no pyplot): it needs no display and
    leaves the process's matplotlib backend alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, panels, squeeze=False, **subplots)[0]


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> None:
    """PNG saved under a temporary name and renamed into place (never a half-written file)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
