"""Tokenizers: text → coloured token pieces across real vocabularies, language cost, decoding."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from engine.tokenization import tokenizers as tk
from engine.errors import UserError
from ui import fmt
from ui.context import AppContext
from ui.feedback import guard, warn
from ui.i18n import I18N, forced_lang, request_lang, t
from ui.share import share_row
from ui.share_codec import carries_html
from ui.token_view import FIRST_SHOWN, MAX_SHOWN, clip_window_html, limit_html, number, render_views
from ui.token_view import translated_labels as view_labels
from ui.wording import tokenizer_label
from tabs import tokenizers_embeddings

TIKTOKEN_CHOICES = [("tiktoken cl100k (GPT-4)", "tiktoken:cl100k_base"),
                    ("tiktoken o200k (GPT-4o)", "tiktoken:o200k_base")]
CHART_HEIGHT = 440
DEFAULT_TEXT = ("Le tokeniseur découpe « anticonstitutionnellement » en morceaux 🧩 : 2025, 1 234 567 ! "
                "The cat sat on the mat.")


# =============================================================================== helpers
def selected_keys(tokenizers: list[str] | None, hub_ids: str = "") -> list[str]:
    keys = list(tk.DEFAULT_SET if tokenizers is None else tokenizers)
    keys += [h.strip() for h in re.split(r"[,\n]", hub_ids or "") if h.strip()]
    return list(dict.fromkeys(keys))


def load_tokenizers(keys: list[str], lang: str, request: gr.Request | None) -> list[str]:
    """The keys that load; each one that does not gets a warning toast (the others still show)."""
    ok = []
    for key in keys:
        try:
            tk.get(key)
            ok.append(key)
        except UserError as err:
            warn("tok.err.skipped", request, tokenizer=key, message=t(err.key, lang, **err.params))
    return ok


def tokenizer_choices() -> list[tuple]:
    """The offline tokenizers (names translated in the browser), then tiktoken's."""
    return [(I18N(f"tok.choice.{key}"), key) for _, key in tk.offline_choices()] + TIKTOKEN_CHOICES


def localised(enc: tk.Encoding, lang: str) -> tk.Encoding:
    """The encoding with its tokenizer's name in ``lang``."""
    return dataclasses.replace(enc, label=tokenizer_label(enc.key, lang, enc.label, enc.vocab_size))


def stats_table(encodings: list[tk.Encoding], lang: str):
    """Counts per tokenizer, shown with the language's number format."""
    frame = pd.DataFrame([{
        t("tok.col_tokenizer", lang): e.label, t("tok.col_tokens", lang): e.n_tokens,
        t("tok.col_chars", lang): e.n_chars, t("tok.col_bytes", lang): e.n_bytes,
        t("tok.col_cpt", lang): round(e.chars_per_token, 2), t("tok.col_vocab", lang): e.vocab_size,
    } for e in encodings])
    return fmt.table(frame, lang, {t("tok.col_cpt", lang): 2})


def render(text: str, keys: list[str], show_ids: bool, parse_special: bool, lang: str,
           shown: int = MAX_SHOWN) -> tuple[str, object, int]:
    """Views (the first ``shown`` tokens of each) and counts for tokenizers already loaded; also the
    most tokens one of them has (more than ``shown``: the views are cut)."""
    encodings = [localised(tk.head_encoding(tk.get(k), text, parse_special, shown), lang) for k in keys]
    windows = {k: tk.get(k).window for k in keys if tk.get(k).window}
    html = render_views(encodings, view_labels(lang), show_ids, windows, max_shown=shown)
    return html, stats_table(encodings, lang), max((e.n_tokens for e in encodings), default=0)


def tokenize_views(text: str, keys: list[str], show_ids: bool, parse_special: bool, lang: str,
                   request: gr.Request | None = None, shown: int = MAX_SHOWN) -> tuple[str, object]:
    """The tab's work for one request: encode with every tokenizer, one HTML view each, counts."""
    tk.check_text(text)
    keys = load_tokenizers(keys, lang, request)
    html, table, _ = render(text, keys, show_ids, parse_special, lang, shown)
    return html, table


