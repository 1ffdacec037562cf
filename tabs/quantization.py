"""Quantization: what bits do to weights (part 1), memory (part 2), speed and answers (part 3)."""
from __future__ import annotations

import html
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from engine.errors import UserError
from engine.quantization import live, planner, weights
from ui import fmt
from ui.context import AppContext
from ui.feedback import guard, warn
from ui.i18n import I18N, request_lang, t
from ui.widgets import preset_label, spec_for
from ui.wording import live_columns, localised_progress

PROMPTS = live.load_passages()["prompts"]
DEFAULT_PROMPT = PROMPTS["en"]


# =============================================================================== part 1
TRANSLATED_NAMES = ("absmax", "zeropoint", "blockwise", "int8-rowwise", "nf4-dq", "TQ2_0")


def method_choices() -> list[tuple]:
    return [(I18N(f"quant.name_{key}") if key in TRANSLATED_NAMES else info.label, key)
            for key, info in weights.METHODS.items()]


def method_name(key: str, lang: str) -> str:
    return t(f"quant.name_{key}", lang) if key in TRANSLATED_NAMES else weights.METHODS[key].label


def model_choices(ctx: AppContext) -> list[str]:
    ids = ctx.catalog.llm_choices("quant_subject") + [ctx.catalog.spec(r).id for r in ("base_llm", "instruct_llm")]
    return list(dict.fromkeys(ids))


def load_matrix(source: str, model: str, layer: str, outliers: float) -> weights.Matrix:
    if source == "model":
        model = (model or "").strip()
        if not model:
            raise UserError("quant.err_no_model")
        names = weights.list_layers(model)
        return weights.checkpoint_matrix(model, layer if layer in names else weights.default_layer(names))
    return weights.synthetic_matrix(int(outliers or 0))


def matrix_name(mat: weights.Matrix, lang: str) -> tuple[str, str]:
    """(name, source) of a matrix in ``lang``: a synthetic one is described, a checkpoint's keeps its names."""
    if mat.synthetic is None:
        return mat.name, mat.source
    std, n = mat.synthetic
    return t("ui.synthetic_matrix", lang, std=std, n=n), t("ui.synthetic_source", lang)


def method_text(method: str, lang: str) -> str:
    info = weights.METHODS[method]
    if info.family == "GGUF" and method != "Q6_K":
        return t("quant.m_gguf", lang, fmt=method, block=weights.GGUF_BLOCK[method])
    return t(f"quant.m_{method}", lang)


def weights_summary(a: weights.Analysis, lang: str) -> str:
    m, mat = a.metrics, a.matrix
    rows, cols = mat.values.shape
    full = " × ".join(str(d) for d in mat.full_shape)
    cropped = t("quant.w_cropped", lang, full=full) if mat.cropped else ""
    levels_key = "quant.levels_tensor" if a.levels_scope == "tensor" else "quant.levels_block"
    name, source = matrix_name(mat, lang)
    return "\n\n".join([
        t("quant.w_matrix", lang, name=name, source=source, rows=rows, cols=cols, cropped=cropped,
          dtype=mat.stored_dtype),
        method_text(a.method, lang),
        t("quant.w_metrics", lang, mse=m.mse, max_abs=m.max_abs_error, snr=m.snr_db, bpw=m.bits_per_weight,
          sigmas=weights.OUTLIER_SIGMAS, outliers=m.outliers, hurt=m.outlier_hurt_pct, zeroed=m.zeroed_pct),
        t(levels_key, lang, n=len(a.levels)) + " " + t("quant.snr_hint", lang),
    ])


def sweep_frames(a: weights.Analysis, lang: str) -> tuple[pd.DataFrame, object]:
    raw = pd.DataFrame(a.sweep)
    chart = raw[["method", "family", "bits", "bits_per_weight", "snr_db"]].copy()
    chart["method"] = [f"{m} {b}-bit" if weights.METHODS[m].fixed_bits is None else m
                       for m, b in zip(raw["method"], raw["bits"])]
    chart = chart.rename(columns={"family": t("ui.col_family", lang)})
    table = pd.DataFrame({
        t("quant.col_method", lang): [method_name(m, lang) for m in raw["method"]],
        t("quant.col_bits", lang): raw["bits"],
        t("quant.col_bpw", lang): raw["bits_per_weight"].round(3),
        t("quant.col_mse", lang): raw["mse"].map(lambda v: fmt.scientific(v, lang)),
        t("quant.col_max_abs", lang): raw["max_abs_error"].map(lambda v: fmt.scientific(v, lang)),
        t("quant.col_snr", lang): raw["snr_db"],
        t("quant.col_hurt", lang): raw["outlier_hurt_pct"],
        t("quant.col_zeroed", lang): raw["zeroed_pct"],
    })
    table = fmt.table(table, lang)
    return chart, table


