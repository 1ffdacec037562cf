"""Generative AI in class — a Gradio demo suite for teaching LLMs and image models.

Run ``python app.py`` (see ``--help``). This is also the Hugging Face Spaces entry point.
"""
from __future__ import annotations

import argparse
import inspect
import logging
import os
from pathlib import Path

try:  # on a ZeroGPU Space this patches torch: it must come before anything touches CUDA
    import spaces  # noqa: F401
except ImportError:  # pragma: no cover - listed in requirements.txt; off-Space it does nothing
    pass
import gradio as gr
from starlette.middleware import Middleware

from engine import limits as limits_mod
from engine.runtime import tempfiles
from engine.models.catalog import PROFILES, load_catalog
from engine.models.hardware import detect, resolve_profile
from engine.models.policy import ENV_FLAG as CUSTOM_MODELS_ENV, set_custom_models_allowed
from engine.serving.manager import ModelManager
from engine.runtime.redact import install_log_redaction
from ui import share
from ui.context import AppContext
from ui.header import build_header, wire_header
from ui.i18n import I18N, build_i18n, forced_lang, set_forced_lang, t
from ui.page import LanguagePage, localized_props

ASSETS = Path(__file__).resolve().parent / "assets"
TABS = (
    ("tab.bvi", "base_vs_instruct"),
    ("tab.tok", "tokenizers"),
    ("tab.quant", "quantization"),
    ("tab.tech", "techniques"),
    ("tab.img", "image_prompting"),
    ("tab.wall", "wall"),
)

def load_css() -> str:
    files = [ASSETS / "style.css"] + sorted(p for p in ASSETS.glob("*.css") if p.name != "style.css")
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def load_head() -> str:
    """The page's scripts, run once Gradio is up (``assets/boot.js`` runs before it: ui/page.py)."""
    return "\n".join(f"<script>{p.read_text(encoding='utf-8')}</script>" for p in sorted(ASSETS.glob("*.js"))
                     if p.name != "boot.js")


def theme() -> gr.themes.Base:
    """Gradio's Soft theme with every text at 4.5:1 or more against its background (issue #24): its
    pale indigo labels, buttons and selected choices, and its grey hints, footer and placeholders
    (#9ca3af, 2.5:1) were too faint for a projector or a phone in the sun."""
    return gr.themes.Soft().set(
        color_accent="*primary_700", block_label_text_color="*primary_700", block_title_text_color="*primary_700",
        button_primary_background_fill="*primary_700", button_primary_background_fill_hover="*primary_800",
        button_primary_border_color="*primary_700", checkbox_label_background_fill_selected="*primary_700",
        checkbox_background_color_selected="*primary_700", checkbox_border_color_focus="*primary_700",
        slider_color="*primary_600", body_text_color_subdued="*neutral_600", block_info_text_color="*neutral_600",
        input_placeholder_color="*neutral_500", link_text_color="*secondary_700")


def make_context(profile: str = "auto", settings: dict | None = None) -> AppContext:
    hardware = detect()
    resolved = resolve_profile(profile, hardware)
    limits_mod.set_profile(resolved)
    catalog = load_catalog(resolved)
    budget = os.environ.get("GENAI_MEMORY_BUDGET_GB")
    manager = ModelManager(catalog, hardware, budget_bytes=int(float(budget) * 1e9) if budget else None)
    from engine import generation, gpu_tasks
    from ui.i18n import t

    generation.set_inline(hardware.zerogpu)
    gpu_tasks.bind(manager, translate=t, image_slots=limits_mod.limits_for(resolved).image_slots)
    generation.set_memory(manager)  # the engine books its KV caches with the model cache
    settings = dict(settings or {})
    settings.setdefault("engine_stats", engine_stats_markdown)
    return AppContext(manager=manager, catalog=catalog, hardware=hardware, settings=settings)


def engine_stats_markdown(lang: str = "en") -> str:
    from engine.generation import engine
    from ui.i18n import t

    s = engine().stats()
    running = ", ".join(f"`{m}` × {n}" for m, n in s["running"].items()) or "—"
    mean = s["rows_stepped"] / s["batch_steps"] if s["batch_steps"] else 0.0
    return (t("about.engine_stats", lang, waiting=s["waiting"], batch=s["batch_size"], running=running,
              tps=s["tokens_per_s"], largest=s["max_batch_seen"], total=s["total_tokens"]) + "\n"
            + t("engine.stats_batching", lang, rows=s["rows_stepped"], steps=s["batch_steps"], mean=mean))


def build_app(ctx: AppContext) -> gr.Blocks:
    import importlib

    age = int(ctx.limits.temp_age_s)
    # delete_cache: Gradio's copies of returned files are deleted an hour after they were made
    # the title (the browser tab's name) is set per visitor, in their language, by ui/page.py
    with gr.Blocks(title=t("app.page_title", forced_lang() or "en"), fill_width=True,
                   delete_cache=(min(600, age), age)) as demo:
        header = build_header(ctx)
        if ctx.catalog.noise:
            gr.Markdown(I18N("app.noise_banner"), elem_id="noise-banner")
        elif ctx.catalog.stand_in:
            gr.Markdown(I18N("app.stand_in_banner"), elem_id="stand-in-banner")
        share.restore_banner()
        # share.install finds the tabs (and each tab's id) to open links; the bar wraps on phones
        with gr.Tabs(overflow_behavior="wrap", elem_id="main-tabs"):
            for label_key, module_name in TABS:
                with gr.Tab(I18N(label_key), id=module_name, elem_id=f"tab-{module_name}") as tab:
                    build = importlib.import_module(f"tabs.{module_name}").build
                    if "tab" in inspect.signature(build).parameters:
                        build(ctx, tab=tab)  # tabs that refresh themselves when selected
                    else:
                        build(ctx)
            with gr.Tab(I18N("tab.about"), id="about", elem_id="tab-about") as about_tab:
                importlib.import_module("tabs.about").build(ctx, about_tab)
        share.install(demo, ctx)
        wire_header(demo, header, ctx)
    return demo


