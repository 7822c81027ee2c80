"""Figures the commands write to files, made without pyplot: writing a plot never switches the
caller's matplotlib backend (a notebook that runs a search keeps drawing inline)."""

from __future__ import annotations

from typing import Any


def new_figure(figsize: tuple[float, float], dpi: int = 100) -> tuple[Any, Any]:
    """A figure with one axes, for ``fig.savefig(path)``; nothing to close afterwards."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots()
