"""Figures of grid studies from each trial's per-epoch curves (see :func:`hpo.report.curves_of`).

``panel_curves``: one panel per value of one parameter, one line per value of another (the
textbook's 4 x 4 BN figure). ``variant_curves``: one figure, one colour per value of a parameter,
the mean over the other parameters' trials (replicates) with a band from min to max.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["panel_curves", "shrink_png", "variant_curves"]

DPI = 80  # small PNGs: they are committed with the docs


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve(curves, row, metric: str) -> list[float]:
    ys = curves.get((int(row["round"]), int(row["number"])), {}).get(metric) or []
    return [math.nan if y is None else y for y in ys]


def panel_curves(
    trials: pd.DataFrame,
    curves: Mapping[tuple[int, int], Mapping[str, list]],
    *,
    panel: str,
    line: str,
    metric: str,
    path: str | Path,
    panel_title: str = "{}",
    line_label: Mapping[Any, str] | None = None,
    title: str = "",
    ncols: int = 4,
) -> Path:
    """One panel per value of ``panel`` (in the order first seen), one line per value of ``line``.

    A trial that diverged stops where its curve stops; the panel says so with a cross.
    """
    plt = _pyplot()
    values = list(dict.fromkeys(trials[f"params_{panel}"].sort_values(ascending=False)))
    lines = list(dict.fromkeys(trials[f"params_{line}"].sort_values(ascending=False)))
    nrows = math.ceil(len(values) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3 * ncols, 2.4 * nrows), sharex=True, sharey=True, squeeze=False
    )
    styles = ["-", "--", ":", "-."]
    for ax, value in zip(axes.flat, values, strict=False):
        sub = trials[trials[f"params_{panel}"] == value]
        for i, lv in enumerate(lines):
            for _, row in sub[sub[f"params_{line}"] == lv].iterrows():
                ys = _curve(curves, row, metric)
                label = (line_label or {}).get(lv, f"{line}={lv}")
                ax.plot(range(1, len(ys) + 1), ys, styles[i % 4], color=f"C{i}", label=label)
                if row["status"] == "diverged":
                    x = max(len(ys), 1)
                    ax.plot([x], [0.0], "x", color=f"C{i}", ms=8)
        ax.set_title(panel_title.format(value), fontsize=9)
        ax.set_ylim(0, 1.02)
    for ax in axes.flat[len(values) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def variant_curves(
    trials: pd.DataFrame,
    curves: Mapping[tuple[int, int], Mapping[str, list]],
    *,
    group: str,
    metrics: tuple[str, ...],
    path: str | Path,
    title: str = "",
    label: Callable[[Any], str] = str,
) -> Path:
    """One colour per value of ``group``; each metric a line style (solid, dashed, ...)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = ["-", "--", ":", "-."]
    for i, value in enumerate(dict.fromkeys(trials[f"params_{group}"])):
        sub = trials[trials[f"params_{group}"] == value]
        for j, metric in enumerate(metrics):
            ys = [_curve(curves, row, metric) for _, row in sub.iterrows()]
            ys = [y for y in ys if y]
            if not ys:
                continue
            n = min(len(y) for y in ys)
            arr = np.array([y[:n] for y in ys])
            x = np.arange(1, n + 1)
            lab = f"{label(value)} ({metric}, n={len(ys)})"
            ax.plot(x, arr.mean(axis=0), styles[j % 4], color=f"C{i}", label=lab)
            if len(ys) > 1:
                ax.fill_between(x, arr.min(axis=0), arr.max(axis=0), color=f"C{i}", alpha=0.12)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return shrink_png(path)


def shrink_png(path: str | Path) -> Path:
    """Rewrite a PNG with a 256-colour palette (plots use few colours): about 3x smaller."""
    from PIL import Image

    path = Path(path)
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256)
    small.save(path, optimize=True)
    return path
