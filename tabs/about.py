"""About this machine: hardware, profile, models per role, cache and loaded models."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from engine.models.catalog import ROLES
from engine.models.hardware import GB, Hardware
from engine.models.hub_cache import is_cached, offline_estimate_bytes
from engine.runtime.redact import redact_url
from ui import fmt
from ui.context import AppContext
from ui.i18n import I18N, request_lang, t, tables
from ui.zerogpu import residency_markdown


# =============================================================================== helpers
def roles_table(ctx: AppContext, lang: str = "en") -> pd.DataFrame:
    rows = []
    for role in ROLES:
        spec = ctx.catalog.spec(role)
        est = offline_estimate_bytes(ctx.manager, spec)
        precision = spec.precision
        if spec.transformer_precision:
            precision += " " + t("about.transformer_precision", lang, precision=spec.transformer_precision)
        rows.append({
            t("about.col_role", lang): role,
            t("about.col_model", lang): spec.id + (f" → {redact_url(spec.endpoint)}" if spec.endpoint else ""),
            t("about.col_precision", lang): precision,
            t("about.col_cached", lang): "✅" if is_cached(spec) else "—",
            t("about.col_estimate", lang): round(est / 1e9, 2) if est else None,
            t("about.col_loaded", lang): "✅" if ctx.manager.is_loaded(spec) else "",
        })
    return fmt.table(pd.DataFrame(rows), lang, {t("about.col_estimate", lang): 2})


def hardware_summary(hw: Hardware, lang: str) -> str:
    if hw.gpu_name:
        gpu = t("about.gpu", lang, name=hw.gpu_name, gb=round(hw.gpu_bytes / GB),
                bf16=t("about.bf16" if hw.bf16 else "about.no_bf16", lang))
    else:
        gpu = t("about.no_gpu", lang)
    line = t("about.machine", lang, cpu=hw.cpu_name, cores=hw.cpu_cores, ram=round(hw.ram_bytes / GB), gpu=gpu)
    if hw.space_id:
        line += " · " + t("about.space_zerogpu" if hw.zerogpu else "about.space", lang, space=hw.space_id)
    return line


def profile_description(ctx: AppContext, lang: str) -> str:
    key = f"about.profile_desc.{ctx.catalog.profile}"
    return t(key, lang) if key in tables()[lang] else ctx.catalog.description


def fallback_reason(state: dict, lang: str) -> str:
    """Why the compiled decode step was given up: its stage in the page's language, then the error."""
    stage = f"about.fallback.{state.get('fallback_stage')}"
    if stage not in tables()[lang]:
        return state["fallback"]
    return t("about.fallback_reason", lang, why=t(stage, lang), detail=state["fallback"].split(": ", 1)[-1])


def decoding_text(state: dict, lang: str) -> str:
    kind = (state or {}).get("kind", "")
    if kind in ("compiled", "static"):
        buckets = "/".join(map(str, state["buckets"]))
        if state.get("fallback"):
            return t("about.decoding_fallback", lang, buckets=buckets, seconds=state["warmup_s"],
                     reason=fallback_reason(state, lang))
        return t(f"about.decoding_{kind}", lang, buckets=buckets, seconds=state["warmup_s"])
    if kind == "failed":
        return t("about.decoding_failed", lang, error=state.get("error", ""))
    return t("about.decoding_plain", lang) if kind == "plain" else ""


def loaded_lines(ctx: AppContext, lang: str) -> str:
    lines = []
    for e in ctx.manager.status():
        line = t("about.loaded_line", lang, model=e["model"], precision=e["precision"], weights=e["weights_gb"],
                 budgeted=e["gb"], seconds=e["load_seconds"])
        decoding = decoding_text(e.get("decoding", {}), lang)
        lines.append(f"- {line}" + (f" · {decoding}" if decoding else ""))
    return "\n".join(lines) or "- —"


def overview_markdown(ctx: AppContext, lang: str = "en") -> str:
    budget = ctx.manager.budget / 1e9
    used = ctx.manager.used_bytes() / 1e9
    engine_lines = ""
    gpu_section = residency_markdown(ctx, lang)
    stats_fn = ctx.settings.get("engine_stats")
    if callable(stats_fn):
        engine_lines = "\n\n### " + t("about.engine", lang) + "\n" + stats_fn(lang)
    return (
        f"### {t('about.hardware', lang)}\n{hardware_summary(ctx.hardware, lang)}\n\n"
        f"### {t('about.profile', lang)}\n`{ctx.catalog.profile}` — {profile_description(ctx, lang)}\n\n"
        f"{t('about.offline' if ctx.settings.get('offline') else 'about.online', lang)}\n\n"
        f"### {t('about.loaded', lang)} ({t('about.used_of_budget', lang, used=used, budget=budget)})\n"
        f"{loaded_lines(ctx, lang)}"
        f"{engine_lines}\n\n"
        + (f"{gpu_section}\n\n" if gpu_section else "")
        + f"### {t('about.how_to_change', lang)}\n{t('about.how_to_change_body', lang)}"
    )


# =============================================================================== layout
@dataclass
class View:
    overview: gr.Markdown
    table: gr.Dataframe
    refresh: gr.Button


def layout(ctx: AppContext) -> View:
    overview = gr.Markdown(overview_markdown(ctx), elem_id="about-overview")
    table = gr.Dataframe(roles_table(ctx), label=I18N("about.roles"), interactive=False, wrap=True,
                         elem_id="about-roles")
    refresh = gr.Button(I18N("about.refresh"), size="sm")
    return View(overview, table, refresh)


# =============================================================================== handlers
def about_for(ctx: AppContext):
    """The page in a language (the language switch's hook), and for a request (the tab's events)."""
    def about(lang: str) -> tuple[str, pd.DataFrame]:
        return overview_markdown(ctx, lang), roles_table(ctx, lang)

    def refresh_about(request: gr.Request):
        return about(request_lang(request))

    return about, refresh_about


# =============================================================================== wiring
def wire(view: View, ctx: AppContext, tab: gr.Tab | None = None) -> None:
    about, refresh_about = about_for(ctx)
    view.refresh.click(refresh_about, outputs=[view.overview, view.table], api_name="about", concurrency_limit=None)
    if tab is not None:
        tab.select(refresh_about, outputs=[view.overview, view.table], api_name=False, concurrency_limit=None)
    ctx.on_language(about, outputs=[view.overview, view.table])


def build(ctx: AppContext, tab: gr.Tab | None = None) -> None:
    wire(layout(ctx), ctx, tab)
