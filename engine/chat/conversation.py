"""A Base vs Instruct conversation: its turns, and what each model receives for the next one.

A turn is one user message and each pane's answer to it (the two models answer differently, so
each pane has its own conversation with the same user messages). For the next message:

* the instruct model gets the whole conversation through its chat template (:func:`messages`:
  user and assistant turns alternating, passed to ``apply_chat_template``);
* the base model gets it as one plain text (:func:`transcript`): its own earlier text exactly as
  it wrote it after each message, a blank line, the next message. No role labels are invented: the
  document it continues is the one on screen, so turn 1's input is today's raw prompt and each turn's
  input extends the previous one. With "wrap the base prompt in the chat template" it gets
  :func:`messages` with its own answers instead.

Histories arrive from the page, from scripts (``/compare``'s ``history``) and from links, so
:func:`parse_history` checks them; every problem is a translated ``UserError``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from engine.errors import UserError
from engine.limits import HISTORY_TURNS, Limits
from engine.limits import current as current_limits

SIDES = ("base", "instruct")
SEPARATOR = "\n\n"  # between the base model's text and the next user message in its transcript


@dataclass(frozen=True)
class Turn:
    """One exchange: the user's message and each model's answer (plain data: crosses to GPU workers)."""

    user: str
    base: str = ""
    instruct: str = ""

    def answer(self, side: str) -> str:
        return self.base if side == "base" else self.instruct


def parse_history(value: Any, limits: Limits | None = None) -> tuple[Turn, ...]:
    """Earlier turns as given to the app: ``None``, a list of ``{"user", "base", "instruct"}`` (a
    JSON text of one is accepted too). Bounded: at most :data:`~engine.limits.HISTORY_TURNS`
    turns, each message ``prompt_chars`` long, each pane's conversation ``card_chars`` in all."""
    limits = limits or current_limits()
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):
        if len(value) > limits.card_chars * 3:
            raise UserError("bvi.err.history_chars", limit=limits.card_chars)
        try:
            value = json.loads(value)
        except ValueError:
            raise UserError("bvi.err.history_format") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, dict) for item in value):
        raise UserError("bvi.err.history_format")
    if len(value) > HISTORY_TURNS:
        raise UserError("bvi.err.history_turns", n=len(value), limit=HISTORY_TURNS)
    turns = []
    for i, item in enumerate(value, 1):
        user, base, instruct = item.get("user"), item.get("base", ""), item.get("instruct", "")
        if not all(isinstance(text, str) for text in (user, base, instruct)) or not user.strip():
            raise UserError("bvi.err.history_turn", n=i)
        if len(user) > limits.prompt_chars:
            raise UserError("bvi.err.history_message", n=i, chars=len(user), limit=limits.prompt_chars)
        turns.append(Turn(user, base, instruct))
    for side in SIDES:
        chars = sum(len(turn.user) + len(turn.answer(side)) for turn in turns)
        if chars > limits.card_chars:
            raise UserError("bvi.err.history_chars", limit=limits.card_chars)
    return tuple(turns)


def as_json(turns: Sequence[Turn]) -> list[dict]:
    """Turns as the API and the raw result give them (and take them back)."""
    return [asdict(turn) for turn in turns]


def messages(history: Sequence[Turn], prompt: str, side: str = "instruct") -> list[dict]:
    """The chat turns of ``side``'s conversation followed by the new message. Answers are passed
    stripped, as chat applications store them: the template puts its own spacing around them."""
    out: list[dict] = []
    for turn in history:
        out += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.answer(side).strip()}]
    return out + [{"role": "user", "content": prompt}]


def transcript(history: Sequence[Turn], prompt: str) -> str:
    """The base model's document: each message followed by what the base model wrote after it,
    then a blank line and the next message."""
    parts = [(turn.user + turn.base).rstrip() for turn in history]
    return SEPARATOR.join(parts + [prompt])
