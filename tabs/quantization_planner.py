"""Quantization, part 2: the memory a model needs to serve, per precision, and the devices it fits
(wiring only; the work is in :mod:`engine.quantization.planner`). The fine-tuning section under it is
:mod:`tabs.quantization_finetune`."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from engine.errors import UserError
from engine.models.policy import custom_models_allowed
from engine.quantization import planner
from ui import fmt
from ui.context import AppContext
from ui.feedback import guard
from ui.i18n import I18N, request_lang, t
from ui.share import share_row


# =============================================================================== helpers
def device_label(dev: planner.DeviceInfo, lang: str) -> str:
    """"T4 16 GB" / "T4 16 Go", "Laptop 16 GB RAM" / "Portable 16 Go de RAM"."""
    if dev.kind == "cpu":
        return t("ui.device_laptop", lang, gb=dev.capacity_gb)
    return t("ui.device_gpu", lang, name=dev.label.rsplit(" ", 2)[0], gb=dev.capacity_gb)


def plan_frames(p: planner.Plan, lang: str) -> tuple[str, object, pd.DataFrame]:
    bf16, int8, nf4 = p.row("bf16"), p.row("int8"), p.row("nf4")
    summary = t("quant.p_summary", lang, label=p.label, params=p.params_b, quant=p.quantizable_b,
                context=p.context_length, batch=p.batch_size, max_context=p.max_context or "?",
                bf16=bf16.weights_gb, int8=int8.weights_gb, nf4=nf4.weights_gb, nf4_scales=nf4.scales_gb,
                nf4_codes=nf4.weights_gb - nf4.scales_gb, kv=bf16.kv_cache_gb)
    if p.sliding_window:
        summary += "\n\n" + t("ux.plan.window", lang, window=p.sliding_window)
    summary += "\n\n" + t("quant.p_fits", lang)
    records = []
    for r in p.rows:
        rec = {
            t("quant.col_format", lang): r.label,
            t("quant.col_bpw_q", lang): r.bits_per_weight,
            t("quant.col_weights", lang): round(r.weights_gb, 2),
            t("quant.col_scales", lang): round(r.scales_gb, 2),
            t("quant.col_kv", lang): round(r.kv_cache_gb, 2),
            t("quant.col_overhead", lang): round(r.overhead_gb, 2),
            t("quant.col_total", lang): round(r.total_gb, 2),
        }
        for dev in planner.DEVICES:
            rec[device_label(dev, lang)] = "✓" if r.fits[dev.key] else "✗"
        records.append(rec)
    gb_columns = ("quant.col_weights", "quant.col_scales", "quant.col_kv", "quant.col_overhead", "quant.col_total")
    records = fmt.table(pd.DataFrame(records), lang, {t(key, lang): 2 for key in gb_columns})
    chart = pd.DataFrame([
        {"precision": r.label, "GB": round(value, 3), "part": t(key, lang)}
        for r in p.rows
        for key, value in (("quant.comp_weights", r.weights_gb), ("quant.comp_kv", r.kv_cache_gb),
                           ("quant.comp_overhead", r.overhead_gb))
    ])
    return summary, records, chart


# =============================================================================== layout
@dataclass
class View:
    model: gr.Dropdown
    context: gr.Slider
    batch: gr.Slider
    run: gr.Button
    summary: gr.Markdown
    chart: gr.BarPlot
    table: gr.Dataframe

    @property
    def inputs(self) -> list:
        """In the order of :func:`memory_plan`'s arguments."""
        return [self.model, self.context, self.batch]

    @property
    def outputs(self) -> list:
        return [self.summary, self.chart, self.table]


def layout() -> View:
    gr.Markdown(I18N("quant.p_intro"))
    with gr.Row():
        model = gr.Dropdown(planner.preset_choices(), value="mistral-7b", label=I18N("quant.p_model"),
                            info=I18N("quant.p_model_info"), allow_custom_value=custom_models_allowed(), filterable=True,
                            elem_id="quant-p-model")
        max_context, _ = planner.context_limits("mistral-7b")
        context = gr.Slider(128, max_context, value=4096, step=128, label=I18N("quant.p_context"),
                            elem_id="quant-p-context")
        batch = gr.Slider(1, 64, value=1, step=1, label=I18N("quant.p_batch"), elem_id="quant-p-batch")
        run = gr.Button(I18N("quant.p_run"), variant="primary", elem_id="quant-p-run")
    summary = gr.Markdown(elem_id="quant-p-summary")
    chart = gr.BarPlot(x="precision", y="GB", color="part", label=I18N("quant.p_chart"), elem_id="quant-p-chart")
    table = gr.Dataframe(interactive=False, wrap=True, elem_id="quant-p-table")
    return View(model, context, batch, run, summary, chart, table)


# =============================================================================== handlers
@guard
def memory_plan(model: str = "mistral-7b", context_length: float = 4096, batch_size: float = 1,
                request: gr.Request = None):
    lang = request_lang(request)
    p = planner.plan(model, int(context_length or 0), int(batch_size or 0))
    text, table_df, chart_df = plan_frames(p, lang)
    order = [r.label for r in p.rows]
    chart_df = chart_df.rename(columns={"part": t("ui.col_part", lang)})
    plot = gr.BarPlot(value=chart_df, sort=order, x_title=t("quant.col_format", lang),
                      y_title=t("ui.unit_gb", lang), color=t("ui.col_part", lang))
    return text, plot, table_df


@guard
def context_slider(model: str, context_length: float, request: gr.Request = None):
    """The context slider's range follows the chosen model's config (``max_position_embeddings``)."""
    try:
        max_context, _ = planner.context_limits(model)
    except UserError:
        return gr.update()  # an unknown id: memory_plan says why
    if not max_context:
        return gr.update(maximum=131072, info=None)
    value = min(int(context_length or 4096), max_context)
    return gr.update(maximum=max_context, value=value,
                     info=t("ux.plan.context_info", request_lang(request), max_context=max_context))


# =============================================================================== wiring
def wire(view: View, ctx: AppContext) -> None:
    inputs, outputs = view.inputs, view.outputs
    view.run.click(memory_plan, inputs=inputs, outputs=outputs, api_name="memory_plan", concurrency_limit=None)
    view.model.change(context_slider, inputs=[view.model, view.context], outputs=view.context, api_name=False,
                      concurrency_limit=None, show_progress="hidden").then(memory_plan, inputs=inputs, outputs=outputs,
                                                                           api_name=False, concurrency_limit=None)
    for control in (view.context, view.batch):
        control.release(memory_plan, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None)
    share_row(ctx, "quantization", api="memory_plan",
              outputs={"summary": view.summary, "chart": view.chart, "table": view.table},
              card={"share.card.memory": "table"},
              title=lambda v: f"{v.get('model')} · context {v.get('context_length')} · batch {v.get('batch_size')}")


def build(ctx: AppContext) -> View:
    view = layout()
    wire(view, ctx)
    return view