def histogram(a: weights.Analysis, lang: str):
    labels = {
        "title": t("quant.hist_title", lang, method=method_name(a.method, lang), bits=a.bits,
                   matrix=matrix_name(a.matrix, lang)[0]),
        "original": t("quant.hist_original", lang), "dequantized": t("quant.hist_dequantized", lang),
        "levels": t("quant.hist_levels", lang), "x": t("quant.hist_x", lang), "y": t("quant.hist_y", lang),
    }
    return weights.histogram_figure(a.matrix.values, a.quantized.dequantized, a.levels, labels)


# =============================================================================== part 2
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


# =============================================================================== part 3
def display_frame(rows: list[live.Row], lang: str = "en"):
    """The results table: the CSV's columns, headed and numbered in ``lang`` (missing numbers shown "—")."""
    df = live.to_frame(rows).astype(object)
    df = df.where(pd.notna(df), None)
    return fmt.table(df.rename(columns=live_columns(lang)), lang)


def live_status(rows: list[live.Row], total: int, lang: str, finished: bool) -> str:
    ok = [r for r in rows if r.status == "ok"]
    lines = []
    if finished:
        lines.append(t("quant.l_done", lang, ok=len(ok), skipped=sum(r.status == "skipped" for r in rows),
                       failed=sum(r.status == "failed" for r in rows), reference=ok[0].precision if ok else "—"))
    else:
        lines.append(t("quant.l_running", lang, done=len(rows), total=total))
    for r in rows:
        if r.status in ("skipped", "failed"):
            lines.append(t(f"quant.l_row_{r.status}", lang, precision=r.precision, note=r.note))
    lines.append("\n" + t("quant.l_footprint_note", lang))
    return "\n".join(lines)


