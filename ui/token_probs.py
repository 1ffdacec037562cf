"""HTML for generated text, optionally coloured by token probability (hover: top alternatives)."""
from __future__ import annotations

import html

from engine.generation import TokenInfo


def _colour(prob: float) -> str:
    return f"hsl({int(120 * max(0.0, min(1.0, prob)))}, 75%, 84%)"


def _title(tok: TokenInfo) -> str:
    lines = [f"p = {tok.prob:.1%}  (id {tok.id})"]
    lines += [f"{'→ ' if text == tok.text else '   '}{text!r}: {p:.1%}" for text, p in tok.top]
    return html.escape("\n".join(lines), quote=True)


def render_output(text: str, tokens: list[TokenInfo] | None, show_probs: bool, drop_last: bool = False,
                  elem_class: str = "gen-out") -> str:
    if not show_probs or not tokens:
        return f'<div class="{elem_class}">{html.escape(text)}</div>'
    shown = tokens[:-1] if drop_last else tokens
    spans = "".join(
        f'<span class="tok-p" style="background:{_colour(t.prob)}" title="{_title(t)}" '
        f'data-p="{t.prob:.4f}">{html.escape(t.text)}</span>'
        for t in shown
    )
    return f'<div class="{elem_class} with-probs">{spans}</div>'
