"""The app's header row: title, the FR / EN language switch, presentation mode.

The switch's client side is ``assets/header.js`` (storage, cookie, Gradio's locale); here it
is wired to the server: one request sends the tab labels again in the new language (Gradio
translates them once, when the page is built) with every view registered with
:meth:`ui.context.AppContext.on_language`, re-rendered. On load nothing is sent when the page was
served in the language it starts in (ui/page.py renders those views per language): only a browser
whose last choice differs from what the server could tell re-renders them, through the switch.
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
    header.presentation.change(None, inputs=header.presentation, js="(on) => window.genaiHeader.setPresentation(on)",
                               api_name=False)
    tabs = translated_tabs(demo) if header.language is not None else []  # forced: every locale has its labels
    hooks = ctx.language_hooks
    hook_inputs = [component for _, inputs, _ in hooks for component in inputs]
    outputs = [tab for tab, _ in tabs] + [component for _, _, hook_outputs in hooks for component in hook_outputs]

    def apply_language(lang: str, *values):
        """Tab labels, then every registered view, in ``lang``: one request for the whole page."""
        lang = lang if lang in LANGS else "en"
        out: list = [gr.Tab(label=t(key, lang)) for _, key in tabs]
        start = 0
        for fn, inputs, hook_outputs in hooks:
            result = fn(lang, *values[start:start + len(inputs)])
            start += len(inputs)
            out += list(result) if isinstance(result, (tuple, list)) and len(hook_outputs) > 1 else [result]
        return tuple(out)

    ready = "(lang) => { document.body.dataset.langReady = lang; }"  # tests wait on it
    quiet = {"api_name": False, "show_progress": "hidden", "concurrency_limit": None}
    if header.language is None:  # --lang: no switch; the page is served in that language (ui/page.py)
        forced = json.dumps(forced_lang())
        demo.load(None, outputs=header.presentation, api_name=False,
                  js=f"async () => (await window.genaiHeader.start({forced}))[1]")
        return
    # the page comes rendered in its language (ui/page.py) and the switch set to it: setting the same
    # value again sends nothing; a different one (this browser's last choice) re-renders the views
    demo.load(None, outputs=[header.language, header.presentation], api_name=False,
              js="() => window.genaiHeader.start(null)")
    # the browser side first (cookie, storage, Gradio's locale), then the server's texts
    n_inputs = 1 + len(hook_inputs)
    set_lang = ("async (...values) => { await window.genaiHeader.setLang(values[0]); "
                f"return {'values' if n_inputs > 1 else 'values[0]'}; }}")
    header.language.change(apply_language, inputs=[header.language, *hook_inputs], outputs=outputs, js=set_lang,
                           **quiet).then(None, inputs=header.language, js=ready, api_name=False)
