"""Seconds per move of the bits slider in "Inside the weights": quantize, draw, encode.

    python bench/quant_histogram.py            # 1 → 8 bits with absmax and blockwise, 3 rounds

Each move runs what the event handler runs: ``weights.analyze`` on the synthetic matrix, the
histogram figure, and the image encoding Gradio's ``gr.Plot`` does (``savefig`` to WebP). The
baseline is the drawing the tab used before (one ``axvline`` per level, ``ax.hist`` twice, a
constrained layout), run here on the same inputs; the app's drawing is
``engine.quantization.histogram.histogram_figure``. Prints the median of each and their ratio.
"""
from __future__ import annotations

import argparse
import io
import statistics

from common import timed  # also puts the project on sys.path


def baseline_figure(x, dequantized, level_values, labels, bins: int = 160):
    """The previous drawing, kept here as the baseline."""
    import numpy as np
    from matplotlib.figure import Figure

    orig = np.asarray(x, dtype=np.float32).reshape(-1)
    deq = np.asarray(dequantized, dtype=np.float32).reshape(-1)
    lo = float(min(orig.min(), deq.min(), level_values.min() if level_values.size else 0))
    hi = float(max(orig.max(), deq.max(), level_values.max() if level_values.size else 0))
    pad = (hi - lo) * 0.02 or 1e-3
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    fig = Figure(figsize=(9, 3.6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    alpha = 0.5 if level_values.size <= 64 else 0.18
    for i, v in enumerate(level_values):
        ax.axvline(float(v), color="#d62728", linewidth=0.7, alpha=alpha, label="levels" if i == 0 else None)
    ax.hist(orig, bins=edges, color="#1f77b4", alpha=0.55, label="original")
    ax.hist(deq, bins=edges, histtype="step", color="#ff7f0e", linewidth=1.4, label="dequantized")
    ax.set_yscale("log")
    ax.set_title(labels.get("title", ""), fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.2)
    return fig


def one_move(draw, matrix, method: str, bits: int) -> float:
    """Seconds of one slider move: the analysis, then the figure drawn and encoded as the page gets it."""
    from engine.quantization import weights

    def move() -> None:
        a = weights.analyze(matrix, method, bits, 64)
        fig = draw(matrix.values, a.quantized.dequantized, a.levels, {"title": f"{method} {bits}"})
        with io.BytesIO() as out:
            fig.savefig(out, format="webp")  # gr.Plot's default format for matplotlib figures

    return timed(move)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", default="absmax,blockwise")
    args = parser.parse_args()
    from engine.quantization import matrices, weights
    from engine.quantization.histogram import histogram_figure

    matrix = matrices.synthetic_matrix(8)
    weights.analyze(matrix, "absmax", 4, 64)  # the error-vs-bits sweep is cached after the first call
    moves = [(m, b) for m in args.methods.split(",") for b in range(1, 9)]
    times = {"baseline": [], "app": []}
    for _ in range(args.rounds):
        for method, bits in moves:  # interleaved, so machine load hits both alike
            times["baseline"].append(one_move(baseline_figure, matrix, method, bits))
            times["app"].append(one_move(histogram_figure, matrix, method, bits))
    base, app = statistics.median(times["baseline"]), statistics.median(times["app"])
    worst_base, worst_app = max(times["baseline"]), max(times["app"])
    print(f"{len(moves) * args.rounds} slider moves ({args.methods}, 1 → 8 bits)")
    print(f"baseline drawing: median {base * 1000:6.0f} ms · worst {worst_base * 1000:6.0f} ms")
    print(f"app drawing:      median {app * 1000:6.0f} ms · worst {worst_app * 1000:6.0f} ms")
    print(f"ratio app / baseline (median): {app / base:.2f}")


if __name__ == "__main__":
    main()
