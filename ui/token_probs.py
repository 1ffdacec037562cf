"""Generated text, optionally coloured by each token's probability, with a top-5 tooltip.

Colours: five steps of 20 %, from dark orange (improbable: the surprising tokens stand out) through
grey to dark blue (certain), a blue–orange scale that colour-blind readers tell apart. Five, not ten:
on a washed-out projector ten pale steps merged into about four bands; these five stay apart (and
apart from the white page) even then, each with the text colour that reads on it (white on the two
dark ends). The legend (:func:`legend_html`) draws those same steps, each labelled with its range.

Tooltip (``assets/token_probs.js``): on hover, on tap and on keyboard focus (tokens are focusable,
arrow keys move between them) it lists the token's probability and the top-5 alternatives with the
chosen one marked. Each token carries its data (``data-p``, ``data-top``); the container carries
the words and the number language, so a result keeps its language until it is generated again.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Sequence

from engine.generation import TokenInfo
from ui.i18n import t

# one colour per 20 % of probability: orange → grey → blue; and the text colour that reads on each
STEPS = ("#a6480d", "#f39a3d", "#b8b8b8", "#5aa0d6", "#1f5a9e")
TEXT = ("#ffffff", "#111111", "#111111", "#111111", "#ffffff")
N_STEPS = len(STEPS)


def step(prob: float) -> int:
    """The colour step of a probability: 0 for [0, 20 %), …, 4 for [80 %, 100 %]."""
    return min(N_STEPS - 1, max(0, int(prob * N_STEPS)))


def colour(prob: float) -> str:
    return STEPS[step(prob)]


def _token_span(tok: TokenInfo, index: int) -> str:
    top = json.dumps([[text, round(p, 4)] for text, p in tok.top], ensure_ascii=False)
    k = step(tok.prob)
    return (f'<span class="tok-p" tabindex="{0 if index == 0 else -1}" style="background:{STEPS[k]};color:{TEXT[k]}" '
            f'data-p="{tok.prob:.4f}" data-id="{tok.id}" data-top="{html.escape(top, quote=True)}">'
            f'{html.escape(tok.text)}</span>')


@dataclass
class Rendered:
    """One pane's output as rendered so far in a streamed result, kept by the caller from update to
    update: each update escapes only the new text and renders only the new tokens."""

    spans: list[str] = field(default_factory=list)
    text: str = ""
    escaped: str = ""
    joined: str = ""  # the first ``joined_n`` spans, joined
    joined_n: int = 0

    def escape(self, text: str) -> str:
        if not text.startswith(self.text):  # the final text can differ from the streamed one
            self.text, self.escaped = "", ""
        self.escaped += html.escape(text[len(self.text):])
        self.text = text
        return self.escaped

    def join(self, tokens: Sequence[TokenInfo], n: int) -> str:
        """The spans of the first ``n`` of ``tokens``, rendering and joining only the new ones."""
        self.spans.extend(_token_span(tokens[i], i) for i in range(len(self.spans), len(tokens)))
        if n < self.joined_n:  # the last token dropped (end of sequence)
            self.joined, self.joined_n = "", 0
        self.joined += "".join(self.spans[self.joined_n:n])
        self.joined_n = n
        return self.joined


def render_output(text: str, tokens: Sequence[TokenInfo] | None, show_probs: bool, drop_last: bool = False,
                  elem_class: str = "gen-out", lang: str = "en", rendered: Rendered | None = None) -> str:
    rendered = rendered or Rendered()
    if not show_probs or not tokens:
        return f'<div class="{elem_class}">{rendered.escape(text)}</div>'
    spans = rendered.join(tokens, len(tokens) - 1 if drop_last else len(tokens))
    words = {"lang": lang, "tip-prob": t("ui.tip_prob", lang), "tip-alts": t("ui.tip_alternatives", lang),
             "tip-chosen": t("ui.tip_chosen", lang), "tip-none": t("ui.tip_none", lang)}
    data = " ".join(f'data-{k}="{html.escape(v, quote=True)}"' for k, v in words.items())
    return (f'<div class="{elem_class} with-probs" role="group" aria-label="{html.escape(t("ui.tip_group", lang), quote=True)}" '
            f'{data}>{spans}</div>')


def legend_html(lang: str = "en") -> str:
    """The colour scale the tokens use: one swatch per step, in the step's colours, with its range."""
    from ui import fmt

    def bound(i: int) -> str:
        return fmt.number(100 * i // N_STEPS, lang)

    swatches = "".join(f'<span class="tok-legend-step" data-step="{i}" style="background:{c};color:{TEXT[i]}">'
                       f'{bound(i)}–{html.escape(fmt.percent((i + 1) / N_STEPS, lang))}</span>'
                       for i, c in enumerate(STEPS))
    return (f'<div class="tok-legend" lang="{lang}"><span class="tok-legend-title">{html.escape(t("ui.legend_title", lang))}</span>'
            f'<span class="tok-legend-end">{html.escape(t("ui.legend_low", lang))}</span>'
            f'<span class="tok-legend-bar">{swatches}</span>'
            f'<span class="tok-legend-end">{html.escape(t("ui.legend_high", lang))}</span>'
            f'</div>')
