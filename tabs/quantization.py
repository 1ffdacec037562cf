"""Quantization: what bits do to weights (part 1), memory (part 2), speed and answers (part 3)."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from engine.errors import UserError
from engine.models.policy import custom_models_allowed
from engine.quantization import matrices, planner, weights
from engine.quantization.histogram import histogram_figure
from ui import fmt
from ui.context import AppContext
from ui.feedback import guard
from ui.i18n import I18N, request_lang, t
from ui.share import share_row
from tabs.quantization_finetune import build_finetune
from tabs.quantization_live import DEFAULT_PROMPT, PROMPTS, build_live, empty_frame



# =============================================================================== part 1
DEFAULT_METHOD = "blockwise"  # the bits slider acts on it (1 → 8 bits is a teacher's first move); NF4 is one click away
TRANSLATED_NAMES = ("absmax", "zeropoint", "blockwise", "int8-rowwise", "nf4-dq", "TQ2_0")


def method_choices() -> list[tuple]:
    return [(I18N(f"quant.name_{key}") if key in TRANSLATED_NAMES else info.label, key)
            for key, info in weights.METHODS.items()]


def method_name(key: str, lang: str) -> str:
    return t(f"quant.name_{key}", lang) if key in TRANSLATED_NAMES else weights.METHODS[key].label


def model_choices(ctx: AppContext) -> list[str]:
    ids = ctx.catalog.llm_choices("quant_subject") + [ctx.catalog.spec(r).id for r in ("base_llm", "instruct_llm")]
    return list(dict.fromkeys(ids))


def load_matrix(source: str, model: str, layer: str, outliers: float) -> matrices.Matrix:
    if source == "model":
        model = (model or "").strip()
        if not model:
            raise UserError("quant.err_no_model")
        names = matrices.list_layers(model)
        return matrices.checkpoint_matrix(model, layer if layer in names else matrices.default_layer(names))
    return matrices.synthetic_matrix(int(outliers or 0))


def method_controls(method: str, bits: float, lang: str) -> tuple[dict, dict]:
    """The bits slider and block dropdown for ``method``: a format with a fixed width shows it,
    disabled, with the reason; a method without blocks disables the block size, saying why."""
    info = weights.METHODS.get(method) or weights.METHODS[DEFAULT_METHOD]
    name = method_name(info.key, lang)
    if info.fixed_bits is None:
        bits_update = gr.update(value=int(bits or 4), interactive=True, info=t("ux.quant.bits_free", lang))
    else:
        bits_update = gr.update(value=info.fixed_bits, interactive=False,
                                info=t("ux.quant.bits_fixed", lang, method=name, bits=info.fixed_bits))
    if info.uses_block_size:
        block_update = gr.update(interactive=True, info=t("quant.block_info", lang))
    else:
        block_update = gr.update(interactive=False, info=t("ux.quant.block_unused", lang, method=name))
    return bits_update, block_update


def matrix_name(mat: matrices.Matrix, lang: str) -> tuple[str, str]:
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
    return histogram_figure(a.matrix.values, a.quantized.dequantized, a.levels, labels)


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


# =============================================================================== UI
def build(ctx: AppContext, tab: gr.Tab | None = None) -> None:
    tiny = ctx.catalog.profile == "tiny"
    gr.Markdown(I18N("quant.intro"))
    with gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab(I18N("quant.sub_weights"), id="quant-weights", elem_id="quant-weights"):
            w_inputs, w_outputs, quantize_weights = _build_weights(ctx)
        with gr.Tab(I18N("quant.sub_planner"), id="quant-planner", elem_id="quant-planner"):
            p_inputs, p_outputs, memory_plan, f_inputs, f_outputs, finetune_plan = _build_planner(ctx)
        with gr.Tab(I18N("quant.sub_live"), id="quant-live", elem_id="quant-live"):
            live_prompt, live_table = build_live(ctx, tiny, model_choices(ctx))
    if tab is None:
        return
    opened = gr.State(False)
    first_views: dict[tuple, tuple] = {}   # per language and settings: every visitor's first view is the same

    def first_view(was_opened: bool, prompt: str, source: str, model: str, layer: str, method: str, bits: float,
                   block_size: str, outliers: float, plan_model: str, context_length: float, batch_size: float,
                   ft_method: str, ft_precision: str, ft_optimizer: str, ft_batch: float, ft_seq: float,
                   ft_checkpointing: bool, ft_rank: float, ft_targets: list[str], request: gr.Request):
        """The first time the tab opens: the histogram, error chart, metrics table and memory plan of
        the default settings, computed in the visitor's language (no empty plots, no "1 2 3" headers),
        the live results' headers, and its prompt in that language if it is still an untouched example."""
        if was_opened:
            return (True, gr.update(), gr.update()) + (gr.update(),) * (len(w_outputs) + len(p_outputs) + len(f_outputs))
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

    tab.select(first_view, inputs=[opened, live_prompt] + w_inputs + p_inputs + f_inputs[1:],
               outputs=[opened, live_prompt, live_table] + w_outputs + p_outputs + f_outputs, api_name=False,
               concurrency_limit=None, show_progress="hidden")


