"""Tokenizers: text → coloured token pieces across real vocabularies, language cost, decoding."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from engine import tokenizers as tk
from engine.errors import UserError
from ui.context import AppContext
from ui.feedback import guard, warn
from ui.i18n import I18N, request_lang, t
from ui.token_view import render_views
from ui.token_view import translated_labels as view_labels


def selected_keys(tokenizers: list[str] | None, hub_ids: str) -> list[str]:
    keys = list(tokenizers or [])
    keys += [h.strip() for h in (hub_ids or "").split(",") if h.strip()]
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


def stats_table(encodings: list[tk.Encoding], lang: str) -> pd.DataFrame:
    return pd.DataFrame([{
        t("tok.col_tokenizer", lang): e.label, t("tok.col_tokens", lang): e.n_tokens,
        t("tok.col_chars", lang): e.n_chars, t("tok.col_bytes", lang): e.n_bytes,
        t("tok.col_cpt", lang): round(e.chars_per_token, 2), t("tok.col_vocab", lang): e.vocab_size,
    } for e in encodings])


def language_chart(rows: list[dict], ylabel: str, ratio_label: str):
    """Grouped bars: token count per language, one bar per tokenizer, ratio to English on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    languages = list(dict.fromkeys(r["language"] for r in rows))
    tokenizers = list(dict.fromkeys(r["tokenizer"] for r in rows))
    width = 0.8 / max(1, len(tokenizers))
    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=100)
    x = np.arange(len(languages))
    for k, name in enumerate(tokenizers):
        vals = [next(r for r in rows if r["language"] == lang and r["tokenizer"] == name) for lang in languages]
        bars = ax.bar(x + (k - (len(tokenizers) - 1) / 2) * width, [v["tokens"] for v in vals], width, label=name)
        if len(tokenizers) <= 4:
            ax.bar_label(bars, labels=[f"×{v['ratio_to_english']:.1f}" for v in vals], fontsize=7, rotation=90, padding=2)
    ax.set_xticks(x, [r["lang"].upper() for r in rows[: len(languages)]])
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel} ({ratio_label} above the bars)", fontsize=10)
    ax.legend(fontsize=8, ncols=min(4, len(tokenizers)))
    ax.margins(y=0.18)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def preset_choices() -> list[tuple[str, str]]:
    return [(f"{p['label_en']} · {p['label_fr']}", p["id"]) for p in tk.presets()]


