"""Quantization, part 3: one model at several precisions, measured live (wiring only; the work is
in :mod:`engine.quantization.live` and :mod:`engine.quantization.live_runs`)."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from engine import gpu_tasks
from engine.runtime import tempfiles
from engine.errors import UserError
from engine.models.policy import custom_models_allowed
from engine.quantization import live, live_runs, warmup
from engine.quantization.results import COLUMNS, Row, to_frame, write_csv
from engine.quantization.variants import VARIANTS, default_variants, ordered
from ui import fmt, zerogpu
from ui.context import AppContext
from ui.feedback import guard, warn
from ui.i18n import I18N, forced_lang, request_lang, t
from ui.share import share_row
from ui.widgets import RunRow, preset_label, run_row, spec_for

PROMPTS = live.load_passages()["prompts"]
DEFAULT_PROMPT = PROMPTS["en"]
TABLE_COLUMNS = [c for c in COLUMNS if c != "output"]  # outputs are in the cards below (and in the CSV)
LIVE_EVENTS = 16  # comparisons let into the handler at once: the memory gate decides which run, the rest see their place


# =============================================================================== helpers
def column_name(column: str, lang: str) -> str:
    return t(f"ux.quant.col_{column}", lang)


def display_frame(rows: list[Row], lang: str):
    """The CSV's table with translated headers and statuses, numbers written the language's way
    (missing ones shown "—"); the data underneath (and the API) keep numbers."""
    df = to_frame(rows)[TABLE_COLUMNS].astype(object)
    df = df.where(pd.notna(df), None)
    df["status"] = [t(f"ux.quant.status_{s}", lang) for s in df["status"]]
    return fmt.table(df.rename(columns={c: column_name(c, lang) for c in TABLE_COLUMNS}), lang)


def empty_frame(lang: str) -> pd.DataFrame:
    return pd.DataFrame(columns=[column_name(c, lang) for c in TABLE_COLUMNS])


def live_status(snap: live_runs.Snapshot, total: int, lang: str) -> str:
    rows = snap.rows
    ok = [r for r in rows if r.status == "ok"]
    lines = []
    if snap.state == "queued":
        lines.append(t("ux.quant.queued", lang, position=snap.position))
    elif snap.state in ("done", "stopped", "failed"):
        if snap.state == "stopped":
            lines.append(t("ux.quant.stopped", lang, done=len(rows), total=total))
        lines.append(t("quant.l_done", lang, ok=len(ok), skipped=sum(r.status == "skipped" for r in rows),
                       failed=sum(r.status == "failed" for r in rows), reference=ok[0].precision if ok else "—"))
    else:
        lines.append(t("quant.l_running", lang, done=len(rows), total=total))
    if snap.others:
        lines.append(t("ux.quant.shared", lang, others=snap.others))
    for r in rows:
        if r.status in ("skipped", "failed"):
            lines.append(t(f"quant.l_row_{r.status}", lang, precision=r.precision, note=r.note))
    lines.append("\n" + t("quant.l_footprint_note", lang))
    return "\n".join(lines)


def stage_text(stage: live.Stage, lang: str) -> str:
    label = VARIANTS[stage.variant].label
    if stage.phase == "kernels":
        what = t(warmup.WHAT.get(VARIANTS[stage.variant].method, "ux.quant.kernels_bnb"), lang)
        return t("ux.quant.stage_kernels", lang, label=label, i=stage.index, n=stage.total, what=what,
                 seconds=round(stage.seconds))
    return t("ux.quant.stage", lang, label=label, i=stage.index, n=stage.total,
             phase=t(f"ux.quant.phase_{stage.phase}", lang))


def live_charts(rows: list[Row]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ok = [r for r in rows if r.status == "ok"]
    memory = pd.DataFrame({"precision": [r.precision for r in ok], "MB": [r.memory_mb for r in ok]})
    speed = pd.DataFrame({"precision": [r.precision for r in ok], "tok/s": [r.tok_per_s for r in ok]})
    # one bar per (precision, language): perplexities side by side, never stacked
    ppl = pd.DataFrame([{"precision": f"{r.precision} · {lang}", "perplexity": value, "text": lang}
                        for r in ok for lang, value in (("EN", r.ppl_en), ("FR", r.ppl_fr))],
                       columns=["precision", "perplexity", "text"])
    return memory, speed, ppl


def outputs_html(rows: list[Row], lang: str) -> str:
    cards = []
    for r in rows:
        if r.status != "ok":
            continue
        if r.first_divergence is None:
            agree = t("quant.l_identical", lang)
        else:
            agree = t("quant.l_agreement", lang, pct=r.agreement_pct or 0.0, pos=r.first_divergence)
        stats = t("quant.l_stats", lang, tokens=r.tokens, tps=r.tok_per_s or 0.0, mb=r.memory_mb or 0.0)
        cards.append(
            '<div class="quant-card" style="flex:1 1 260px;min-width:240px;border:1px solid var(--border-color-primary);'
            'border-radius:8px;padding:8px 10px">'
            f"<strong>{html.escape(r.precision)}</strong> <small>({html.escape(r.method)})</small><br>"
            f"<small>{html.escape(stats)} · {html.escape(agree)}</small>"
            f'<div class="quant-card-output" style="white-space:pre-wrap;margin-top:6px">'
            f'{html.escape(r.output)}</div></div>'
        )
    return f'<div id="quant-outputs-grid" style="display:flex;flex-wrap:wrap;gap:8px">{"".join(cards)}</div>'


def default_tokens(ctx: AppContext, tiny: bool) -> int:
    return 24 if tiny else (48 if ctx.hardware.device == "cpu" else 128)


# =============================================================================== layout
@dataclass
class View:
    preset: gr.Dropdown
    prompt: gr.Textbox
    precisions: gr.CheckboxGroup
    model: gr.Dropdown
    max_tokens: gr.Slider
    row: RunRow
    status: gr.Markdown
    table: gr.Dataframe
    mem_plot: gr.BarPlot
    speed_plot: gr.BarPlot
    ppl_plot: gr.BarPlot
    outputs_box: gr.HTML
    csv_file: gr.File


def layout(ctx: AppContext, tiny: bool, model_choices: list[str]) -> View:
    gr.Markdown(I18N("quant.l_intro"))
    subject = ctx.catalog.spec("quant_subject")
    defaults = default_variants(ctx.hardware.device, ctx.hardware.bf16)
    with gr.Row():
        with gr.Column(scale=2):
            preset = gr.Dropdown([(f"{lang.upper()} · {preset_label(text, 60)}", text) for lang, text in PROMPTS.items()],
                                 value=None, label=I18N("quant.l_preset"), elem_id="quant-l-preset")
            prompt = gr.Textbox(PROMPTS.get(forced_lang() or "en", DEFAULT_PROMPT), lines=3,
                                label=I18N("quant.l_prompt"), elem_id="quant-l-prompt")
            precisions = gr.CheckboxGroup([(v.label, k) for k, v in VARIANTS.items()], value=defaults,
                                          label=I18N("quant.l_precisions"), elem_id="quant-l-precisions")
        with gr.Column(scale=1):
            model = gr.Dropdown(model_choices, value=subject.id, label=I18N("quant.l_model"),
                                allow_custom_value=custom_models_allowed(), filterable=True, elem_id="quant-l-model")
            max_tokens = gr.Slider(4, 512, value=default_tokens(ctx, tiny), step=1, label=I18N("quant.l_max_tokens"),
                                   elem_id="quant-l-tokens")
            row = run_row("quant.l_run", "quant-l", new_sample=False)  # greedy: no seed to draw
    status = gr.Markdown(elem_id="quant-l-status")
    # shown with its translated headers when the tab opens (empty, Gradio would show "1 2 3")
    table = gr.Dataframe(label=I18N("quant.l_table"), interactive=False, wrap=False, visible=False,
                         elem_id="quant-l-table")
    with gr.Row():
        mem_plot = gr.BarPlot(x="precision", y="MB", label=I18N("quant.l_chart_memory"), y_lim=[0, None],
                              elem_id="quant-l-memory")
        speed_plot = gr.BarPlot(x="precision", y="tok/s", label=I18N("quant.l_chart_speed"), y_lim=[0, None],
                                elem_id="quant-l-speed")
        ppl_plot = gr.BarPlot(x="precision", y="perplexity", color="text", label=I18N("quant.l_chart_ppl"),
                              y_lim=[0, None], x_label_angle=-30, elem_id="quant-l-ppl")
    with gr.Accordion(I18N("quant.l_outputs"), open=True):
        outputs_box = gr.HTML(elem_id="quant-l-outputs")
    csv_file = gr.File(label=I18N("quant.l_csv"), interactive=False, elem_id="quant-l-csv")
    return View(preset, prompt, precisions, model, max_tokens, row, status, table, mem_plot, speed_plot, ppl_plot,
                outputs_box, csv_file)


# =============================================================================== handlers
def quantize_compare_for(ctx: AppContext):
    device, bf16 = ctx.hardware.device, ctx.hardware.bf16

    @guard
    def quantize_compare(model: str = "", precisions: list[str] | None = None, prompt: str | None = None,
                         max_new_tokens: float = 24, request: gr.Request = None, progress=gr.Progress()):
        """Measure ``model`` at each precision; rows stream in as they are measured. ``prompt``
        defaults to the example passage of the visitor's language."""
        lang = request_lang(request)
        prompt = PROMPTS.get(lang, DEFAULT_PROMPT) if prompt is None else prompt
        if not (prompt or "").strip():
            warn("err.empty_prompt", request)
            return
        keys = ordered(list(precisions) if precisions else default_variants(device, bf16))
        if not keys:
            raise UserError("quant.err_no_precision")
        spec = spec_for(ctx, "quant_subject", model)

        def emit(snap: live_runs.Snapshot, csv_path: str | None):
            rows = snap.rows
            memory, speed, ppl = live_charts(rows)
            order = [r.precision for r in rows if r.status == "ok"]
            x_title = column_name("precision", lang)
            return (live_status(snap, len(keys), lang), display_frame(rows, lang),
                    gr.BarPlot(value=memory, sort=order, x_title=x_title, y_title=column_name("memory_mb", lang)),
                    gr.BarPlot(value=speed, sort=order, x_title=x_title, y_title=column_name("tok_per_s", lang)),
                    gr.BarPlot(value=ppl, sort=list(ppl["precision"]), x_title=x_title,
                               y_title=t("ux.quant.perplexity", lang), color_title=t("ux.quant.passage", lang)),
                    outputs_html(rows, lang), csv_path)

        job = gpu_tasks.QuantizeJob(spec, tuple(keys), prompt, int(max_new_tokens or 24),
                                    passages=tuple(live.load_passages()["passages"].items()), lang=lang)
        progress(0.0, desc=spec.id)
        snap, shown = None, None
        for snap in gpu_tasks.call(gpu_tasks.quantize, job, zerogpu.stop_key(request, "quantize"),
                                   on_notice=zerogpu.warn_notice(lang)):
            if snap.state == "queued":
                progress(0.0, desc=t("ux.quant.queued_short", lang, position=snap.position))
            elif snap.stage is not None and snap.state == "running":
                progress(snap.fraction, desc=stage_text(snap.stage, lang))
            if snap.state == "failed" and snap.error is not None:
                raise snap.error
            key = (snap.state, snap.position, len(snap.rows), snap.others)
            if snap.state not in ("done", "stopped") and key != shown:  # only when what they show changed
                shown = key
                yield emit(snap, None)
        if snap is None:
            return
        path = tempfiles.new_dir("quant") / t("ui.live_csv_name", lang)
        write_csv(snap.rows, path)
        yield emit(snap, str(path))

    return quantize_compare