def _build_weights(ctx: AppContext) -> tuple[list, list, object]:
    gr.Markdown(I18N("quant.w_intro"))
    subject = ctx.catalog.spec("quant_subject").id
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            source = gr.Radio([(I18N("quant.src_synthetic"), "synthetic"), (I18N("quant.src_model"), "model")],
                              value="synthetic", label=I18N("quant.source"), elem_id="quant-source")
            outliers = gr.Slider(0, 64, value=8, step=1, label=I18N("quant.outliers"),
                                 info=I18N("quant.outliers_info"), elem_id="quant-outliers")
            model = gr.Dropdown(model_choices(ctx), value=subject, label=I18N("quant.model"),
                                allow_custom_value=custom_models_allowed(), filterable=True, visible=False,
                                elem_id="quant-w-model")
            layer = gr.Dropdown([], value="", label=I18N("quant.layer"), allow_custom_value=True, visible=False,
                                elem_id="quant-layer")
            method = gr.Dropdown(method_choices(), value=DEFAULT_METHOD, label=I18N("quant.method"),
                                 elem_id="quant-method")
            bits = gr.Slider(1, 8, value=4, step=1, label=I18N("quant.bits"), info=I18N("ux.quant.bits_free"),
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
        names = list(matrices.list_layers(model))
        return gr.update(choices=names, value=matrices.default_layer(tuple(names)))

    @guard
    def quantize_weights(source: str = "synthetic", model: str = "", layer: str = "", method: str = DEFAULT_METHOD,
                         bits: float = 4, block_size: str | int = 64, outliers: float = 8,
                         request: gr.Request = None):
        lang = request_lang(request)
        matrix = load_matrix(source, model or subject, layer or "", outliers)
        a = weights.analyze(matrix, method, int(bits or 4), int(block_size or 64))
        chart_df, table_df = sweep_frames(a, lang)
        plot = gr.ScatterPlot(value=chart_df, x_title=t("quant.chart_x", lang), y_title=t("quant.chart_y", lang),
                              color=t("ui.col_family", lang))
        return histogram(a, lang), weights_summary(a, lang), plot, table_df

    @guard
    def pick_method(source: str, model: str, layer: str, method: str, bits: float, block_size: str | int,
                    outliers: float, request: gr.Request = None):
        """A new method: its bits / block controls, then the matrix quantized with it."""
        lang = request_lang(request)
        bits_update, block_update = method_controls(method, bits, lang)
        return (bits_update, block_update) + quantize_weights(source, model, layer, method, bits, block_size, outliers,
                                                                 request)

    inputs = [source, model, layer, method, bits, block, outliers]
    outputs = [hist, summary, chart, table]
    # the previous plot stays on screen while the next one is computed (no full-size spinner over it)
    live = dict(api_name=False, concurrency_limit=None, trigger_mode="always_last", show_progress="minimal")
    source.change(toggle_source, inputs=source, outputs=[outliers, model, layer], api_name=False, queue=False)
    source.change(layers_of, inputs=model, outputs=layer, api_name=False, concurrency_limit=None)
    model.change(layers_of, inputs=model, outputs=layer, api_name=False, concurrency_limit=None)
    run.click(quantize_weights, inputs=inputs, outputs=outputs, api_name="quantize_weights", concurrency_limit=None,
              show_progress="minimal")
    # .input: user actions only (pick_method sets the bits slider itself; .change would compute twice)
    method.input(pick_method, inputs=inputs, outputs=[bits, block] + outputs, **live)
    bits.input(quantize_weights, inputs=inputs, outputs=outputs, **live)
    block.input(quantize_weights, inputs=inputs, outputs=outputs, **live)
    layer.change(quantize_weights, inputs=inputs, outputs=outputs, **live)
    outliers.release(quantize_weights, inputs=inputs, outputs=outputs, **live)
    share_row(ctx, "quantization", api="quantize_weights",
              outputs={"histogram": hist, "summary": summary, "chart": chart, "table": table},
              card={"share.card.histogram": "histogram", "share.card.methods": "table"},
              title=lambda v: f"{v.get('method')} · {v.get('bits')} bits · {v.get('source')}")
    return inputs, outputs, quantize_weights


def _build_planner(ctx: AppContext) -> tuple[list, list, object, list, list, object]:
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

    inputs, outputs = [model, context, batch], [summary, chart, table]
    run.click(memory_plan, inputs=inputs, outputs=outputs, api_name="memory_plan", concurrency_limit=None)
    model.change(context_slider, inputs=[model, context], outputs=context, api_name=False, concurrency_limit=None,
                 show_progress="hidden").then(memory_plan, inputs=inputs, outputs=outputs, api_name=False,
                                              concurrency_limit=None)
    for control in (context, batch):
        control.release(memory_plan, inputs=inputs, outputs=outputs, api_name=False, concurrency_limit=None)
    share_row(ctx, "quantization", api="memory_plan", outputs={"summary": summary, "chart": chart, "table": table},
              card={"share.card.memory": "table"},
              title=lambda v: f"{v.get('model')} · context {v.get('context_length')} · batch {v.get('batch_size')}")
    f_inputs, f_outputs, finetune_plan = build_finetune(model)
    share_row(ctx, "quantization", api="finetune_plan",
              outputs={"summary": f_outputs[0], "table": f_outputs[1], "chart": f_outputs[2], "course": f_outputs[4]},
              card={"ft.card": "table"},
              title=lambda v: f"{v.get('model')} · {v.get('method')} · {v.get('precision')} · "
                              f"{v.get('batch_size')} × {v.get('seq_len')}")
    return inputs, outputs, memory_plan, f_inputs, f_outputs, finetune_plan
