"""“Give the model a source” on Base vs Instruct: the source's controls, what each pane shows of the
passages it was given, and the one-click comparison without / with the source.

The tab adds the controls' values to its ``compare`` action (``panel.inputs``: ``source``,
``source_mode``, ``source_model``, ``passages``); :func:`plan` turns them into an
``engine.retrieval.SourcePlan`` (the passages, retrieved before any GPU work) that the comparison
job carries. Being inputs of the action, they travel in links and to the class wall like the rest.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

import gradio as gr

from engine.retrieval import DEFAULT_K, MAX_K, SourcePlan, load_presets, make_plan
from ui.i18n import I18N, forced_lang, request_lang, t
from ui.widgets import on_run

PANE_TITLES = ("bvi.base_title", "bvi.instruct_title")
WITH_WITHOUT_TITLES = ("src.without_title", "src.with_title")
SHOWN_CHARS = 320  # of each passage in a pane (the whole passage is in "what the model sees")


@dataclass
class SourcePanel:
    accordion: gr.Accordion
    preset: gr.Dropdown
    source: gr.Textbox
    mode: gr.Radio
    model: gr.Radio
    passages: gr.Slider
    run: gr.Button

    @property
    def inputs(self) -> list[gr.components.Component]:
        """What the comparison reads, in the order of its arguments after the sampling settings."""
        return [self.source, self.mode, self.model, self.passages]


def preset_choices(lang: str) -> list[tuple[str, str]]:
    lang = "fr" if lang == "fr" else "en"
    return [(p.title[lang], p.id) for p in load_presets()]


def build() -> SourcePanel:
    """The controls, in a closed accordion (placed by the tab under its run row)."""
    with gr.Accordion(I18N("src.panel"), open=False, elem_id="src-panel") as accordion:
        gr.Markdown(I18N("src.intro"), elem_classes="tab-intro")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                source = gr.Textbox("", lines=5, max_lines=14, label=I18N("src.text"),
                                    placeholder=I18N("src.placeholder"), info=I18N("src.text_info"),
                                    elem_id="src-text")
            with gr.Column(scale=2, min_width=260):
                preset = gr.Dropdown(choices=preset_choices(forced_lang() or "en"), value=None,
                                     label=I18N("src.preset"), elem_id="src-preset")
                mode = gr.Radio([(I18N("src.mode_off"), "off"), (I18N("src.mode_both"), "both"),
                                 (I18N("src.mode_with_without"), "with_without")], value="off",
                                label=I18N("src.mode"), elem_id="src-mode")
                model = gr.Radio([(I18N("src.model_instruct"), "instruct"), (I18N("src.model_base"), "base")],
                                 value="instruct", label=I18N("src.model"), elem_id="src-model")
                passages = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label=I18N("src.passages"),
                                     elem_id="src-passages")
        run = gr.Button(I18N("src.run"), variant="primary", elem_id="src-run", elem_classes="main-action")
    return SourcePanel(accordion, preset, source, mode, model, passages, run)


def pane_block(side: str) -> gr.HTML:
    """Under a pane's output: the passages that pane's model was given (empty without a source)."""
    return gr.HTML(elem_id=f"bvi-{side}-passages", elem_classes="src-pane")


def wire(panel: SourcePanel, prompt: gr.Textbox, compare, queue: dict, inputs: list, outputs: list, ctx) -> None:
    """The example sources, the one-click comparison and the language switch."""

    def pick_source(preset: str | None, prompt: str, source_mode: str, request: gr.Request = None):
        """An example source in the page's language; its first question too when the prompt is
        empty or still another example's question; and, if no source was in use, the mode that
        compares without and with it (picking a source means using it)."""
        found = next((p for p in load_presets() if p.id == preset), None)
        if found is None:
            return gr.skip(), gr.skip(), gr.skip()
        lang = request_lang(request)
        asked = {q for p in load_presets() for qs in p.questions.values() for q, _ in qs}
        keep = (prompt or "").strip() and prompt.strip() not in asked
        return (found.text(lang), gr.skip() if keep else found.first_question(lang),
                "with_without" if source_mode in (None, "", "off") else gr.skip())

    panel.preset.change(pick_source, inputs=[panel.preset, prompt, panel.mode],
                        outputs=[panel.source, prompt, panel.mode], api_name=False, queue=False)
    # one click: the mode the comparison will read, then the comparison itself (a link keeps the mode),
    # one run at a time like Generate
    def set_mode_then(run, **event):
        return panel.run.click(lambda: "with_without", outputs=panel.mode, api_name=False, queue=False).then(
            run, **event)

    on_run(set_mode_then, compare, action="compare", buttons=[(panel.run, "src.run")], inputs=inputs,
           outputs=outputs, api_name=False, **queue)
    ctx.on_language(lambda lang: gr.Dropdown(choices=preset_choices(lang)), outputs=[panel.preset])


def plan(source: str, mode: str, model: str, passages: float, prompt: str, lang: str) -> SourcePlan | None:
    """The passages retrieved for ``prompt`` (``UserError`` for an empty or oversized source)."""
    return make_plan(source, prompt, mode, model, passages, lang)


def titles(source: SourcePlan | None) -> tuple[str, str]:
    """The panes' title keys: the two models, or the same model without then with the source."""
    return WITH_WITHOUT_TITLES if source is not None and source.mode == "with_without" else PANE_TITLES