def configure_queue(demo: gr.Blocks, ctx: AppContext | None = None) -> gr.Blocks:
    """The queue, and what keeps a public link safe (issue #19): every queued event validated
    before it is queued, one queue group per kind of work, bounded per-session memory.
    ``api_open=False``: queued events cannot be called around the queue (``/run/…``)."""
    limits = ctx.limits if ctx is not None else limits_mod.current()
    demo = demo.queue(default_concurrency_limit=8, max_size=limits.queue_size, api_open=False)
    if ctx is not None:
        from ui import scheduling, sessions, validation

        validation.install(demo, ctx, limits)
        scheduling.apply(demo, limits, ctx)
        sessions.install(demo)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Generative AI in class — Gradio demo suite")
    parser.add_argument("--host", default=None, help="interface to listen on (default 127.0.0.1; 0.0.0.0 for a LAN)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link for a class")
    parser.add_argument("--profile", choices=("auto",) + PROFILES, default=os.environ.get("GENAI_PROFILE", "auto"),
                        help="model profile (default: auto, from the hardware)")
    parser.add_argument("--lang", choices=("fr", "en"), default=os.environ.get("GENAI_LANG") or None,
                        help="force the UI language (default: the browser's)")
    parser.add_argument("--data-dir", default=os.environ.get("GENAI_DATA_DIR") or None, metavar="PATH",
                        help="where shared experiments and class walls are stored (default: /data/genai-class "
                             "on a Space with persistent storage, else ./data)")
    parser.add_argument("--hub-backup", default=os.environ.get("GENAI_HUB_BACKUP_REPO") or None, metavar="USER/DATASET",
                        help="back the data folder up to this private Hub dataset (needs HF_TOKEN)")
    for role in ("base", "instruct"):
        parser.add_argument(f"--{role}-endpoint", default=None, metavar="URL",
                            help=f"serve the {role} role from an OpenAI-compatible server (e.g. http://gpu-box:8000/v1)")
        parser.add_argument(f"--{role}-endpoint-model", default=None, metavar="NAME",
                            help=f"the {role} model's name on that server (default: the catalog's Hub id)")
    parser.add_argument("--allow-custom-models", action="store_true",
                        default=os.environ.get(CUSTOM_MODELS_ENV, "").lower() in {"1", "true", "yes", "on"},
                        help="let students load any Hub id (downloads allowed) or a folder of the model caches; "
                             "default: only the catalog's models")
    return parser.parse_args(argv)


def apply_endpoint_flags(args: argparse.Namespace) -> None:
    """CLI flags become the GENAI_<ROLE>_ENDPOINT[_MODEL] variables the catalog reads."""
    for role in ("base", "instruct"):
        url = getattr(args, f"{role}_endpoint")
        model = getattr(args, f"{role}_endpoint_model")
        if url:
            os.environ[f"GENAI_{role.upper()}_LLM_ENDPOINT"] = url
        if model:
            os.environ[f"GENAI_{role.upper()}_LLM_ENDPOINT_MODEL"] = model


def patient_localhost_check(wait_s: float = 60.0) -> None:
    """Gradio checks that its own address answers before it returns from ``launch()``, and exits
    ("When localhost is not accessible, a shareable link must be created") when the first HEAD
    request times out after 3 s, as it does on a busy machine (a class's T4 box loading models, a
    loaded CI runner). Ours retries until ``wait_s`` has passed."""
    import time

    import httpx
    from gradio import networking

    def url_ok(url: str) -> bool:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                if httpx.head(url, timeout=5, verify=False).status_code in (200, 301, 302, 303, 307, 308, 401):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return False

    networking.url_ok = url_ok


def main(argv: list[str] | None = None) -> None:
    install_log_redaction()  # before anything logs: keys and URL credentials never reach the logs
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    set_forced_lang(args.lang)
    apply_endpoint_flags(args)
    set_custom_models_allowed(args.allow_custom_models)
    from engine.models.hub_cache import go_offline_if_unreachable

    offline = go_offline_if_unreachable()
    if offline:
        logging.getLogger("app").warning("Hugging Face Hub not reachable: offline mode, only cached models load")
    ctx = make_context(args.profile, settings={**vars(args), "offline": offline})
    if ctx.hardware.zerogpu:  # ZeroGPU moves what is on CUDA at launch into every GPU worker
        from engine.serving.manager import has_token
        from engine.models.preload import prefetch, preload

        preload(ctx.manager, ctx.catalog)
        prefetch(ctx.catalog, has_token())
    demo = configure_queue(build_app(ctx), ctx)
    limits = ctx.limits
    patient_localhost_check()
    # the page in the visitor's language from its first paint (ui/page.py): the views' first values are
    # rendered once per language here; ssr_mode=False: that page is the one Python serves (not Node's)
    page = Middleware(LanguagePage, hooks=ctx.language_hooks, props=localized_props(ctx.language_hooks))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, i18n=build_i18n(),
                css=load_css(), head=load_head(), theme=theme(), show_error=True,
                state_session_capacity=limits.sessions, max_file_size=limits.upload_bytes,
                allowed_paths=[str(tempfiles.root())], ssr_mode=False, app_kwargs={"middleware": [page]})


if __name__ == "__main__":
    main()
