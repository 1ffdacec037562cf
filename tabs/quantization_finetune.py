"""Quantization tab, part 2 (planner), fine-tuning: the memory of one training step, term by term,
and the course's Mistral-7B figures beside the planner's."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from engine.quantization import finetune as ft
from engine.quantization import planner
from ui import fmt
from ui.context import AppContext
from ui.feedback import guard
from ui.i18n import I18N, request_lang, t
from ui.share import share_row
from tabs.quantization_planner import device_label

DEFAULTS = {"method": "qlora", "precision": "nf4", "optimizer": "adamw", "batch_size": 1, "seq_len": 512,
            "checkpointing": False, "rank": 16, "targets": list(ft.DEFAULT_TARGETS)}


# =============================================================================== helpers
def _n(value: float, lang: str) -> str:
    """A parameter count, short: 7.24 B / 7,24 Md, 6.82 M."""
    for suffix, scale in (("B" if lang != "fr" else "Md", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return fmt.number(value / scale, lang, 2 if value / scale < 100 else 0) + "\u00a0" + suffix
    return fmt.number(value, lang, 0)


def precision_choices() -> list[tuple]:
    return [(I18N(f"ft.prec_{p}"), p) for p in ft.PRECISIONS]


def method_controls(method: str, precision: str) -> tuple[dict, dict, dict]:
    """The precision picked for ``method`` (kept when allowed, else the method's first), and the LoRA
    controls enabled only for LoRA and QLoRA."""
    allowed = ft.METHOD_PRECISIONS.get(method, ft.METHOD_PRECISIONS["qlora"])
    value = precision if precision in allowed else allowed[0]
    lora = method != "full"
    return gr.update(value=value), gr.update(interactive=lora), gr.update(interactive=lora)


def _how(p: ft.FinetunePlan, s: ft.Structure, lang: str) -> dict[str, str]:
    setup = p.setup
    tokens = fmt.number(setup.tokens, lang, 0)
    if setup.precision in ("fp32", "bf16"):
        weights = t("ft.how_weights_float", lang, params=_n(s.params, lang), bytes=setup.weight_bytes)
    else:
        bpw = planner.quantized_bytes_per_weight(setup.precision)
        weights = t("ft.how_weights_kbit", lang, quant=_n(s.quantizable, lang), bpw=bpw,
                    precision=t(f"ft.prec_{setup.precision}", lang), other=_n(s.params - s.quantizable, lang))
    trained = _n(p.trainable, lang)
    if setup.lora:
        adapters = t("ft.how_adapters", lang, rank=setup.rank, targets=", ".join(setup.targets), n=trained)
        grad_bytes = ft.ADAPTER_BYTES
    else:
        adapters, grad_bytes = t("ft.how_adapters_none", lang), setup.weight_bytes
    key = "ft.how_opt_adamw" if setup.optimizer == "adamw" else "ft.how_opt_8bit"
    optimizer = t(key, lang, n=trained)
    if not setup.lora and setup.precision == "bf16":
        optimizer += t("ft.how_opt_master", lang, params=_n(s.params, lang))
    per_layer = fmt.number(p.layer_per_token, lang, 0)
    if setup.checkpointing:
        act = t("ft.how_act_ckpt", lang, layers=s.layers, width=fmt.number(setup.act_bytes * s.hidden, lang, 0),
                tokens=tokens, per_layer=per_layer)
    else:
        act = t("ft.how_act", lang, layers=s.layers, per_layer=per_layer, tokens=tokens)
    return {
        "weights": weights, "adapters": adapters,
        "gradients": t("ft.how_gradients", lang, n=trained, bytes=grad_bytes),
        "optimizer": optimizer, "activations": act,
        "logits": t("ft.how_logits", lang, tokens=tokens, vocab=fmt.number(s.vocab, lang, 0), bytes=setup.act_bytes),
        "peak": t("ft.how_peak_ckpt" if setup.checkpointing else "ft.how_peak", lang),
    }


def device_names(p: ft.FinetunePlan, lang: str, fits: bool) -> str:
    names = [device_label(d, lang) for d in planner.DEVICES if p.fits[d.key] is fits]
    return ", ".join(names) or t("ft.none", lang)


def summary_text(p: ft.FinetunePlan, lang: str) -> str:
    setup = p.setup
    text = t("ft.summary", lang, label=p.label, method=t(f"ft.method_{setup.method}", lang),
             precision=t(f"ft.prec_{setup.precision}", lang), optimizer=t(f"ft.opt_{setup.optimizer}", lang),
             peak=p.peak_gb, batch=setup.batch_size, seq=setup.seq_len,
             ckpt=t("ft.summary_ckpt", lang) if setup.checkpointing else "", trainable=_n(p.trainable, lang),
             params=_n(p.params, lang), pct=fmt.percent(p.trainable / p.params, lang, 2 if setup.lora else 0))
    return text + "\n\n" + t("ft.fits", lang, fits=device_names(p, lang, True), no=device_names(p, lang, False))


def terms_table(p: ft.FinetunePlan, lang: str) -> pd.DataFrame:
    how = _how(p, ft.structure(p.model), lang)
    term, gb, col_how = t("ft.col_term", lang), t("ft.col_gb", lang), t("ft.col_how", lang)
    rows = [{term: t(f"ft.term_{k}", lang), gb: round(p.terms[k] / ft.GB, 3), col_how: how[k]} for k in ft.TERMS]
    rows.append({term: t("ft.term_peak", lang), gb: round(p.peak_gb, 3), col_how: how["peak"]})
    return fmt.table(pd.DataFrame(rows), lang, {gb: 2})


def terms_chart(p: ft.FinetunePlan, lang: str) -> pd.DataFrame:
    return pd.DataFrame([{"term": t(f"ft.term_{k}", lang), "GB": round(p.terms[k] / ft.GB, 3)} for k in ft.TERMS])


def course_table(lang: str) -> pd.DataFrame:
    rows = []
    s = ft.structure("mistral-7b")
    for r in ft.course_reference("mistral-7b"):
        if r.key == "nf4-b1" and r.matching_seq is None:
            weights = ft.weights_bytes(s, ft.course_setup(r.method, r.precision, r.batch_size)) / ft.GB
            why = t("ft.why_nf4-b1", lang, weights=weights)
        elif r.key == "int8":
            why = t("ft.why_int8", lang, seq=r.matching_seq)
        else:
            why = t("ft.why_match", lang, seq=r.matching_seq)
        rows.append({t("ft.col_setting", lang): t(f"ft.course_{r.key}", lang), t("ft.col_course", lang): r.course_gb,
                     t("ft.col_planner", lang): round(r.planner_gb, 1), t("ft.col_why", lang): why})
    full = ft.plan_for(s, ft.course_setup("full", "bf16", 1)).peak_gb
    rows.append({t("ft.col_setting", lang): t("ft.method_full", lang) + " (bf16)", t("ft.col_course", lang): None,
                 t("ft.col_planner", lang): round(full, 1), t("ft.col_why", lang): t("ft.why_full", lang, gb=full)})
    return fmt.table(pd.DataFrame(rows), lang, {t("ft.col_course", lang): 1, t("ft.col_planner", lang): 1})


# =============================================================================== layout
@dataclass
class View:
    method: gr.Radio
    precision: gr.Dropdown
    optimizer: gr.Radio
    batch: gr.Slider
    seq: gr.Slider
    checkpointing: gr.Checkbox
    rank: gr.Slider
    targets: gr.CheckboxGroup
    run: gr.Button
    summary: gr.Markdown
    table: gr.Dataframe
    chart: gr.BarPlot
    course_intro: gr.Markdown
    course: gr.Dataframe
    model: gr.Dropdown  # the planner's (part 2's first control), read by this section too

    @property
    def inputs(self) -> list:
        """In the order of :func:`finetune_plan`'s arguments."""
        return [self.model, self.method, self.precision, self.optimizer, self.batch, self.seq, self.checkpointing,
                self.rank, self.targets]

    @property
    def outputs(self) -> list:
        return [self.summary, self.table, self.chart, self.course_intro, self.course]


def layout(model: gr.Dropdown) -> View:
    gr.Markdown(I18N("ft.title"))
    gr.Markdown(I18N("ft.intro"))
    with gr.Row():
        method = gr.Radio([(I18N(f"ft.method_{m}"), m) for m in ft.METHODS], value=DEFAULTS["method"],
                          label=I18N("ft.method"), elem_id="ft-method")
        precision = gr.Dropdown(precision_choices(), value=DEFAULTS["precision"], label=I18N("ft.precision"),
                                info=I18N("ft.precision_info"), elem_id="ft-precision")
        optimizer = gr.Radio([(I18N(f"ft.opt_{o}"), o) for o in ft.OPTIMIZERS], value=DEFAULTS["optimizer"],
                             label=I18N("ft.optimizer"), elem_id="ft-optimizer")
    with gr.Row():
        batch = gr.Slider(1, 64, value=DEFAULTS["batch_size"], step=1, label=I18N("ft.batch"), elem_id="ft-batch")
        seq = gr.Slider(64, 32768, value=DEFAULTS["seq_len"], step=64, label=I18N("ft.seq"), elem_id="ft-seq")
        checkpointing = gr.Checkbox(DEFAULTS["checkpointing"], label=I18N("ft.checkpointing"),
                                    info=I18N("ft.checkpointing_info"), elem_id="ft-checkpointing")
    with gr.Row(equal_height=True):
        rank = gr.Slider(1, 256, value=DEFAULTS["rank"], step=1, label=I18N("ft.rank"), elem_id="ft-rank")
        targets = gr.CheckboxGroup(list(ft.TARGETS), value=DEFAULTS["targets"], label=I18N("ft.targets"),
                                   info=I18N("ft.targets_info"), elem_id="ft-targets")
        run = gr.Button(I18N("ft.run"), variant="primary", scale=0, min_width=180, elem_id="ft-run")
    summary = gr.Markdown(elem_id="ft-summary")
    table = gr.Dataframe(interactive=False, wrap=True, column_widths=["17%", "8%", "75%"], elem_id="ft-table")
    chart = gr.BarPlot(x="term", y="GB", label=I18N("ft.card"), elem_id="ft-chart", height=260)
    gr.Markdown(I18N("ft.course_title"))
    course_intro = gr.Markdown(elem_id="ft-course-intro")
    course = gr.Dataframe(interactive=False, wrap=True, column_widths=["28%", "9%", "9%", "54%"], elem_id="ft-course")
    return View(method, precision, optimizer, batch, seq, checkpointing, rank, targets, run, summary, table, chart,
                course_intro, course, model)


# =============================================================================== handlers
@guard
def finetune_plan(model: str = "mistral-7b", method: str = "qlora", precision: str = "nf4",
                  optimizer: str = "adamw", batch_size: float = 1, seq_len: float = 512,
                  checkpointing: bool = False, rank: float = 16, targets: list[str] | None = None,
                  request: gr.Request = None):
    """Memory of one fine-tuning step of ``model``: a summary, each term with how it is counted,
    a chart of the terms, and the course's Mistral-7B figures beside the planner's."""
    lang = request_lang(request)
    p = ft.plan(model, method=method, precision=precision, optimizer=optimizer, batch_size=int(batch_size or 0),
                seq_len=int(seq_len or 0), checkpointing=bool(checkpointing), rank=int(rank or 0),
                targets=list(DEFAULTS["targets"] if targets is None else targets))
    chart_df = terms_chart(p, lang).rename(columns={"term": t("ft.col_term", lang)})
    plot = gr.BarPlot(value=chart_df, x=t("ft.col_term", lang), y="GB", sort=list(chart_df.iloc[:, 0]),
                      x_title=" ", y_title=t("ui.unit_gb", lang))
    return (summary_text(p, lang), terms_table(p, lang), plot,
            t("ft.course_intro", lang, seq=ft.COURSE_SEQ), course_table(lang))


@guard
def pick_finetune_method(method: str, precision: str):
    return method_controls(method, precision)


# =============================================================================== wiring
def wire(view: View, ctx: AppContext) -> None:
    inputs, outputs = view.inputs, view.outputs
    live = dict(inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None,
                trigger_mode="always_last", show_progress="minimal")
    view.run.click(finetune_plan, inputs=inputs, outputs=outputs, api_name="finetune_plan", concurrency_limit=None)
    view.method.input(pick_finetune_method, inputs=[view.method, view.precision],
                      outputs=[view.precision, view.rank, view.targets], api_name=False,
                      queue=False).then(finetune_plan, **live)
    for control in (view.precision, view.optimizer, view.checkpointing, view.targets):
        control.input(finetune_plan, **live)
    for control in (view.batch, view.seq, view.rank):
        control.release(finetune_plan, **live)
    view.model.change(finetune_plan, **live)
    share_row(ctx, "quantization", api="finetune_plan",
              outputs={"summary": view.summary, "table": view.table, "chart": view.chart, "course": view.course},
              card={"ft.card": "table"},
              title=lambda v: f"{v.get('model')} · {v.get('method')} · {v.get('precision')} · "
                              f"{v.get('batch_size')} × {v.get('seq_len')}")


def build(ctx: AppContext, model: gr.Dropdown) -> View:
    """The fine-tuning section under the inference planner; it reads the planner's ``model``."""
    # Mistral-7B's layers counted and the course's rows computed at start-up, not on the first click
    threading.Thread(target=ft.course_reference, args=("mistral-7b",), daemon=True, name="ft-warm-up").start()
    view = layout(model)
    wire(view, ctx)
    return view
