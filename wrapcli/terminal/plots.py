"""Figures, behind the optional ``plot`` extra (matplotlib): ``pip install 'wrapcli[plot]'``."""

from __future__ import annotations

import numpy as np

from wrapcli.core.errors import WrapError
from wrapcli.core.files import atomic_path


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise WrapError("--plot needs matplotlib: pip install 'wrapcli[plot]'") from None
    return plt


def line_plot(path: str, xs: list, series: dict[str, list[float]], xlabel: str, title: str,
              log_x: bool, bands: dict[str, list[float]] | None = None,
              hline: tuple[float, str] | None = None) -> None:
    """Accuracy curves (optionally ±band) to an image; a log x-axis draws x=0 at 1."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [max(v, 1) for v in xs] if log_x else xs
    for name, ys in series.items():
        ax.plot(x, ys, marker="o", label=name)
        if bands and name in bands:
            y, b = np.array(ys), np.array(bands[name])
            ax.fill_between(x, y - b, y + b, alpha=0.2)
    if hline:
        ax.axhline(hline[0], color="grey", linestyle="--", linewidth=1, label=hline[1])
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.rsplit(".", 1)[-1] if "." in path else "png", dpi=120)
    plt.close(fig)
