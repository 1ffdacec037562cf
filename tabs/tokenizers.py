"""Tokenizers: text → coloured token pieces across real vocabularies, language cost, decoding."""
from __future__ import annotations

import dataclasses
import re

import gradio as gr
import pandas as pd

from engine import tokenizers as tk
from engine.errors import UserError
from ui import fmt
from ui.context import AppContext
from ui.feedback import guard, warn
from ui.i18n import I18N, request_lang, t
from ui.wording import tokenizer_label
from ui.token_view import clip_window_html, number, render_views
from ui.token_view import translated_labels as view_labels

TIKTOKEN_CHOICES = [("tiktoken cl100k (GPT-4)", "tiktoken:cl100k_base"),
                    ("tiktoken o200k (GPT-4o)", "tiktoken:o200k_base")]
CHART_HEIGHT = 440
DEFAULT_TEXT = ("Le tokeniseur découpe « anticonstitutionnellement » en morceaux 🧩 : 2025, 1 234 567 ! "
                "The cat sat on the mat.")


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


def tokenize_views(text: str, keys: list[str], show_ids: bool, parse_special: bool, lang: str,
                   request: gr.Request | None = None) -> tuple[str, pd.DataFrame]:
    """The tab's work for one request: encode with every tokenizer, one HTML view each, counts."""
    tk.check_text(text)
    keys = load_tokenizers(keys, lang, request)
    encodings = [localised(tk.get(k).encoding(text, parse_special), lang) for k in keys]
    windows = {k: tk.get(k).window for k in keys if tk.get(k).window}
    return render_views(encodings, view_labels(lang), show_ids, windows), stats_table(encodings, lang)


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


def build(ctx: AppContext, tab: gr.Tab | None = None) -> None:
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
    views = gr.HTML(elem_id="tok-views")
    gr.Markdown(I18N("tok.legend"), elem_classes="tok-legend")
    stats = gr.Dataframe(label=I18N("tok.stats"), interactive=False, elem_id="tok-stats")
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
    with gr.Accordion(I18N("tok.embed_title"), open=False):
        gr.Markdown(I18N("tok.embed_body"))

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
        """Live update while typing: an empty box clears the views without a warning."""
        if not text:
            return "", pd.DataFrame()
        return _run(text, tokenizers, hub_ids, show_ids, parse_special, request)

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

    inputs = [text, selection, hub_ids, show_ids, special]
    outputs = [views, stats]
    run.click(tokenize, inputs=inputs, outputs=outputs, api_name="tokenize", concurrency_limit=None)
    for control in (text, selection, show_ids, special):
        control.change(refresh, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None,
                       trigger_mode="always_last", show_progress="hidden")
    if tab is not None:
        tab.select(refresh, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None,
                   show_progress="hidden")
    hub_ids.submit(tokenize, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None)
    preset.change(pick_preset, inputs=preset, outputs=[text, special], api_name=False, concurrency_limit=None)
    lang_run.click(language_cost, inputs=[selection, hub_ids], outputs=[lang_table, lang_chart],
                   api_name="language_cost", concurrency_limit=None)
    decode_run.click(decode_ids, inputs=[ids_box, selection, hub_ids], outputs=decoded, api_name="decode_ids",
                     concurrency_limit=None)
    ids_box.submit(decode_ids, inputs=[ids_box, selection, hub_ids], outputs=decoded, api_name=False,
                   concurrency_limit=None)

    @guard
    def clip_window(text: str = "", request: gr.Request = None) -> str:
        """CLIP's 77-token window for an image prompt, as HTML (the cut part greyed)."""
        return clip_window_html(text, view_labels(request_lang(request)))

    gr.api(clip_window, api_name="clip_window")
