"""Tokenizer tab speed: 100,000 characters through the tokenizers, per stage, against the 1 s goal.

    python bench/tokenizer_views.py [--chars 100000] [--repeat 3] [--browser]

Stages per tokenizer: ids (the tokenizer itself), spans (bytes, character spans, byte groups),
render (one HTML string; at most ui.token_view.MAX_SHOWN tokens drawn, counts exact). Then the
tab's whole request (``tabs.tokenizers.tokenize_views``: 3 Mistral tokenizers, then all 4 with
CLIP) and, with ``--browser``, Chromium's time to insert and lay out that HTML. Best of
``--repeat`` runs, each as cold as a new text (the per-id byte memos are cleared).

Not named ``tokenizers.py``: run as a script from ``bench/``, that name would shadow the
``tokenizers`` package that transformers imports (and break every other benchmark).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common import timed  # also puts the project on sys.path

from engine.tokenization import tokenizers as tk
from ui.token_view import DEFAULT_LABELS, MAX_SHOWN, render_view

SAMPLE = ("Le modèle découpe le texte en tokens : « anticonstitutionnellement », 1 234 567 habitants, "
          "def f(x):\n    return x * 2\n😀 The quick brown fox jumps over the lazy dog. Ça coûte 12,50 €. ")
MISTRAL = ["mistral-v1", "mistral-v3", "tekken"]


def forget_bytes() -> None:
    """Drop the tokenizers' per-id byte memos, so that every run is timed as a new text."""
    for key in tk.DEFAULT_SET:
        tk.get(key).__dict__.pop("_bytes_memo", None)


def best(fn, repeat: int) -> tuple[float, object]:
    """Seconds of the best of ``repeat`` runs of ``fn()``, each as cold as a new text, and what it returned."""
    out: list = []
    return timed(lambda: out.append(fn()), repeats=repeat, reset=forget_bytes), out[-1]


def per_tokenizer(text: str, keys: list[str], repeat: int) -> float:
    print(f"{'tokenizer':<12} {'tokens':>8} {'ids s':>7} {'spans s':>8} {'render s':>9} {'total s':>8} "
          f"{'HTML MB':>8} {'chars/s':>11}")
    total = 0.0
    for key in keys:
        tok = tk.get(key)
        t_ids, _ = best(lambda: tok.encode_with_offsets(text), repeat)
        t_enc, enc = best(lambda: tok.encoding(text), repeat)
        t_render, out = best(lambda: render_view(enc, DEFAULT_LABELS, window=tok.window), repeat)
        row = t_enc + t_render
        total += row
        print(f"{key:<12} {enc.n_tokens:>8,} {t_ids:>7.3f} {t_enc - t_ids:>8.3f} {t_render:>9.3f} {row:>8.3f} "
              f"{len(out) / 1e6:>8.2f} {len(text) / row:>11,.0f}")
    return total


def browser_layout(html: str) -> float | None:
    """Milliseconds for Chromium to insert the views and lay them out (the app's CSS)."""
    try:
        from playwright.sync_api import sync_playwright

        from tests.browser import CHROMIUM, CHROMIUM_ARGS
    except ImportError:
        return None
    css = (Path(__file__).resolve().parent.parent / "assets" / "tokenizers.css").read_text(encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_content(f"<style>{css}</style><div id=v></div>")
        ms = min(page.evaluate("(h) => { const t0 = performance.now(); const v = document.getElementById('v');"
                               " v.innerHTML = ''; v.offsetHeight; v.innerHTML = h; v.offsetHeight;"
                               " return performance.now() - t0; }", html) for _ in range(3))
        browser.close()
    return ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chars", type=int, default=tk.MAX_CHARS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--browser", action="store_true", help="also time Chromium's layout of the HTML")
    args = parser.parse_args()
    from tabs.tokenizers import tokenize_views

    text = (SAMPLE * (args.chars // len(SAMPLE) + 1))[: args.chars]
    for key in tk.DEFAULT_SET:  # loading a vocabulary is not part of a request
        tk.get(key).encoding("warm-up")
    print(f"{len(text):,} characters; views draw at most {MAX_SHOWN:,} tokens each (counts are exact)\n")
    total = per_tokenizer(text, list(tk.DEFAULT_SET), args.repeat)
    print(f"\nsum of stages, 4 tokenizers: {total:.3f} s")
    for keys in (MISTRAL, list(tk.DEFAULT_SET)):
        t_req, (html, _) = best(lambda: tokenize_views(text, keys, False, False, "en"), args.repeat)
        print(f"whole request, {len(keys)} tokenizers ({', '.join(keys)}): {t_req:.3f} s = {t_req / 1.0:.0%} of the "
              f"1 s goal; {len(text) * len(keys) / t_req:,.0f} chars/s; {len(html) / 1e6:.2f} MB of HTML")
        if args.browser:
            ms = browser_layout(html)
            print("  Chromium insert + layout: " + (f"{ms:.0f} ms" if ms is not None else "playwright not installed"))


if __name__ == "__main__":
    main()
