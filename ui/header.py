"""The app's header row: title, the FR / EN language switch, presentation mode.

The switch's client side is ``assets/header.js`` (storage, cookie, Gradio's locale); here it
is wired to the server: tab labels (Gradio translates them once, when the page is built) are
sent again in the new language, then every hook registered with
:meth:`ui.context.AppContext.on_language` re-renders its view.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr

from ui.context import AppContext
from ui.i18n import I18N, LANGS, forced_lang, t


@dataclass
class Header:
    language: gr.Radio | None  # None when --lang forces the language
    presentation: gr.Checkbox


def build_header(ctx: AppContext) -> Header:
    with gr.Row(elem_classes="app-header", equal_height=True):
        with gr.Column(scale=5, min_width=240):
            gr.Markdown(I18N("app.title"), elem_id="app-title", elem_classes="app-title")
            gr.Markdown(I18N("app.subtitle"), elem_id="app-subtitle")
        with gr.Column(scale=1, min_width=200, elem_id="app-switches"):
            language = None
            if not forced_lang():
                language = gr.Radio([("FR", "fr"), ("EN", "en")], value=None, label=I18N("ui.language"),
                                    show_label=False, container=False, elem_id="lang-switch")
            presentation = gr.Checkbox(False, label=I18N("app.presentation"), elem_id="presentation-toggle",
                                       container=False)
    return Header(language, presentation)


def translated_tabs(demo: gr.Blocks) -> list[tuple[gr.Tab, str]]:
    """Every tab whose label is a UI string key, with that key."""
    return [(block, block.label.key) for block in demo.blocks.values()
            if isinstance(block, gr.Tab) and isinstance(block.label, gr.i18n.I18nData)]


def wire_header(demo: gr.Blocks, header: Header, ctx: AppContext) -> None:
    """Call at the end of the Blocks: restores both switches on load and wires the language change."""
    forced = json.dumps(forced_lang())
    header.presentation.change(None, inputs=header.presentation, js="(on) => window.genaiHeader.setPresentation(on)",
                               api_name=False)
    if header.language is None:
        demo.load(None, outputs=header.presentation, api_name=False,
                  js=f"async () => {{ await window.genaiHeader.setLang({forced}); "
                     "return window.genaiHeader.initialPresentation(); }")
        return
    demo.load(None, outputs=[header.language, header.presentation], api_name=False,
              js="() => [window.genaiHeader.initialLang(null), window.genaiHeader.initialPresentation()]")
    tabs = translated_tabs(demo)

    def relabel(lang: str):
        lang = lang if lang in LANGS else "en"
        return tuple(gr.Tab(label=t(key, lang)) for _, key in tabs)

    event = header.language.change(relabel, inputs=header.language, outputs=[tab for tab, _ in tabs],
                                   js="(lang) => window.genaiHeader.setLang(lang)", api_name=False, queue=False,
                                   show_progress="hidden")
    for fn, inputs, outputs in ctx.language_hooks:
        event.then(fn, inputs=[header.language, *inputs], outputs=outputs, api_name=False, show_progress="hidden",
                   concurrency_limit=None)
