"""A Base vs Instruct pane as a chat: the earlier turns above, the answer being written at the bottom.

Each turn is the user's message (a bubble on the right, as in the chat apps students know) and
the pane's own answer to it. The answer being generated keeps the ``gen-out`` box (its token
colours, its size in presentation mode); earlier answers are smaller and scroll inside their box
when long, so the newest answer stays in view. The user's text and the answers are marked as
content (``data-content``): the language checks skip them. A result without earlier turns is
drawn exactly as a single comparison always was.
"""
from __future__ import annotations

import html
from typing import Sequence

from engine.chat.conversation import Turn
from ui.i18n import t

CARD_EARLIER = 160  # characters of each earlier message or answer on a wall card
CARD_TEXT = 1_200  # a wall card's text part (ui/share_codec.CARD_TEXT)


def _user(text: str, lang: str) -> str:
    return (f'<div class="bvi-user"><span class="bvi-who">{html.escape(t("bvi.you", lang))}</span>'
            f'<div class="bvi-user-text" data-content>{html.escape(text)}</div></div>')


def pane_html(history: Sequence[Turn], side: str, prompt: str, current: str, lang: str) -> str:
    """The pane's conversation: each earlier turn (message, this pane's answer), then ``prompt``
    and ``current`` (the HTML of the answer being generated)."""
    if not history:
        return current
    turns = [f'<div class="bvi-turn">{_user(turn.user, lang)}'
             f'<div class="bvi-answer" data-content>{html.escape(turn.answer(side).strip()) or "—"}</div></div>'
             for turn in history]
    turns.append(f'<div class="bvi-turn bvi-current">{_user(prompt, lang)}{current}</div>')
    return f'<div class="bvi-chat" data-turns="{len(history) + 1}">{"".join(turns)}</div>'


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def card_text(conversation: Sequence[Turn], side: str) -> str:
    """A wall card's text for one pane of a conversation: the earlier turns shortened, the last
    message and answer as long as the card allows (the newest exchange is the point)."""
    lines = []
    for turn in conversation[:-1]:
        lines += [f"🧑 {_cut(turn.user, CARD_EARLIER)}", f"🤖 {_cut(turn.answer(side), CARD_EARLIER) or '—'}", ""]
    last = conversation[-1]
    lines.append(f"🧑 {_cut(last.user, CARD_EARLIER)}")
    head = "\n".join(lines)
    room = max(80, CARD_TEXT - len(head) - 3)
    answer = last.answer(side).strip()
    return head + "\n🤖 " + (answer if len(answer) <= room else answer[:room - 1].rstrip() + "…")
