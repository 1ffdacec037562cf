"""Tokenizer tab speed: 100,000 characters through the default tokenizers, per stage.

    python bench/tokenizer_views.py [--chars 100000]

Prints encode and render time per tokenizer, characters per second, and the total against
the 1-second goal (one HTML string per tokenizer, no component per token).
"""
from __future__ import annotations

import argparse
import time

import common  # noqa: F401 - puts the project on sys.path

from engine import tokenizers as tk
from ui.token_view import DEFAULT_LABELS, render_view

SAMPLE = ("Le modèle découpe le texte en tokens : « anticonstitutionnellement », 1 234 567 habitants, "
          "def f(x):\n    return x * 2\n😀 The quick brown fox jumps over the lazy dog. Ça coûte 12,50 €. ")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--tokenizers", nargs="+", default=["mistral-v1", "mistral-v3", "tekken"])
    args = parser.parse_args()
    text = (SAMPLE * (args.chars // len(SAMPLE) + 1))[: args.chars]
    for key in args.tokenizers:  # load once (not part of a request)
        tk.get(key).encoding("warm-up")
    total = 0.0
    print(f"{'tokenizer':<12} {'tokens':>8} {'encode s':>9} {'render s':>9} {'HTML MB':>8} {'chars/s':>12}")
    for key in args.tokenizers:
        t0 = time.perf_counter()
        enc = tk.get(key).encoding(text)
        t1 = time.perf_counter()
        out = render_view(enc, DEFAULT_LABELS, window=tk.get(key).window)
        t2 = time.perf_counter()
        total += t2 - t0
        print(f"{key:<12} {enc.n_tokens:>8,} {t1 - t0:>9.3f} {t2 - t1:>9.3f} {len(out) / 1e6:>8.2f} "
              f"{args.chars / (t2 - t0):>12,.0f}")
    print(f"total for {len(args.tokenizers)} tokenizers: {total:.3f} s  ({total / 1.0:.0%} of the 1 s goal)")


if __name__ == "__main__":
    main()