def live_charts(rows: list[live.Row]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ok = [r for r in rows if r.status == "ok"]
    memory = pd.DataFrame({"precision": [r.precision for r in ok], "MB": [r.memory_mb for r in ok]})
    speed = pd.DataFrame({"precision": [r.precision for r in ok], "tok/s": [r.tok_per_s for r in ok]})
    # one bar per (precision, language): perplexities side by side, never stacked
    ppl = pd.DataFrame([{"precision": f"{r.precision} · {lang}", "perplexity": value, "text": lang}
                        for r in ok for lang, value in (("EN", r.ppl_en), ("FR", r.ppl_fr))],
                       columns=["precision", "perplexity", "text"])
    return memory, speed, ppl


def outputs_html(rows: list[live.Row], lang: str) -> str:
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


# =============================================================================== UI
def build(ctx: AppContext) -> None:
    tiny = ctx.catalog.profile == "tiny"
    gr.Markdown(I18N("quant.intro"))
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab(I18N("quant.sub_weights"), id="quant-weights", elem_id="quant-weights"):
            _build_weights(ctx)
        with gr.Tab(I18N("quant.sub_planner"), id="quant-planner", elem_id="quant-planner"):
            _build_planner()
        with gr.Tab(I18N("quant.sub_live"), id="quant-live", elem_id="quant-live"):
            _build_live(ctx, tiny)


def _build_weights(ctx: AppContext) -> None:
    gr.Markdown(I18N("quant.w_intro"))
    subject = ctx.catalog.spec("quant_subject").id
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            source = gr.Radio([(I18N("quant.src_synthetic"), "synthetic"), (I18N("quant.src_model"), "model")],
                              value="synthetic", label=I18N("quant.source"), elem_id="quant-source")
            outliers = gr.Slider(0, 64, value=8, step=1, label=I18N("quant.outliers"),
                                 info=I18N("quant.outliers_info"), elem_id="quant-outliers")
            model = gr.Dropdown(model_choices(ctx), value=subject, label=I18N("quant.model"), allow_custom_value=True,
                                filterable=True, visible=False, elem_id="quant-w-model")
            layer = gr.Dropdown([], value="", label=I18N("quant.layer"), allow_custom_value=True, visible=False,
                                elem_id="quant-layer")
            method = gr.Dropdown(method_choices(), value="nf4", label=I18N("quant.method"), elem_id="quant-method")
            bits = gr.Slider(1, 8, value=4, step=1, label=I18N("quant.bits"), info=I18N("quant.bits_info"),
                             elem_id="quant-bits")
            block = gr.Dropdown([str(b) for b in weights.BLOCK_SIZES], value="64", label=I18N("quant.block"),
                                info=I18N("quant.block_info"), elem_id="quant-block")
            run = gr.Button(I18N("quant.run_weights"), variant="primary", elem_id="quant-w-run")
        with gr.Column(scale=2):
            hist = gr.Plot(show_label=False, elem_id="quant-hist")
            summary = gr.Markdown(elem_id="quant-w-summary")
    # no fixed height: it would clip the colour legend
    chart = gr.ScatterPlot(x="bits_per_weight", y="snr_db", color="family", label=I18N("quant.chart_error"),
                           tooltip=["method", "bits_per_weight", "snr_db"], elem_id="quant-error-chart")
    table = gr.Dataframe(label=I18N("quant.w_table"), interactive=False, wrap=True, elem_id="quant-w-table")

    def toggle_source(choice: str):
        synthetic = choice != "model"
        return gr.update(visible=synthetic), gr.update(visible=not synthetic), gr.update(visible=not synthetic)

    @guard
    def layers_of(model: str, request: gr.Request = None):
        model = (model or "").strip()
        if not model:
            return gr.update(choices=[], value=None)
        names = list(weights.list_layers(model))
        return gr.update(choices=names, value=weights.default_layer(tuple(names)))

    @guard
    def quantize_weights(source: str = "synthetic", model: str = "", layer: str = "", method: str = "nf4",
                         bits: float = 4, block_size: str | int = 64, outliers: float = 8,
                         request: gr.Request = None):
        lang = request_lang(request)
        matrix = load_matrix(source, model or subject, layer or "", outliers)
        a = weights.analyze(matrix, method, int(bits or 4), int(block_size or 64))
        chart_df, table_df = sweep_frames(a, lang)
        plot = gr.ScatterPlot(value=chart_df, x_title=t("quant.chart_x", lang), y_title=t("quant.chart_y", lang),
                              color=t("ui.col_family", lang))
        return histogram(a, lang), weights_summary(a, lang), plot, table_df

    inputs = [source, model, layer, method, bits, block, outliers]
    outputs = [hist, summary, chart, table]
    source.change(toggle_source, inputs=source, outputs=[outliers, model, layer], api_name=False, queue=False)
    source.change(layers_of, inputs=model, outputs=layer, api_name=False, concurrency_limit=None)
    model.change(layers_of, inputs=model, outputs=layer, api_name=False, concurrency_limit=None)
    run.click(quantize_weights, inputs=inputs, outputs=outputs, api_name="quantize_weights", concurrency_limit=None)
    for control in (method, bits, block, layer):
        control.change(quantize_weights, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None,
                       trigger_mode="always_last")
    outliers.release(quantize_weights, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None)


def _build_planner() -> None:
    gr.Markdown(I18N("quant.p_intro"))
    with gr.Row():
        model = gr.Dropdown(planner.preset_choices(), value="mistral-7b", label=I18N("quant.p_model"),
                            info=I18N("quant.p_model_info"), allow_custom_value=True, filterable=True,
                            elem_id="quant-p-model")
        context = gr.Slider(128, 131072, value=4096, step=128, label=I18N("quant.p_context"), elem_id="quant-p-context")
        batch = gr.Slider(1, 64, value=1, step=1, label=I18N("quant.p_batch"), elem_id="quant-p-batch")
        run = gr.Button(I18N("quant.p_run"), variant="primary", elem_id="quant-p-run")
    summary = gr.Markdown(elem_id="quant-p-summary")
    chart = gr.BarPlot(x="precision", y="GB", color="part", label=I18N("quant.p_chart"), elem_id="quant-p-chart")
    table = gr.Dataframe(interactive=False, wrap=True, elem_id="quant-p-table")

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

    inputs, outputs = [model, context, batch], [summary, chart, table]
    run.click(memory_plan, inputs=inputs, outputs=outputs, api_name="memory_plan", concurrency_limit=None)
    model.change(memory_plan, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None)
    for control in (context, batch):
        control.release(memory_plan, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None)


def _build_live(ctx: AppContext, tiny: bool) -> None:
    gr.Markdown(I18N("quant.l_intro"))
    subject = ctx.catalog.spec("quant_subject")
    device, bf16 = ctx.hardware.device, ctx.hardware.bf16
    default_tokens = 24 if tiny else (48 if device == "cpu" else 128)
    with gr.Row():
        with gr.Column(scale=2):
            examples = [(f"{lang.upper()} · {preset_label(text, 60)}", text) for lang, text in PROMPTS.items()]
            preset = gr.Dropdown(examples, value=None, label=I18N("quant.l_preset"), elem_id="quant-l-preset")
            prompt = gr.Textbox(DEFAULT_PROMPT, lines=3, label=I18N("quant.l_prompt"), elem_id="quant-l-prompt")
            precisions = gr.CheckboxGroup([(v.label, k) for k, v in live.VARIANTS.items()],
                                          value=live.default_variants(device, bf16), label=I18N("quant.l_precisions"),
                                          elem_id="quant-l-precisions")
        with gr.Column(scale=1):
            model = gr.Dropdown(model_choices(ctx), value=subject.id, label=I18N("quant.l_model"),
                                allow_custom_value=True, filterable=True, elem_id="quant-l-model")
            max_tokens = gr.Slider(4, 512, value=default_tokens, step=1, label=I18N("quant.l_max_tokens"),
                                   elem_id="quant-l-tokens")
            run = gr.Button(I18N("quant.l_run"), variant="primary", elem_id="quant-l-run")
    status = gr.Markdown(elem_id="quant-l-status")
    table = gr.Dataframe(label=I18N("quant.l_table"), interactive=False, wrap=False, elem_id="quant-l-table")
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

    @ctx.gpu(duration_s=300)
    @guard
    def quantize_compare(model: str = "", precisions: list[str] | None = None, prompt: str = DEFAULT_PROMPT,
                         max_new_tokens: float = 24, request: gr.Request = None, progress=gr.Progress()):
        lang = request_lang(request)
        if not (prompt or "").strip():
            warn("err.empty_prompt", request)
            return
        chosen = list(precisions) if precisions else live.default_variants(device, bf16)
        spec = spec_for(ctx, "quant_subject", model)
        total = len(live.ordered(chosen))
        passages = live.load_passages()["passages"]

        def explain(err: UserError) -> str:
            return t(err.key, lang, **err.params)

        def emit(rows: list[live.Row], csv_path: str | None, finished: bool):
            memory, speed, ppl = live_charts(rows)
            order = [r.precision for r in rows if r.status == "ok"]
            x_title = t("ui.col_precision", lang)
            ppl = ppl.rename(columns={"text": t("ui.col_text", lang)})
            return (live_status(rows, total, lang, finished), display_frame(rows, lang),
                    gr.BarPlot(value=memory, sort=order, x_title=x_title, y_title=t("ui.unit_mb", lang)),
                    gr.BarPlot(value=speed, sort=order, x_title=x_title, y_title="tok/s"),
                    gr.BarPlot(value=ppl, sort=list(ppl["precision"]), x_title=x_title,
                               y_title=t("ui.col_perplexity", lang), color=t("ui.col_text", lang)),
                    outputs_html(rows, lang), csv_path)

        rows: list[live.Row] = []
        progress(0.0, desc=spec.id)
        for rows in live.compare(ctx.manager, spec, chosen, prompt, max_new_tokens=int(max_new_tokens or 24),
                                 passages=passages, explain=explain,
                                 progress=localised_progress(progress, lang)):
            yield emit(rows, None, False)
        path = Path(tempfile.mkdtemp(prefix="quant-")) / t("ui.live_csv_name", lang)
        live.write_csv(rows, path)
        yield emit(rows, str(path), True)

    preset.change(lambda text: text, inputs=preset, outputs=prompt, api_name=False, queue=False)
    run.click(quantize_compare, inputs=[model, precisions, prompt, max_tokens],
              outputs=[status, table, mem_plot, speed_plot, ppl_plot, outputs_box, csv_file],
              api_name="quantize_compare", concurrency_id="quant-live", concurrency_limit=1)