def card_titles(result: dict) -> tuple[str, str]:
    """The panes' title keys on a comparison card, from its Raw JSON."""
    with_without = isinstance(result.get("source"), dict) and result["source"].get("mode") == "with_without"
    return WITH_WITHOUT_TITLES if with_without else PANE_TITLES


def meta(source: SourcePlan | None) -> dict:
    """What the Raw JSON says about the source (its text is an input of the action)."""
    if source is None:
        return {}
    return {"source": {"mode": source.mode, "model": source.role, "chunks": source.n_chunks, "chars": source.chars,
                       "language": source.source_lang, "k": source.k, "title": source.title}}


def _bold(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text, quote=False))


def pane_html(state, source: SourcePlan | None, lang: str) -> str:
    """The passages one pane was given, each with its number in the source and its BM25 score."""
    if source is None:
        return ""
    given = state.passages
    if given is None:
        return f'<div class="src-passages src-none">{_bold(t("src.pane_none", lang))}</div>'
    if not given:
        return f'<div class="src-passages src-no-match">{_bold(t("src.pane_no_match", lang))}</div>'
    head = _bold(t("src.pane_used", lang, n=len(given), total=source.n_chunks))
    items = []
    for n, passage in enumerate(given, 1):
        text = passage.text if len(passage.text) <= SHOWN_CHARS else passage.text[:SHOWN_CHARS].rstrip() + "…"
        label = html.escape(t("src.pane_passage", lang, n=n, index=passage.index, score=passage.score))
        items.append(f'<li><span class="src-score">{label}</span>'
                     f'<blockquote class="src-quote" data-content="1">{html.escape(text)}</blockquote></li>')
    return f'<div class="src-passages src-used"><div class="src-head">{head}</div><ol>{"".join(items)}</ol></div>'


def on_restore(inputs: dict, lang: str) -> tuple:
    """A link that used a source opens the panel, so that the restored source is in view."""
    used = (inputs.get("source_mode") or "off") != "off" or bool((inputs.get("source") or "").strip())
    return (gr.Accordion(open=True) if used else gr.skip(),)


def wall_card(inputs: dict) -> dict[str, str]:
    """Label key → output name of a wall card, by the source mode the experiment was run with."""
    mode = inputs.get("source_mode") or "off"
    if mode == "with_without":
        return {"src.card.without": "base_output", "src.card.with": "instruct_output",
                "src.card.passages": "instruct_passages"}
    card = {"share.card.base": "base_output", "share.card.instruct": "instruct_output"}
    return {**card, "src.card.passages": "instruct_passages"} if mode == "both" else card


def pane_models(source: SourcePlan | None, base_id: str, instruct_id: str) -> tuple[str, str]:
    """The models of the left and right panes: the two models, or the same one without then with
    the source."""
    if source is not None and source.mode == "with_without":
        chosen = instruct_id if source.role == "instruct" else base_id
        return chosen, chosen
    return base_id, instruct_id
