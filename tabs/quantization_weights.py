"""Quantization, part 1: what bits do to the weights of one matrix, a synthetic one or a checkpoint's
(wiring only; the work is in :mod:`engine.quantization.weights` and :mod:`engine.quantization.matrices`)."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from engine.errors import UserError
from engine.models.policy import custom_models_allowed
from engine.quantization import matrices, weights
from engine.quantization.histogram import histogram_figure
from ui import fmt
from ui.context import AppContext
from ui.feedback import guard
from ui.i18n import I18N, request_lang, t
from ui.share import share_row

DEFAULT_METHOD = "blockwise"  # the bits slider acts on it (1 → 8 bits is a teacher's first move); NF4 is one click away
TRANSLATED_NAMES = ("absmax", "zeropoint", "blockwise", "int8-rowwise", "nf4-dq", "TQ2_0")


# =============================================================================== helpers
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


# =============================================================================== layout
@dataclass
class View:
    source: gr.Radio
    outliers: gr.Slider
    model: gr.Dropdown
    layer: gr.Dropdown
    method: gr.Dropdown
    bits: gr.Slider
    block: gr.Dropdown
    run: gr.Button
    hist: gr.Plot
    summary: gr.Markdown
    chart: gr.ScatterPlot
    table: gr.Dataframe

    @property
    def inputs(self) -> list:
        """In the order of :func:`quantize_weights`'s arguments."""
        return [self.source, self.model, self.layer, self.method, self.bits, self.block, self.outliers]

    @property
    def outputs(self) -> list:
        return [self.hist, self.summary, self.chart, self.table]


def layout(ctx: AppContext) -> View:
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
    return View(source, outliers, model, layer, method, bits, block, run, hist, summary, chart, table)


# =============================================================================== handlers
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


def quantize_weights_for(ctx: AppContext):
    subject = ctx.catalog.spec("quant_subject").id

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

    return quantize_weights


def pick_method_for(quantize_weights):
    """``quantize_weights``: the tab's own (:func:`quantize_weights_for`)."""
    @guard
    def pick_method(source: str, model: str, layer: str, method: str, bits: float, block_size: str | int,
                    outliers: float, request: gr.Request = None):
        """A new method: its bits / block controls, then the matrix quantized with it."""
        lang = request_lang(request)
        bits_update, block_update = method_controls(method, bits, lang)
        return (bits_update, block_update) + quantize_weights(source, model, layer, method, bits, block_size, outliers,
                                                                 request)

    return pick_method


# =============================================================================== wiring
def wire(view: View, ctx: AppContext) -> None:
    quantize_weights = quantize_weights_for(ctx)
    inputs, outputs = view.inputs, view.outputs
    # the previous plot stays on screen while the next one is computed (no full-size spinner over it)
    live = dict(api_name=False, concurrency_limit=None, trigger_mode="always_last", show_progress="minimal")
    view.source.change(toggle_source, inputs=view.source, outputs=[view.outliers, view.model, view.layer],
                       api_name=False, queue=False)
    view.source.change(layers_of, inputs=view.model, outputs=view.layer, api_name=False, concurrency_limit=None)
    view.model.change(layers_of, inputs=view.model, outputs=view.layer, api_name=False, concurrency_limit=None)
    view.run.click(quantize_weights, inputs=inputs, outputs=outputs, api_name="quantize_weights",
                   concurrency_limit=None, show_progress="minimal")
    # .input: user actions only (pick_method sets the bits slider itself; .change would compute twice)
    view.method.input(pick_method_for(quantize_weights), inputs=inputs, outputs=[view.bits, view.block] + outputs,
                      **live)
    view.bits.input(quantize_weights, inputs=inputs, outputs=outputs, **live)
    view.block.input(quantize_weights, inputs=inputs, outputs=outputs, **live)
    view.layer.change(quantize_weights, inputs=inputs, outputs=outputs, **live)
    view.outliers.release(quantize_weights, inputs=inputs, outputs=outputs, **live)
    share_row(ctx, "quantization", api="quantize_weights",
              outputs={"histogram": view.hist, "summary": view.summary, "chart": view.chart, "table": view.table},
              card={"share.card.histogram": "histogram", "share.card.methods": "table"},
              title=lambda v: f"{v.get('method')} · {v.get('bits')} bits · {v.get('source')}")


def build(ctx: AppContext) -> View:
    view = layout(ctx)
    wire(view, ctx)
    return view
