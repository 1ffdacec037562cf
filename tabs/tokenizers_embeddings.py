"""Tokenizer tab, "From ids to vectors": a token's row of the model's input embedding matrix (read
from the checkpoint, the model is not loaded), its norm, its nearest tokens by cosine, and two
words' similarity."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from engine.tokenization import embeddings as emb
from engine.models.policy import custom_models_allowed
from ui import fmt
from ui.context import AppContext
from ui.feedback import guard
from ui.i18n import I18N, request_lang, t
from ui.share import share_row

DEFAULT_QUERY, DEFAULT_OTHER = "chat", "chien"


# =============================================================================== helpers
def model_choices(ctx: AppContext) -> list[str]:
    cat = ctx.catalog
    ids = [cat.spec(r).id for r in ("base_llm", "instruct_llm", "quant_subject")]
    return list(dict.fromkeys(ids + cat.llm_choices("base_llm") + cat.llm_choices("instruct_llm")))


def _colour(value: float, scale: float) -> str:
    """Blue (negative) → white (0) → red (positive)."""
    x = max(-1.0, min(1.0, value / scale)) if scale else 0.0
    fade = int(255 * (1 - abs(x)))
    return f"#ff{fade:02x}{fade:02x}" if x >= 0 else f"#{fade:02x}{fade:02x}ff"


def strip_html(vector) -> str:
    """The vector as a strip of coloured cells, one per dimension (64 per line), scaled by its largest value."""
    values = vector.tolist()
    scale = max((abs(v) for v in values), default=0.0)
    cells = "".join(f'<i style="background:{_colour(v, scale)}"></i>' for v in values)
    return f'<div class="emb-strip">{cells}</div>'


def vector_html(model: str, looked: emb.Looked, lang: str) -> str:
    loc = emb.locate(model)
    pieces = " · ".join(f"<code>{html.escape(repr(p)[1:-1])}</code> ({i})" for p, i in zip(looked.pieces, looked.ids))
    norm = float(looked.vector.norm())
    values = looked.vector.tolist()
    facts = t("emb.facts", lang, dim=loc.dim, norm=norm, low=min(values), high=max(values),
              tensor=loc.tensor, rows=loc.rows, dtype=loc.dtype, bytes=loc.dim * _itemsize(loc.dtype))
    note = t("emb.averaged", lang, n=len(looked.ids)) if looked.averaged else ""
    head = f'<div class="emb-head"><b>{html.escape(looked.query)}</b> → {pieces}</div>'
    return (f'<div class="emb-vector">{head}<div class="emb-facts">{html.escape(facts)}'
            f'{" " + html.escape(note) if note else ""}</div>{strip_html(looked.vector)}</div>')


def _itemsize(dtype: str) -> int:
    return {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "F8_E4M3": 1, "F8_E5M2": 1}.get(dtype, 2)


def neighbours_table(model: str, looked: emb.Looked, k: int, lang: str) -> pd.DataFrame:
    rows = [{t("emb.col_rank", lang): n, t("emb.col_id", lang): str(i), t("emb.col_token", lang): emb.token_text(model, i),
             t("emb.col_cosine", lang): round(score, 4)}
            for n, (i, score) in enumerate(emb.nearest(model, looked.vector, k), start=1)]
    return fmt.table(pd.DataFrame(rows), lang, {t("emb.col_cosine", lang): 3})


def similarity_text(model: str, a: emb.Looked, b: emb.Looked, lang: str) -> str:
    text = t("emb.similarity", lang, a=a.query, b=b.query, cos=emb.cosine(a.vector, b.vector))
    for w in (a, b):
        if w.averaged:
            text += "\n\n" + t("emb.similarity_mean", lang, word=w.query, n=len(w.ids),
                               pieces=" · ".join(repr(p) for p in w.pieces))
    return text


# =============================================================================== layout
@dataclass
class View:
    model: gr.Dropdown
    query: gr.Textbox
    other: gr.Textbox
    k: gr.Slider
    run: gr.Button
    banner: gr.Markdown
    vector: gr.HTML
    table: gr.Dataframe
    similarity: gr.Markdown


def layout(ctx: AppContext) -> View:
    gr.Markdown(I18N("tok.embed_body"))
    gr.Markdown(I18N("emb.intro"))
    choices = model_choices(ctx)
    with gr.Row(equal_height=True):
        model = gr.Dropdown(choices, value=choices[0], label=I18N("emb.model"), info=I18N("emb.model_info"),
                            allow_custom_value=custom_models_allowed(), filterable=True, elem_id="emb-model")
        query = gr.Textbox(DEFAULT_QUERY, label=I18N("emb.query"), info=I18N("emb.query_info"), max_lines=1,
                           elem_id="emb-query")
        other = gr.Textbox(DEFAULT_OTHER, label=I18N("emb.other"), info=I18N("emb.other_info"), max_lines=1,
                           elem_id="emb-other")
        k = gr.Slider(1, 50, value=10, step=1, label=I18N("emb.k"), elem_id="emb-k")
        run = gr.Button(I18N("emb.run"), variant="primary", scale=0, min_width=160, elem_id="emb-run")
    banner = gr.Markdown(visible=False, elem_id="emb-banner")
    vector = gr.HTML(elem_id="emb-vector")
    with gr.Row(equal_height=False):
        table = gr.Dataframe(interactive=False, label=I18N("emb.neighbours"), elem_id="emb-table", scale=3)
        similarity = gr.Markdown(elem_id="emb-similarity")
    return View(model, query, other, k, run, banner, vector, table, similarity)


# =============================================================================== handlers
def embedding_view_for(ctx: AppContext):
    choices = model_choices(ctx)

    @guard
    def embedding_view(model: str = "", query: str = DEFAULT_QUERY, other: str = "", k: float = 10,
                       request: gr.Request = None):
        """A token id or a word → its embedding row(s) as a colour strip with its norm, its nearest tokens
        by cosine over the whole vocabulary, and its cosine similarity to ``other`` (optional)."""
        lang = request_lang(request)
        model = (model or "").strip() or choices[0]
        looked = emb.look_up(model, query)
        noise = ctx.catalog.noise or model.startswith("tiny/")
        shown = vector_html(model, looked, lang)
        sim = ""
        if (other or "").strip():
            second = emb.look_up(model, other)
            shown += vector_html(model, second, lang)
            sim = similarity_text(model, looked, second, lang)
        banner_update = gr.Markdown(t("emb.noise", lang), visible=True) if noise else gr.Markdown("", visible=False)
        return banner_update, shown, neighbours_table(model, looked, int(k or 10), lang), sim

    return embedding_view


# =============================================================================== wiring
def wire(view: View, ctx: AppContext, section: gr.Accordion) -> None:
    embedding_view = embedding_view_for(ctx)
    inputs = [view.model, view.query, view.other, view.k]
    outputs = [view.banner, view.vector, view.table, view.similarity]
    view.run.click(embedding_view, inputs=inputs, outputs=outputs, api_name="embedding_view", concurrency_limit=None)
    for box in (view.query, view.other):
        box.submit(embedding_view, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None)
    share_row(ctx, "tokenizers", api="embedding_view",
              outputs={"vector": view.vector, "table": view.table, "similarity": view.similarity},
              card={"emb.card": "table"}, title=lambda v: f"{v.get('query')} · {v.get('other')} · {v.get('model')}",
              on_restore=(lambda inputs, lang: (gr.Accordion(open=True),), [section]))


def build(ctx: AppContext, section: gr.Accordion) -> None:
    """The accordion's controls and the ``embedding_view`` event (its own share row: a link opens
    the accordion)."""
    wire(layout(ctx), ctx, section)
