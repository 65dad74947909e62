"""Pictures of training: loss curves as PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import pyplot


def plot_curves(path: str | Path, curves: dict[str, tuple[list[int], list[float]]], title: str, log: bool = True) -> Path:
    """Write one PNG with a line per named curve ``name -> (steps, values)``.

    Raises:
        TellerError: matplotlib is not installed (the ``train`` extra).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, (steps, values) in curves.items():
        if len(values) > 50 and name.startswith("train"):
            k = max(1, len(values) // 50)
            smooth = np.convolve(values, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1 :], smooth, label=f"{name} (mean of {k})")
        else:
            ax.plot(steps, values, marker="o" if len(values) < 30 else None, label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