def language_tables(rows: list[dict], lang: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shown table (tokens and ratio to English per language × tokenizer) and the chart's data."""
    frame = pd.DataFrame(rows)
    frame["language"] = [t(f"langname.{r['lang']}", lang) for r in rows]
    labels = view_labels(lang)
    tokens = frame.pivot_table(index="language", columns="tokenizer", values="tokens", sort=False)
    ratio = frame.pivot_table(index="language", columns="tokenizer", values="ratio_to_english", sort=False)
    shown = tokens.map(lambda v: number(v, labels)) + " (×" + ratio.map(lambda v: number(v, labels, 2)) + ")"
    shown = shown.reset_index().rename(columns={"language": t("tok.col_language", lang)})
    shown.columns.name = None
    chart = pd.DataFrame({
        "bar": [f"{name} · {r['tokenizer']}" for name, r in zip(frame["language"], rows)],
        "tokens": [r["tokens"] for r in rows],
        "tokenizer": [r["tokenizer"] for r in rows],
        "ratio_to_english": [r["ratio_to_english"] for r in rows],
    })
    order = sorted(range(len(rows)), key=lambda i: (_language_rank(rows[i]["lang"]), i))
    return shown, chart.iloc[order].reset_index(drop=True)


def _language_rank(code: str) -> int:
    codes = [s["lang"] for s in tk.language_sentences()]
    return codes.index(code) if code in codes else len(codes)


def decoded_markdown(results: list[tk.Decoded], lang: str) -> str:
    lines = []
    for r in results:
        if r.bad_ids:
            ids = ", ".join(map(str, r.bad_ids[:10])) + (" …" if len(r.bad_ids) > 10 else "")
            lines.append(f"**{r.label}** — ⚠️ " + t("tok.decode_bad", lang, ids=ids, size=r.vocab_size,
                                                       last=r.vocab_size - 1))
        else:
            fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", r.text)), default=0))
            lines.append(f"**{r.label}**\n\n{fence}text\n{r.text}\n{fence}")
    return "\n\n".join(lines)


def localised_views(lang: str, text: str, tokenizers: list[str] | None, hub_ids: str, show_ids: bool,
                    parse_special: bool):
    """The views again in ``lang`` (after the language switch): the ids are cached, nothing is re-tokenized."""
    if not text or len(text) > tk.MAX_CHARS:
        return gr.skip(), gr.skip()
    keys = [k for k in selected_keys(tokenizers, hub_ids) if k in tk.DEFAULT_SET or tk.is_loaded(k)]
    html, table, _ = render(text, keys, bool(show_ids), bool(parse_special), lang)
    return html, table


# =============================================================================== layout
@dataclass
class View:
    text: gr.Textbox
    show_ids: gr.Checkbox
    special: gr.Checkbox
    run: gr.Button
    preset: gr.Dropdown
    selection: gr.CheckboxGroup
    hub_ids: gr.Textbox
    views: gr.Textbox     # the views' HTML, put in place by assets/tokenizer_input.js
    typed: gr.Button      # clicked by assets/tokenizer_input.js once typing pauses
    stats: gr.Dataframe
    lang_run: gr.Button
    lang_table: gr.Dataframe
    lang_chart: gr.BarPlot
    ids_box: gr.Textbox
    decode_run: gr.Button
    decoded: gr.Markdown

    @property
    def inputs(self) -> list:
        """What a tokenization reads, in the order of :func:`tokenize`'s arguments."""
        return [self.text, self.selection, self.hub_ids, self.show_ids, self.special]


def layout(ctx: AppContext) -> View:
    gr.Markdown(I18N("tok.intro"), elem_classes="tab-intro")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            text = gr.Textbox(DEFAULT_TEXT, lines=6, max_lines=14, label=I18N("tok.text"),
                              placeholder=I18N("tok.placeholder"), elem_id="tok-text")
            with gr.Row(equal_height=True):
                show_ids = gr.Checkbox(False, label=I18N("tok.show_ids"), elem_id="tok-show-ids")
                special = gr.Checkbox(False, label=I18N("tok.special"), elem_id="tok-special")
                run = gr.Button(I18N("tok.run"), variant="primary", elem_id="tok-run")
        with gr.Column(scale=2, min_width=280):
            preset = gr.Dropdown([(I18N(f"tok.preset.{p['id']}"), p["id"]) for p in tk.presets()], value=None,
                                 label=I18N("tok.preset"), elem_id="tok-preset")
            selection = gr.CheckboxGroup(tokenizer_choices(), value=list(tk.DEFAULT_SET),
                                         label=I18N("tok.select"), info=I18N("tok.select_info"), elem_id="tok-select")
            hub_ids = gr.Textbox("", label=I18N("tok.hub"), placeholder=I18N("tok.hub_placeholder"), elem_id="tok-hub")
    first_lang = forced_lang() or "en"  # the page's language replaces it on load (ctx.on_language)
    first_views, first_table = tokenize_views(DEFAULT_TEXT, list(tk.DEFAULT_SET), False, False, first_lang)
    # The views' HTML travels in a hidden text box and is put in place by one innerHTML (assets/
    # tokenizer_input.js): gr.HTML would diff thousands of token spans node by node on every update.
    gr.HTML(f'<div class="tok-views-box">{first_views}</div>', elem_id="tok-views")
    views = carries_html(gr.Textbox(first_views, visible="hidden", elem_id="tok-views-html", container=False))
    # clicked by assets/tokenizer_input.js once typing pauses (at once after a paste): one request per
    # pause, not one per key, whatever the text's length
    typed = gr.Button(I18N("tok.run"), visible="hidden", elem_id="tok-refresh")
    gr.Markdown(I18N("tok.legend"), elem_classes="tok-legend")
    stats = gr.Dataframe(first_table, label=I18N("tok.stats"), interactive=False, elem_id="tok-stats")
    with gr.Accordion(I18N("tok.lang_title"), open=False, elem_id="tok-lang"):
        gr.Markdown(I18N("tok.lang_intro"))
        lang_run = gr.Button(I18N("tok.lang_run"), elem_id="tok-lang-run")
        lang_table = gr.Dataframe(interactive=False, elem_id="tok-lang-table")
        lang_chart = gr.BarPlot(x="bar", y="tokens", color="tokenizer", label=I18N("tok.lang_chart"), x_title=" ",
                                x_label_angle=-60, tooltip="all", height=CHART_HEIGHT, elem_id="tok-lang-chart",
                                colors_in_legend=[])  # no legend: each bar's label names its tokenizer
    with gr.Accordion(I18N("tok.decode_title"), open=False, elem_id="tok-decode"):
        with gr.Row():
            ids_box = gr.Textbox("", label=I18N("tok.decode_ids"), placeholder=I18N("tok.decode_placeholder"),
                                 elem_id="tok-decode-ids", scale=4)
            decode_run = gr.Button(I18N("tok.decode_run"), elem_id="tok-decode-run", scale=1)
        decoded = gr.Markdown(elem_id="tok-decoded")
    return View(text, show_ids, special, run, preset, selection, hub_ids, views, typed, stats, lang_run, lang_table,
                lang_chart, ids_box, decode_run, decoded)


# =============================================================================== handlers
@guard
def tokenize(text: str = DEFAULT_TEXT, tokenizers: list[str] | None = None, hub_ids: str = "",
             show_ids: bool = False, parse_special: bool = False, request: gr.Request = None):
    """Tokenize ``text`` with each tokenizer: HTML views (one per tokenizer) and a counts table."""
    if not text:
        warn("tok.err.empty", request)
        return "", pd.DataFrame()
    return _run(text, tokenizers, hub_ids, show_ids, parse_special, request)


@guard
def refresh(text: str, tokenizers: list[str] | None, hub_ids: str, show_ids: bool, parse_special: bool,
            request: gr.Request = None):
    """Live update: the counts and the visible part of every view first, then the rest. An
    empty box clears the views; a text over the limit shows one message in their place."""
    lang = request_lang(request)
    if not text:
        yield "", None
        return
    if len(text) > tk.MAX_CHARS:
        yield limit_html(t("tok.err.too_long", lang, n=len(text), limit=tk.MAX_CHARS)), None
        return
    keys = selected_keys(tokenizers, hub_ids)
    if not keys:
        warn("tok.err.none_selected", request)
        yield "", None
        return
    keys = load_tokenizers(keys, lang, request)
    html, table, most = render(text, keys, bool(show_ids), bool(parse_special), lang, FIRST_SHOWN)
    yield html, table
    if most > FIRST_SHOWN:
        html, _, _ = render(text, keys, bool(show_ids), bool(parse_special), lang, MAX_SHOWN)
        yield html, gr.skip()  # the counts are already shown


def _run(text, tokenizers, hub_ids, show_ids, parse_special, request):
    keys = selected_keys(tokenizers, hub_ids)
    if not keys:
        warn("tok.err.none_selected", request)
        return "", pd.DataFrame()
    return tokenize_views(text, keys, bool(show_ids), bool(parse_special), request_lang(request), request)


@guard
def pick_preset(preset_id: str | None):
    if not preset_id:
        return gr.update(), gr.update()
    text, parse_special = tk.preset_text(preset_id)
    return text, True if parse_special else gr.update()


@guard
def language_cost(tokenizers: list[str] | None = None, hub_ids: str = "", request: gr.Request = None):
    """Token counts of one meaning in several languages, per tokenizer, with the ratio to English."""
    lang = request_lang(request)
    keys = load_tokenizers(selected_keys(tokenizers, hub_ids), lang, request)
    if not keys:
        warn("tok.err.none_selected", request)
        return pd.DataFrame(), None
    shown, chart = language_tables(tk.language_cost(keys), lang)
    names = {"bar": f'{t("tok.col_language", lang)} · {t("tok.col_tokenizer", lang)}',
             "tokens": t("tok.col_tokens", lang), "tokenizer": t("tok.col_tokenizer", lang),
             "ratio_to_english": t("tok.col_ratio", lang)}
    chart = chart.rename(columns=names)
    return shown, gr.BarPlot(chart, x=names["bar"], y=names["tokens"], color=names["tokenizer"],
                             sort=list(chart[names["bar"]]), x_title=" ", colors_in_legend=[],
                             x_label_angle=-60, tooltip="all", height=CHART_HEIGHT)


@guard
def decode_ids(ids: str = "", tokenizers: list[str] | None = None, hub_ids: str = "",
               request: gr.Request = None) -> str:
    """Token ids (spaces or commas) → text, per tokenizer; ids outside a vocabulary are named."""
    lang = request_lang(request)
    if not (ids or "").strip():
        warn("tok.err.bad_ids", request)
        return ""
    keys = load_tokenizers(selected_keys(tokenizers, hub_ids), lang, request)
    return decoded_markdown(tk.decode_ids(ids, keys), lang)


@guard
def clip_window(text: str = "", request: gr.Request = None) -> str:
    """CLIP's 77-token window for an image prompt, as HTML (the cut part greyed)."""
    return clip_window_html(text, view_labels(request_lang(request)))


# =============================================================================== wiring
def wire(view: View, ctx: AppContext) -> None:
    inputs = view.inputs
    outputs = [view.views, view.stats]
    live = {"inputs": inputs, "outputs": outputs, "api_name": False, "concurrency_limit": None,
            "trigger_mode": "always_last", "show_progress": "hidden"}
    view.run.click(tokenize, inputs=inputs, outputs=outputs, api_name="tokenize", concurrency_limit=None)
    view.typed.click(refresh, **live)
    for control in (view.selection, view.show_ids, view.special):
        control.change(refresh, **live)
    view.hub_ids.submit(tokenize, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None)
    view.preset.change(pick_preset, inputs=view.preset, outputs=[view.text, view.special], api_name=False,
                       concurrency_limit=None).then(refresh, **live)
    ctx.on_language(lambda lang, *values: localised_views(lang, *values), inputs=inputs, outputs=outputs)
    view.views.change(None, inputs=view.views, js="(html) => window.genaiTokenizer.show(html)", api_name=False)
    view.lang_run.click(language_cost, inputs=[view.selection, view.hub_ids],
                        outputs=[view.lang_table, view.lang_chart], api_name="language_cost", concurrency_limit=None)
    view.decode_run.click(decode_ids, inputs=[view.ids_box, view.selection, view.hub_ids], outputs=view.decoded,
                          api_name="decode_ids", concurrency_limit=None)
    view.ids_box.submit(decode_ids, inputs=[view.ids_box, view.selection, view.hub_ids], outputs=view.decoded,
                        api_name=False, concurrency_limit=None)
    gr.api(clip_window, api_name="clip_window")
    share_row(ctx, "tokenizers", api="tokenize", outputs={"views": view.views, "stats": view.stats},
              card={"share.card.counts": "stats"}, title="text")


def build(ctx: AppContext) -> None:
    wire(layout(ctx), ctx)
    # after the tokenize row: a link to "?tab=tokenizers" opens the tab's first action, tokenize
    with gr.Accordion(I18N("emb.title"), open=False, elem_id="tok-embed") as embed_section:
        tokenizers_embeddings.build(ctx, embed_section)
