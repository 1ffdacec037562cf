"""The line a waiting request shows: how many requests the engine serves before it."""
from __future__ import annotations

from engine.gpu_tasks.jobs import QUEUE_KEY
from ui.i18n import t

__all__ = ["QUEUE_KEY", "queue_text"]


def queue_text(position: int | None, lang: str) -> str:
    """"3 requests ahead of you" (``position`` = requests ahead); "" once the request runs."""
    if position is None:
        return ""
    if position == 0:
        return t("engine.queue_next", lang)
    if position == 1:
        return t("engine.queue_ahead_one", lang)
    return t("engine.queue_ahead", lang, n=position)
