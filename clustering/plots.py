"""Figures of an MI matrix and its factorization (matplotlib, no pyplot state, files only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from clustering._atomic import atomic_path

__all__ = ["plot_binarized", "plot_blocks", "plot_mi_heatmap"]


def _figure(shape):
    n_r, n_c = shape
    w = min(14.0, 2.5 + 0.35 * n_c)
    h = min(14.0, 2.0 + 0.3 * n_r)
    fig = Figure(figsize=(max(w, 4.0), max(h, 3.0)), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _ticks(ax, row_names, col_names, row_order=None, col_order=None):
    n_r = len(row_names) if row_names is not None else None
    if row_names is not None:
        names = [row_names[i] for i in (row_order if row_order is not None else range(n_r))]
        ax.set_yticks(range(len(names)), names, fontsize=7)
    if col_names is not None:
        order = col_order if col_order is not None else range(len(col_names))
        names = [col_names[j] for j in order]
        ax.set_xticks(range(len(names)), names, fontsize=7, rotation=90)


def _save(fig, path) -> Path:
    """Save atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    return path


def plot_mi_heatmap(
    matrix, path, row_names=None, col_names=None, title="mutual information (nats)"
):
    """Heatmap of ``matrix`` (rows: targets, columns: inputs) written to ``path``."""
    m = np.asarray(matrix, dtype=float)
    fig, ax = _figure(m.shape)
    im = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8)
    _ticks(ax, row_names, col_names)
    ax.set_xlabel("input variable")
    ax.set_ylabel("next-state variable")
    ax.set_title(title)
    return _save(fig, path)


def plot_binarized(binary, path, row_names=None, col_names=None, title="binarized matrix"):
    """Black/white image of a boolean matrix."""
    b = np.asarray(binary, dtype=float)
    fig, ax = _figure(b.shape)
    ax.imshow(b, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    _ticks(ax, row_names, col_names)
    ax.set_xlabel("input variable")
    ax.set_ylabel("next-state variable")
    ax.set_title(title)
    return _save(fig, path)


def plot_blocks(matrix, factorization, path, row_names=None, col_names=None, title="blocks"):
    """``matrix`` with rows/columns reordered block by block and each block outlined."""
    m = np.asarray(matrix, dtype=float)
    ro, co = list(factorization.row_order), list(factorization.col_order)
    fig, ax = _figure(m.shape)
    im = ax.imshow(m[np.ix_(ro, co)], aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8)
    r0 = c0 = 0
    for rows, cols in zip(factorization.row_groups, factorization.col_groups):
        if rows and cols:
            ax.add_patch(
                Rectangle(
                    (c0 - 0.5, r0 - 0.5),
                    len(cols),
                    len(rows),
                    fill=False,
                    edgecolor="red",
                    linewidth=2,
                )
            )
        r0 += len(rows)
        c0 += len(cols)
    _ticks(ax, row_names, col_names, ro, co)
    ax.set_xlabel("input variable (reordered)")
    ax.set_ylabel("next-state variable (reordered)")
    ax.set_title(title)
    return _save(fig, path)
