"""About this machine: hardware, profile, models per role, cache and loaded models."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from engine.catalog import ROLES
from engine.hub_cache import is_cached, offline_estimate_bytes
from engine.redact import redact_url
from ui.context import AppContext
from ui.i18n import I18N, request_lang, t
from ui.zerogpu import residency_markdown


def roles_table(ctx: AppContext, lang: str = "en") -> pd.DataFrame:
    rows = []
    for role in ROLES:
        spec = ctx.catalog.spec(role)
        est = offline_estimate_bytes(ctx.manager, spec)
        rows.append({
            t("about.col_role", lang): role,
            t("about.col_model", lang): spec.id + (f" → {redact_url(spec.endpoint)}" if spec.endpoint else ""),
            t("about.col_precision", lang): spec.precision + (f" (transformer {spec.transformer_precision})" if spec.transformer_precision else ""),
            t("about.col_cached", lang): "✅" if is_cached(spec) else "—",
            t("about.col_estimate", lang): round(est / 1e9, 2) if est else None,
            t("about.col_loaded", lang): "✅" if ctx.manager.is_loaded(spec) else "",
        })
    return pd.DataFrame(rows)


def overview_markdown(ctx: AppContext, lang: str = "en") -> str:
    hw = ctx.hardware
    loaded = ctx.manager.status()
    loaded_lines = "\n".join(
        f"- `{e['model']}` ({e['precision']}): {e['weights_gb']} GB of weights ({e['gb']} GB budgeted with head-room),"
        f" loaded in {e['load_seconds']} s"
        + (f" · {e['fast_path']}" if e.get("fast_path") else "") for e in loaded) or "- —"
    budget = ctx.manager.budget / 1e9
    used = ctx.manager.used_bytes() / 1e9
    engine_lines = ""
    gpu_section = residency_markdown(ctx, lang)
    stats_fn = ctx.settings.get("engine_stats")
    if callable(stats_fn):
        engine_lines = "\n\n### " + t("about.engine", lang) + "\n" + stats_fn()
    return (
        f"### {t('about.hardware', lang)}\n{hw.summary()}\n\n"
        f"### {t('about.profile', lang)}\n`{ctx.catalog.profile}` — {ctx.catalog.description}\n\n"
        f"{t('about.offline' if ctx.settings.get('offline') else 'about.online', lang)}\n\n"
        f"### {t('about.loaded', lang)} ({used:.2f} / {budget:.1f} GB)\n{loaded_lines}"
        f"{engine_lines}\n\n"
        + (f"{gpu_section}\n\n" if gpu_section else "")
        + f"### {t('about.how_to_change', lang)}\n{t('about.how_to_change_body', lang)}"
    )


def build(ctx: AppContext, tab: gr.Tab | None = None) -> None:
    overview = gr.Markdown(overview_markdown(ctx), elem_id="about-overview")
    table = gr.Dataframe(roles_table(ctx), label=I18N("about.roles"), interactive=False, wrap=True,
                         elem_id="about-roles")
    refresh = gr.Button(I18N("about.refresh"), size="sm")

    def refresh_about(request: gr.Request):
        lang = request_lang(request)
        return overview_markdown(ctx, lang), roles_table(ctx, lang)

    refresh.click(refresh_about, outputs=[overview, table], api_name="about", concurrency_limit=None)
    if tab is not None:
        tab.select(refresh_about, outputs=[overview, table], api_name=False, concurrency_limit=None)