def build(ctx: AppContext, tab: gr.Tab | None = None) -> None:
    gr.Markdown(I18N("tok.intro"), elem_classes="tab-intro")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            text = gr.Textbox("Le tokeniseur découpe « anticonstitutionnellement » en morceaux 🧩 : 2025, 1 234 567 !",
                              lines=5, max_lines=14, label=I18N("tok.text"), placeholder=I18N("tok.placeholder"),
                              elem_id="tok-text")
        with gr.Column(scale=2, min_width=280):
            preset = gr.Dropdown(preset_choices(), value=None, label=I18N("tok.preset"), elem_id="tok-preset")
            selection = gr.CheckboxGroup(tk.choices(), value=list(tk.DEFAULT_SET), label=I18N("tok.select"),
                                         elem_id="tok-select")
            hub_ids = gr.Textbox("", label=I18N("tok.hub"), placeholder=I18N("tok.hub_placeholder"), elem_id="tok-hub")
            with gr.Row():
                show_ids = gr.Checkbox(False, label=I18N("tok.show_ids"), elem_id="tok-show-ids")
                special = gr.Checkbox(False, label=I18N("tok.special"), elem_id="tok-special")
            run = gr.Button(I18N("tok.run"), variant="primary", elem_id="tok-run")
    views = gr.HTML(elem_id="tok-views")
    stats = gr.Dataframe(label=I18N("tok.stats"), interactive=False, elem_id="tok-stats")
    with gr.Accordion(I18N("tok.lang_title"), open=False, elem_id="tok-lang"):
        gr.Markdown(I18N("tok.lang_intro"))
        lang_run = gr.Button(I18N("tok.lang_run"), elem_id="tok-lang-run")
        lang_table = gr.Dataframe(interactive=False, elem_id="tok-lang-table")
        lang_chart = gr.Plot(label=I18N("tok.lang_chart"), elem_id="tok-lang-chart")
    with gr.Accordion(I18N("tok.decode_title"), open=False, elem_id="tok-decode"):
        with gr.Row():
            ids_box = gr.Textbox("", label=I18N("tok.decode_ids"), placeholder=I18N("tok.decode_placeholder"),
                                 elem_id="tok-decode-ids", scale=4)
            decode_run = gr.Button(I18N("tok.decode_run"), elem_id="tok-decode-run", scale=1)
        decoded = gr.Markdown(elem_id="tok-decoded")
    with gr.Accordion(I18N("tok.embed_title"), open=False):
        gr.Markdown(I18N("tok.embed_body"))

    @guard
    def tokenize(text: str, tokenizers: list[str] | None = None, hub_ids: str = "", show_ids: bool = False,
                 parse_special: bool = False, request: gr.Request = None):
        lang = request_lang(request)
        if not text:
            return "", pd.DataFrame()
        tk.check_text(text)
        keys = selected_keys(tokenizers if tokenizers is not None else list(tk.DEFAULT_SET), hub_ids)
        if not keys:
            warn("tok.err.none_selected", request)
            return "", pd.DataFrame()
        keys = load_tokenizers(keys, lang, request)
        encodings = [tk.get(k).encoding(text, bool(parse_special)) for k in keys]
        windows = {k: tk.get(k).window for k in keys if tk.get(k).window}
        return render_views(encodings, view_labels(lang), bool(show_ids), windows), stats_table(encodings, lang)

    @guard
    def pick_preset(preset_id: str | None):
        if not preset_id:
            return gr.update(), gr.update()
        p = next(p for p in tk.presets() if p["id"] == preset_id)
        if p["text"] == "@chat":
            return tk.chat_preset_text(), True
        return p["text"], gr.update()

    @guard
    def language_cost(tokenizers: list[str] | None = None, hub_ids: str = "", request: gr.Request = None):
        lang = request_lang(request)
        keys = load_tokenizers(selected_keys(tokenizers if tokenizers is not None else list(tk.DEFAULT_SET), hub_ids),
                               lang, request)
        rows = tk.language_cost(keys)
        table = pd.DataFrame(rows).pivot_table(index="language", columns="tokenizer", values="tokens", sort=False)
        ratio = pd.DataFrame(rows).pivot_table(index="language", columns="tokenizer", values="ratio_to_english", sort=False)
        shown = table.astype(int).astype(str) + " (×" + ratio.map(lambda v: f"{v:.2f}") + ")"
        shown = shown.reset_index().rename(columns={"language": t("tok.col_language", lang)})
        return shown, language_chart(rows, t("tok.col_tokens", lang), t("tok.col_ratio", lang))

    @guard
    def decode_ids(ids: str, tokenizers: list[str] | None = None, hub_ids: str = "", request: gr.Request = None):
        lang = request_lang(request)
        if not (ids or "").strip():
            warn("tok.err.bad_ids", request)
            return ""
        keys = load_tokenizers(selected_keys(tokenizers if tokenizers is not None else list(tk.DEFAULT_SET), hub_ids),
                               lang, request)
        lines = []
        for label, text, bad in tk.decode_ids(ids, keys):
            if bad is None:
                lines.append(f"**{label}**\n\n```\n{text}\n```")
            else:
                bad_ids, size = bad.split("|")
                lines.append(f"**{label}** — ⚠️ " + t("tok.decode_bad", lang, ids=bad_ids, size=size, last=int(size) - 1))
        return "\n\n".join(lines)

    inputs = [text, selection, hub_ids, show_ids, special]
    outputs = [views, stats]
    run.click(tokenize, inputs=inputs, outputs=outputs, api_name="tokenize", concurrency_limit=None)
    for control in (text, selection, show_ids, special):
        control.change(tokenize, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None,
                       trigger_mode="always_last", show_progress="hidden")
    if tab is not None:
        tab.select(tokenize, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None,
                   show_progress="hidden")
    hub_ids.submit(tokenize, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None)
    preset.change(pick_preset, inputs=preset, outputs=[text, special], api_name=False, concurrency_limit=None)
    lang_run.click(language_cost, inputs=[selection, hub_ids], outputs=[lang_table, lang_chart],
                   api_name="language_cost", concurrency_limit=None)
    decode_run.click(decode_ids, inputs=[ids_box, selection, hub_ids], outputs=decoded, api_name="decode_ids",
                     concurrency_limit=None)
    ids_box.submit(decode_ids, inputs=[ids_box, selection, hub_ids], outputs=decoded, api_name=False,
                   concurrency_limit=None)

    def clip_window(text: str, request: gr.Request = None) -> str:
        from ui.token_view import clip_window_html

        return clip_window_html(text, view_labels(request_lang(request)))

    gr.api(clip_window, api_name="clip_window")