def stop_compare(request: gr.Request):
    """Stop this visitor's comparison: the rows measured so far stay (even in a ZeroGPU worker)."""
    zerogpu.stop(request, "quantize")


# =============================================================================== wiring
def wire(view: View, ctx: AppContext) -> None:
    view.preset.change(lambda text: text, inputs=view.preset, outputs=view.prompt, api_name=False, queue=False)
    view.row.wire(quantize_compare_for(ctx), action="quantize",
                  inputs=[view.model, view.precisions, view.prompt, view.max_tokens],
                  outputs=[view.status, view.table, view.mem_plot, view.speed_plot, view.ppl_plot, view.outputs_box,
                           view.csv_file],
                  api_name="quantize_compare", concurrency_id="quant-live", concurrency_limit=LIVE_EVENTS,
                  show_progress_on=[view.status])  # the progress bar on the status line: rows, charts stay visible
    view.row.stop.click(stop_compare, api_name="stop_quantize_compare", queue=False)
    share_row(ctx, "quantization", api="quantize_compare",
              outputs={"status": view.status, "table": view.table, "memory": view.mem_plot, "speed": view.speed_plot,
                       "perplexity": view.ppl_plot, "outputs": view.outputs_box},
              card={"share.card.comparison": "table"}, title="prompt")


def build(ctx: AppContext, tiny: bool, model_choices: list[str]) -> View:
    """The live comparison's controls and results (the tab sets the prompt's and the results table's
    language when it opens)."""
    device = ctx.hardware.device
    # the libraries' first-call work (imports, quanto's C++ extension) starts now, in the background;
    # on ZeroGPU this process has no GPU: the imports done here are inherited by the GPU workers
    warmup.start([VARIANTS[k].method for k in default_variants(device, ctx.hardware.bf16)],
                 "cpu" if ctx.hardware.zerogpu else device)
    view = layout(ctx, tiny, model_choices)
    wire(view, ctx)
    return view
