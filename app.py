"""Generative AI in class — a Gradio demo suite for teaching LLMs and image models.

Run ``python app.py`` (see ``--help``). This is also the Hugging Face Spaces entry point.
"""
from __future__ import annotations

import argparse
import inspect
import logging
import os
from pathlib import Path

import gradio as gr

from engine.catalog import PROFILES, load_catalog
from engine.hardware import detect, resolve_profile
from engine.models import ModelManager
from ui.context import AppContext
from ui.header import build_header, wire_header
from ui.i18n import I18N, build_i18n, set_forced_lang

ASSETS = Path(__file__).resolve().parent / "assets"
TABS = (
    ("tab.bvi", "base_vs_instruct"),
    ("tab.tok", "tokenizers"),
    ("tab.quant", "quantization"),
    ("tab.tech", "techniques"),
    ("tab.img", "image_prompting"),
)

def load_css() -> str:
    files = [ASSETS / "style.css"] + sorted(p for p in ASSETS.glob("*.css") if p.name != "style.css")
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def load_head() -> str:
    return "\n".join(f"<script>{p.read_text(encoding='utf-8')}</script>" for p in sorted(ASSETS.glob("*.js")))


def make_context(profile: str = "auto", settings: dict | None = None) -> AppContext:
    hardware = detect()
    resolved = resolve_profile(profile, hardware)
    catalog = load_catalog(resolved)
    budget = os.environ.get("GENAI_MEMORY_BUDGET_GB")
    manager = ModelManager(catalog, hardware, budget_bytes=int(float(budget) * 1e9) if budget else None)
    from engine import generation

    generation.set_inline(hardware.zerogpu)
    settings = dict(settings or {})
    settings.setdefault("engine_stats", engine_stats_markdown)
    return AppContext(manager=manager, catalog=catalog, hardware=hardware, settings=settings)


def engine_stats_markdown(lang: str = "en") -> str:
    from engine.generation import engine
    from ui.i18n import t

    s = engine().stats()
    running = ", ".join(f"`{m}` × {n}" for m, n in s["running"].items()) or "—"
    return t("about.engine_stats", lang, waiting=s["waiting"], batch=s["batch_size"], running=running,
             tps=s["tokens_per_s"], largest=s["max_batch_seen"], total=s["total_tokens"])


def build_app(ctx: AppContext) -> gr.Blocks:
    import importlib

    with gr.Blocks(title="Generative AI in class", fill_width=True) as demo:
        header = build_header(ctx)
        if ctx.catalog.noise:
            gr.Markdown(I18N("app.noise_banner"), elem_id="noise-banner")
        elif ctx.catalog.stand_in:
            gr.Markdown(I18N("app.stand_in_banner"), elem_id="stand-in-banner")
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
        wire_header(demo, header, ctx)
    return demo


def configure_queue(demo: gr.Blocks) -> gr.Blocks:
    # GPU events set their own concurrency_id / limit; everything else is light (tokenizers, plans).
    return demo.queue(default_concurrency_limit=8, max_size=256)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Generative AI in class — Gradio demo suite")
    parser.add_argument("--host", default=None, help="interface to listen on (default 127.0.0.1; 0.0.0.0 for a LAN)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link for a class")
    parser.add_argument("--profile", choices=("auto",) + PROFILES, default=os.environ.get("GENAI_PROFILE", "auto"),
                        help="model profile (default: auto, from the hardware)")
    parser.add_argument("--lang", choices=("fr", "en"), default=os.environ.get("GENAI_LANG") or None,
                        help="force the UI language (default: the browser's)")
    for role in ("base", "instruct"):
        parser.add_argument(f"--{role}-endpoint", default=None, metavar="URL",
                            help=f"serve the {role} role from an OpenAI-compatible server (e.g. http://gpu-box:8000/v1)")
        parser.add_argument(f"--{role}-endpoint-model", default=None, metavar="NAME",
                            help=f"the {role} model's name on that server (default: the catalog's Hub id)")
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


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    set_forced_lang(args.lang)
    apply_endpoint_flags(args)
    from engine.hub_cache import go_offline_if_unreachable

    offline = go_offline_if_unreachable()
    if offline:
        logging.getLogger("app").warning("Hugging Face Hub not reachable: offline mode, only cached models load")
    ctx = make_context(args.profile, settings={**vars(args), "offline": offline})
    demo = configure_queue(build_app(ctx))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, i18n=build_i18n(),
                css=load_css(), head=load_head(), theme=gr.themes.Soft(), show_error=True)


if __name__ == "__main__":
    main()
