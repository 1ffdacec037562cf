"""The picture of part 1: original vs dequantized weights, with the quantization levels."""
from __future__ import annotations

import numpy as np


def histogram_figure(x: np.ndarray, dequantized: np.ndarray, level_values: np.ndarray,
                     labels: dict[str, str], bins: int = 160):
    """Histogram of original vs dequantized values (log counts) with the levels as vertical lines.

    ``labels``: ``title``, ``original``, ``dequantized``, ``levels``, ``x``, ``y``. Uses
    matplotlib's object API (no pyplot: no global state shared between requests).
    """
    from matplotlib.figure import Figure

    orig = np.asarray(x, dtype=np.float32).reshape(-1)
    deq = np.asarray(dequantized, dtype=np.float32).reshape(-1)
    lo = float(min(orig.min(), deq.min(), level_values.min() if level_values.size else 0))
    hi = float(max(orig.max(), deq.max(), level_values.max() if level_values.size else 0))
    pad = (hi - lo) * 0.02 or 1e-3
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    # fixed margins instead of a constrained layout, one LineCollection for the levels and
    # precomputed histograms: 255 levels (8 bits) no longer cost a second per drawing
    fig = Figure(figsize=(9, 3.6), dpi=110)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.14, top=0.91)
    ax = fig.add_subplot()
    if level_values.size:
        alpha = 0.5 if level_values.size <= 64 else 0.18
        ax.vlines(level_values.astype(np.float64), 0, 1, transform=ax.get_xaxis_transform(), color="#d62728",
                  linewidth=0.7, alpha=alpha, label=f"{labels.get('levels', 'levels')} ({level_values.size})")
    counts, _ = np.histogram(orig, bins=edges)
    ax.stairs(counts, edges, fill=True, color="#1f77b4", alpha=0.55, label=labels.get("original", "original"))
    counts, _ = np.histogram(deq, bins=edges)
    ax.stairs(counts, edges, color="#ff7f0e", linewidth=1.4, label=labels.get("dequantized", "dequantized"))
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(labels.get("x", "value"))
    ax.set_ylabel(labels.get("y", "count (log)"))
    ax.set_title(labels.get("title", ""), fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.2)
    return fig
