"""How a tab follows a GPU call (:mod:`engine.gpu_tasks`) in the visitor's language.

Stop keys (one per session and tab part), progress events for ``gr.Progress``, notices as
``gr.Warning``, and the About panel's "what is on the GPU" section.
"""
from __future__ import annotations

from typing import Callable

import gradio as gr

from engine import gpu_tasks
from engine.gpu_tasks import Progress, Skipped, TimeLimit
from ui.i18n import t
from ui.wording import progress_stage

GB = 1e9


def stop_key(request: gr.Request | None, kind: str) -> tuple[str, str]:
    """The key a tab part's GPU calls run under: one visitor (session) and one Stop button."""
    return (getattr(request, "session_hash", None) or "default", kind)


def stop(request: gr.Request | None, kind: str) -> None:
    """The Stop button's handler: the running call ends at its next step, even in a ZeroGPU worker."""
    gpu_tasks.stop(stop_key(request, kind))


def progress_to(progress: gr.Progress, lang: str,
                render: Callable[[Progress], str | None] | None = None) -> Callable[[Progress], None]:
    """Show a call's progress events in ``progress`` (their key translated, or their text)."""
    def show(event: Progress) -> None:
        text = render(event) if render else None
        if text is None:  # a UI string key, or the engine's English stage worded in ``lang``
            text = t(event.key, lang, **event.params) if event.key else progress_stage(event.text, lang)
        progress(event.fraction, desc=text or None)
    return show


def warn_notice(lang: str, skipped: Callable[[Skipped], str] | None = None) -> Callable[[Skipped | TimeLimit], None]:
    """Notices as warnings: the GPU time limit reached, or a part skipped (``skipped`` words it)."""
    def show(event: Skipped | TimeLimit) -> None:
        if isinstance(event, TimeLimit):
            gr.Warning(t("zerogpu.time_limit", lang, seconds=round(event.seconds)))
        elif skipped is not None:
            gr.Warning(skipped(event))
        else:
            gr.Warning(t(event.key, lang, **event.params))
    return show


def residency_markdown(ctx, lang: str) -> str:
    """About: on ZeroGPU, which models stay on the GPU and which load inside the call that needs them."""
    if not (ctx.hardware.zerogpu or ctx.catalog.profile == "zerogpu"):
        return ""
    from engine.models.preload import SLICE_BYTES, plan, resident_bytes

    rows = plan(ctx.manager, ctx.catalog)

    def line(r) -> str:
        size = gigabytes(r.estimate_bytes, lang) if r.estimate_bytes else "—"
        return f"- `{r.role}`: `{r.spec.id}` ({r.spec.precision}) · {size}"

    resident = "\n".join(line(r) for r in rows if r.resident) or "- —"
    on_demand = "\n".join(line(r) for r in rows if not r.resident) or "- —"
    return (f"### {t('zerogpu.about_title', lang)}\n"
            + t("zerogpu.about_body", lang, used=gigabytes(resident_bytes(rows), lang, unit=False),
                slice=gigabytes(SLICE_BYTES, lang, unit=False, decimals=0))
            + f"\n\n**{t('zerogpu.resident', lang)}**\n{resident}\n\n**{t('zerogpu.on_demand', lang)}**\n{on_demand}")


def gigabytes(n: float, lang: str, unit: bool = True, decimals: int = 1) -> str:
    """``36.2 GB`` / ``36,2 Go``."""
    text = f"{n / GB:,.{decimals}f}"
    if lang == "fr":
        text = text.replace(",", "\u202f").replace(".", ",")
    return text + ((" Go" if lang == "fr" else " GB") if unit else "")
