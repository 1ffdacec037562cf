"""Prompt techniques, part 3: the prompt-fragility experiment (wiring and inputs only; the work is in
:mod:`engine.techniques.fragility`, what it shows in :mod:`ui.fragility_views`)."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from engine import gpu_tasks
from engine.errors import UserError
from engine.generation import SamplingParams
from engine.techniques import fragility
from engine.techniques import tasks as task_sets
from engine.techniques.fragility import PERTURBATIONS, FragilitySettings
from ui import zerogpu
from ui.context import AppContext
from ui.feedback import guard
from ui.fragility_views import TABLE_WIDTHS, empty_table, fragility_outputs
from ui.i18n import I18N, request_lang, t
from ui.share import share_row
from ui.technique_views import stream_experiment
from ui.widgets import RunRow, run_row

DEFAULT_LANG = "fr"


# =============================================================================== helpers
def settings_for(k_variants: float, k_examples: float, perturbations: list[str] | None, seed: float,
                 max_new_tokens: float) -> FragilitySettings:
    chosen = tuple(PERTURBATIONS if perturbations is None else perturbations)
    return FragilitySettings(k_examples=int(k_examples or 1), variants=int(k_variants or 2), perturbations=chosen,
                             seed=int(seed or 0),
                             params=SamplingParams(max_new_tokens=max(1, int(max_new_tokens or 1)), greedy=True))


def defaults(ctx: AppContext) -> tuple[int, int, int]:
    """Problems, variants and new tokens a run starts with on this profile."""
    return (3, 4, 6) if ctx.catalog.profile == "tiny" else (10, 6, 24)


# =============================================================================== layout
@dataclass
class View:
    box: gr.Accordion
    kinds: gr.CheckboxGroup
    n_problems: gr.Slider
    k_variants: gr.Slider
    shots: gr.Slider
    perturbations: gr.CheckboxGroup
    max_new_tokens: gr.Slider
    seed: gr.Number
    row: RunRow
    status: gr.Markdown
    chart: gr.BarPlot
    table: gr.Dataframe
    prompts: gr.HTML
    raw: gr.JSON
    files: gr.File


def layout(ctx: AppContext) -> View:
    default_problems, default_variants, default_tokens = defaults(ctx)
    with gr.Accordion(I18N("tech.frag_title"), open=False, elem_id="tech-frag") as box:
        gr.Markdown(I18N("tech.frag_intro"))
        with gr.Row():
            kinds = gr.CheckboxGroup([(I18N(f"tech.kind_{k}"), k) for k in task_sets.KINDS], value=["number"],
                                     label=I18N("tech.bench_kinds"), elem_id="tech-frag-kinds", scale=2)
            n_problems = gr.Slider(1, len(task_sets.all_tasks("en")), value=default_problems, step=1,
                                   label=I18N("tech.bench_n"), elem_id="tech-frag-n", scale=1)
            k_variants = gr.Slider(2, 12, value=default_variants, step=1, label=I18N("tech.frag_variants"),
                                   elem_id="tech-frag-variants", scale=1)
            shots = gr.Slider(1, 8, value=3, step=1, label=I18N("tech.frag_shots"), elem_id="tech-frag-shots", scale=1)
        with gr.Row():
            perturbations = gr.CheckboxGroup([(I18N(f"tech.frag_kind.{k}"), k) for k in PERTURBATIONS],
                                             value=list(PERTURBATIONS), label=I18N("tech.frag_perturbations"),
                                             elem_id="tech-frag-perturbations", scale=2)
            max_new_tokens = gr.Slider(1, 2048, value=default_tokens, step=1, label=I18N("tech.frag_tokens"),
                                       elem_id="tech-frag-tokens", scale=1)
            seed = gr.Number(0, precision=0, minimum=0, label=I18N("tech.frag_seed"), elem_id="tech-frag-seed", scale=1)
        row = run_row("tech.frag_run", "tech-frag", new_sample=False)  # greedy: the seed only draws the variants
        status = gr.Markdown(elem_id="tech-frag-status")
        chart = gr.BarPlot(x="variant", y="accuracy", color="perturbation", label=I18N("tech.frag_chart"),
                           y_lim=[0, 100], x_label_angle=-30, x_title=I18N("tech.frag_col_variant"),
                           y_title=I18N("tech.col_accuracy"), color_title=I18N("tech.frag_col_kind"),
                           elem_id="tech-frag-chart")
        # shown with its translated headers when the page loads (empty, Gradio would show "1 2 3")
        table = gr.Dataframe(label=I18N("tech.frag_table"), interactive=False, wrap=True, visible=False,
                             column_widths=TABLE_WIDTHS, elem_id="tech-frag-table")
        prompts = gr.HTML(elem_id="tech-frag-prompts")
        with gr.Accordion(I18N("tech.raw"), open=False):
            raw = gr.JSON(show_label=False, elem_id="tech-frag-raw")
        files = gr.File(label=I18N("tech.frag_csv"), file_count="multiple", interactive=False, height=140,
                        elem_id="tech-frag-csv")
    return View(box, kinds, n_problems, k_variants, shots, perturbations, max_new_tokens, seed, row, status, chart,
                table, prompts, raw, files)


# =============================================================================== handlers
def headers(lang: str, current: pd.DataFrame | None):
    empty = current is None or len(current) == 0
    return gr.Dataframe(empty_table(lang), visible=True) if empty else gr.skip()


def fragility_experiment_for(ctx: AppContext, model_spec):
    default_problems, default_variants, default_tokens = defaults(ctx)

    @guard
    def fragility_experiment(language: str = DEFAULT_LANG, task_kinds: list[str] | None = None,
                             n_problems: float = default_problems, k_variants: float = default_variants,
                             k_examples: float = 3, perturbations: list[str] | None = None, model: str = "",
                             max_new_tokens: float = default_tokens, seed: float = 0,
                             request: gr.Request = None, progress=gr.Progress()):
        lang = request_lang(request)
        chosen = ["number"] if task_kinds is None else list(task_kinds)
        problems = task_sets.benchmark_tasks("en" if language == "en" else "fr", chosen, int(n_problems or 1))
        if not problems:
            raise UserError("tech.err_no_tasks")
        settings = settings_for(k_variants, k_examples, perturbations, seed, max_new_tokens)
        variants = fragility.plan_variants(problems, settings)  # refuses K that cannot be made, before any GPU call
        spec = model_spec(ctx, model)
        progress(0.0, desc=t("common.loading_model", lang, model=spec.id, precision=spec.precision))

        def progress_text(event: gpu_tasks.Progress) -> str | None:
            return t("tech.frag_progress", lang, **event.params) if event.key == "tech.frag_progress" else None

        job = gpu_tasks.FragilityJob(spec, tuple(problems), settings, tuple(variants))
        yield from stream_experiment(gpu_tasks.fragility, job, zerogpu.stop_key(request, "fragility"), lang, progress,
                                     progress_text, fragility_outputs, "fragility")

    return fragility_experiment


def stop_fragility(request: gr.Request):
    zerogpu.stop(request, "fragility")


# =============================================================================== wiring
def wire(view: View, ctx: AppContext, language: gr.Radio, model: gr.Dropdown, model_spec) -> None:
    ctx.on_language(headers, inputs=[view.table], outputs=[view.table])
    inputs = [language, view.kinds, view.n_problems, view.k_variants, view.shots, view.perturbations, model,
              view.max_new_tokens, view.seed]
    view.row.wire(fragility_experiment_for(ctx, model_spec), action="fragility", inputs=inputs,
                  outputs=[view.status, view.chart, view.table, view.prompts, view.raw, view.files],
                  api_name="fragility_experiment", concurrency_id=ctx.concurrency_id("causal_lm"),
                  concurrency_limit=ctx.llm_concurrency, show_progress_on=[view.status])  # the chart stays visible
    view.row.stop.click(stop_fragility, api_name="stop_fragility", queue=False)
    share_row(ctx, "techniques", api="fragility_experiment",
              outputs={"status": view.status, "chart": view.chart, "table": view.table, "prompts": view.prompts,
                       "raw": view.raw},
              card={"tech.frag_title": "status", "tech.frag_chart": "chart"},
              title=lambda v: f"[fragility] K={v.get('k_variants')} · k={v.get('k_examples')} · "
                              f"{', '.join(v.get('task_kinds') or [])} × {v.get('n_problems')}",
              on_restore=(lambda v, lang: (gr.Accordion(open=True),), [view.box]))


def build(ctx: AppContext, language: gr.Radio, model: gr.Dropdown, model_spec) -> None:
    """The fragility section of the techniques tab; ``language`` and ``model`` are the tab's own
    controls, ``model_spec(ctx, model_id)`` resolves the model as the tab's other actions do."""
    wire(layout(ctx), ctx, language, model, model_spec)
