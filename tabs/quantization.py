"""Quantization: what bits do to weights (part 1), memory (part 2), speed and answers (part 3).

Each part is a section in its own module, with its own layout, handlers and events
(:mod:`tabs.quantization_weights`, :mod:`tabs.quantization_planner` and :mod:`tabs.quantization_finetune`,
:mod:`tabs.quantization_live`); this module puts them in sub-tabs and fills them the first time the
tab opens."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from tabs import quantization_finetune, quantization_live, quantization_planner, quantization_weights
from tabs.quantization_finetune import finetune_plan
from tabs.quantization_live import DEFAULT_PROMPT, PROMPTS, empty_frame
from tabs.quantization_planner import memory_plan
from ui.context import AppContext
from ui.i18n import I18N, request_lang


# =============================================================================== layout
@dataclass
class View:
    weights: quantization_weights.View
    planner: quantization_planner.View
    finetune: quantization_finetune.View
    live: quantization_live.View
    opened: gr.State | None  # whether this visitor has opened the tab (its first view is computed then)


def layout(ctx: AppContext, tab: gr.Tab | None = None) -> View:
    """The three parts in sub-tabs (each section builds itself: its layout and its events)."""
    tiny = ctx.catalog.profile == "tiny"
    gr.Markdown(I18N("quant.intro"))
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab(I18N("quant.sub_weights"), id="quant-weights", elem_id="quant-weights"):
            weights_view = quantization_weights.build(ctx)
        with gr.Tab(I18N("quant.sub_planner"), id="quant-planner", elem_id="quant-planner"):
            planner_view = quantization_planner.build(ctx)
            finetune_view = quantization_finetune.build(ctx, planner_view.model)
        with gr.Tab(I18N("quant.sub_live"), id="quant-live", elem_id="quant-live"):
            live_view = quantization_live.build(ctx, tiny, quantization_weights.model_choices(ctx))
    opened = gr.State(False) if tab is not None else None
    return View(weights_view, planner_view, finetune_view, live_view, opened)


# =============================================================================== handlers
def first_view_for(ctx: AppContext, n_outputs: int):
    """``n_outputs``: how many outputs the three parts' first views fill."""
    quantize_weights = quantization_weights.quantize_weights_for(ctx)
    first_views: dict[tuple, tuple] = {}   # per language and settings: every visitor's first view is the same

    def first_view(was_opened: bool, prompt: str, source: str, model: str, layer: str, method: str, bits: float,
                   block_size: str, outliers: float, plan_model: str, context_length: float, batch_size: float,
                   ft_method: str, ft_precision: str, ft_optimizer: str, ft_batch: float, ft_seq: float,
                   ft_checkpointing: bool, ft_rank: float, ft_targets: list[str], request: gr.Request):
        """The first time the tab opens: the histogram, error chart, metrics table and memory plan of
        the default settings, computed in the visitor's language (no empty plots, no "1 2 3" headers),
        the live results' headers, and its prompt in that language if it is still an untouched example."""
        if was_opened:
            return (True, gr.update(), gr.update()) + (gr.update(),) * n_outputs
        lang = request_lang(request)
        text = PROMPTS.get(lang, DEFAULT_PROMPT) if prompt in PROMPTS.values() else gr.update()
        table = gr.Dataframe(empty_frame(lang), visible=True)
        key = (lang, source, model, layer, method, bits, str(block_size), outliers, plan_model, context_length,
               batch_size, ft_method, ft_precision, ft_optimizer, ft_batch, ft_seq, ft_checkpointing, ft_rank,
               tuple(ft_targets or ()))
        if key not in first_views:                 # computed once: the tab's first open need not wait on it
            weights_view = list(quantize_weights(source, model, layer, method, bits, block_size, outliers, request))
            weights_view[0] = gr.Plot().postprocess(weights_view[0])   # the histogram as a PNG once, not per visit
            if len(first_views) > 32:
                first_views.clear()
            first_views[key] = (tuple(weights_view) + tuple(memory_plan(plan_model, context_length, batch_size, request))
                                + tuple(finetune_plan(plan_model, ft_method, ft_precision, ft_optimizer, ft_batch,
                                                      ft_seq, ft_checkpointing, ft_rank, ft_targets, request)))
        return (True, text, table) + first_views[key]

    return first_view


# =============================================================================== wiring
def wire(view: View, ctx: AppContext, tab: gr.Tab | None = None) -> None:
    if tab is None:
        return
    w, p, f = view.weights, view.planner, view.finetune
    outputs = w.outputs + p.outputs + f.outputs
    tab.select(first_view_for(ctx, len(outputs)),
               inputs=[view.opened, view.live.prompt] + w.inputs + p.inputs + f.inputs[1:],
               outputs=[view.opened, view.live.prompt, view.live.table] + outputs, api_name=False,
               concurrency_limit=None, show_progress="hidden")


def build(ctx: AppContext, tab: gr.Tab | None = None) -> None:
    wire(layout(ctx, tab), ctx, tab)
