"""Prompt techniques: run one technique and see every call, or benchmark several on many problems.

The wiring and the inputs; what the tab shows (calls, vote, benchmark table and charts) is drawn by
:mod:`ui.technique_views`."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from engine import gpu_tasks
from engine.models.catalog import ModelSpec
from engine.errors import UserError
from engine.generation import SamplingParams
from engine.models.policy import custom_models_allowed
from engine.techniques import tasks as task_sets
from engine.techniques.records import Settings
from engine.techniques.tasks import CUSTOM, Task
from engine.techniques.techniques import SETTINGS_USED, TECHNIQUES, VOTING
from tabs import techniques_fragility
from ui import zerogpu
from ui.context import AppContext
from ui.feedback import guard, warn
from ui.i18n import I18N, request_lang, t
from ui.share import share_row
from ui.technique_views import (bench_legend, bench_outputs, run_outputs, stream_experiment, summary_frame,
                                waiting_text)
from ui.widgets import RunRow, preset_label, run_row, spec_for

DEFAULT_PROBLEM = "arith-09"
DEFAULT_LANG = "fr"
DEFAULT_BENCH = ["zero_shot", "explicit", "few_shot", "zero_shot_cot", "self_consistency"]
SETTING_FIELDS = ("k_examples", "shuffle", "shuffle_seed", "n_samples", "sample_temperature", "rounds", "k_thoughts",
                  "depth", "n_chains")


# =============================================================================== helpers
def problem_choices(lang: str) -> list[tuple[str, str]]:
    out = []
    for task in task_sets.all_tasks(lang):
        out.append((f"{task.id} · {preset_label(task.question, 72)}", task.id))
    return out + [(t("tech.custom_choice", lang), CUSTOM)]


def resolve_task(language: str, problem: str, question: str, expected_answer: str, answer_type: str) -> Task:
    lang = "en" if language == "en" else "fr"
    if problem and problem != CUSTOM:
        return task_sets.get_task(problem, lang)
    return task_sets.custom_task(question or "", lang, expected_answer or "", answer_type or "number")


def make_settings(k_examples: float, shuffle_examples: bool, shuffle_seed: float, n_samples: float,
                  sample_temperature: float, refine_rounds: float, k_thoughts: float, depth: float,
                  params: SamplingParams, ama_chains: float = 3) -> Settings:
    return Settings(k_examples=int(k_examples or 0), shuffle=bool(shuffle_examples), shuffle_seed=int(shuffle_seed or 0),
                    n_samples=max(1, int(n_samples or 1)), sample_temperature=float(sample_temperature or 0.0),
                    rounds=max(0, int(refine_rounds or 0)), k_thoughts=max(1, int(k_thoughts or 1)),
                    depth=max(1, int(depth or 1)), n_chains=max(1, int(ama_chains or 1)), params=params)


def model_choices(ctx: AppContext) -> list[str]:
    ids = ctx.catalog.llm_choices("instruct_llm") + ctx.catalog.llm_choices("base_llm")
    return list(dict.fromkeys(ids))


def model_spec(ctx: AppContext, model: str) -> ModelSpec:
    """A catalog role's own spec when its id is picked (precision, endpoint kept), else a custom id."""
    model = (model or "").strip()
    for role in ("instruct_llm", "base_llm", "quant_subject"):
        spec = ctx.catalog.spec(role)
        if not model or spec.id == model:
            return spec
    return spec_for(ctx, "instruct_llm", model)


def check_technique(technique: str) -> None:
    if technique not in TECHNIQUES:
        raise UserError("tech.err_unknown_technique", technique=technique, choices=", ".join(TECHNIQUES))


def default_tokens(ctx: AppContext) -> int:
    """New tokens a run starts with: few on the tiny profile, more on a GPU."""
    return 24 if ctx.catalog.profile == "tiny" else (160 if ctx.hardware.device == "cpu" else 320)


def default_bench_n(ctx: AppContext) -> int:
    return 4 if ctx.catalog.profile == "tiny" else 10


# =============================================================================== layout
@dataclass
class View:
    technique: gr.Radio
    card: gr.Markdown
    language: gr.Radio
    problem: gr.Dropdown
    question: gr.Textbox
    expected: gr.Textbox
    answer_type: gr.Radio
    settings_box: gr.Accordion
    k_examples: gr.Slider
    shuffle: gr.Checkbox
    shuffle_seed: gr.Number
    n_samples: gr.Slider
    sample_temperature: gr.Slider
    rounds: gr.Slider
    k_thoughts: gr.Slider
    depth: gr.Slider
    ama_chains: gr.Slider
    model: gr.Dropdown
    max_new_tokens: gr.Slider
    greedy: gr.Checkbox
    temperature: gr.Slider
    seed: gr.Number
    row: RunRow
    result: gr.Markdown
    vote_box: gr.Column
    vote_md: gr.Markdown
    votes: gr.BarPlot
    calls: gr.HTML
    raw: gr.JSON
    bench_techniques: gr.CheckboxGroup
    bench_kinds: gr.CheckboxGroup
    bench_n: gr.Slider
    bench_row: RunRow
    bench_md: gr.Markdown
    bench_table: gr.Dataframe
    acc_plot: gr.BarPlot
    cost_plot: gr.ScatterPlot
    cost_legend: gr.HTML
    bench_files: gr.File

    @property
    def setting_controls(self) -> list:
        """The technique's settings, in the order of SETTING_FIELDS."""
        return [self.k_examples, self.shuffle, self.shuffle_seed, self.n_samples, self.sample_temperature,
                self.rounds, self.k_thoughts, self.depth, self.ama_chains]


def layout(ctx: AppContext) -> View:
    gr.Markdown(I18N("tech.intro"), elem_classes="tab-intro")
    parts = _layout_problem()
    parts.update(_layout_settings())
    parts.update(_layout_model(ctx))
    parts.update(_layout_result())
    parts.update(_layout_benchmark(ctx))
    return View(**parts)


def _layout_problem() -> dict:
    """The technique and its card; the problem (a set's or the student's own) in its language."""
    first_task = task_sets.get_task(DEFAULT_PROBLEM, DEFAULT_LANG)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            technique = gr.Radio([(I18N(f"tech.name.{k}"), k) for k in TECHNIQUES], value="zero_shot",
                                 label=I18N("tech.technique"), elem_id="tech-technique")
            card = gr.Markdown(I18N("tech.card.zero_shot"), elem_id="tech-card", elem_classes="tech-card")
        with gr.Column(scale=3, min_width=320):
            with gr.Row():
                language = gr.Radio([(I18N("tech.lang_fr"), "fr"), (I18N("tech.lang_en"), "en")], value=DEFAULT_LANG,
                                    label=I18N("tech.language"), elem_id="tech-language", scale=1, min_width=160)
                problem = gr.Dropdown(problem_choices(DEFAULT_LANG), value=DEFAULT_PROBLEM, label=I18N("tech.problem"),
                                      elem_id="tech-problem", scale=3)
            question = gr.Textbox(first_task.question, lines=3, max_lines=12, label=I18N("tech.question"),
                                  info=I18N("tech.question_info"), elem_id="tech-question")
            with gr.Row():
                expected = gr.Textbox("", label=I18N("tech.expected"), info=I18N("tech.expected_info"), visible=False,
                                      elem_id="tech-expected")
                answer_type = gr.Radio([(I18N("tech.type_number"), "number"), (I18N("tech.type_text"), "text")],
                                       value="number", label=I18N("tech.answer_type"), visible=False,
                                       elem_id="tech-answer-type")
    return dict(technique=technique, card=card, language=language, problem=problem, question=question,
                expected=expected, answer_type=answer_type)


def _layout_settings() -> dict:
    """The technique's settings."""
    # only the settings the chosen technique reads are shown (zero-shot: none, so Run stays near the top)
    shown = set(SETTINGS_USED["zero_shot"])
    with gr.Accordion(I18N("tech.settings"), open=True, visible=bool(shown), elem_id="tech-settings") as settings_box:
        with gr.Row():
            k_examples = gr.Slider(0, 8, value=3, step=1, label=I18N("tech.k_examples"), info=I18N("tech.k_info"),
                                   visible="k_examples" in shown, elem_id="tech-k-examples")
            shuffle = gr.Checkbox(False, label=I18N("tech.shuffle"), visible="shuffle" in shown, elem_id="tech-shuffle")
            shuffle_seed = gr.Number(0, precision=0, minimum=0, label=I18N("tech.shuffle_seed"),
                                     visible="shuffle_seed" in shown, elem_id="tech-shuffle-seed")
            n_samples = gr.Slider(1, 20, value=5, step=1, label=I18N("tech.n_samples"), visible="n_samples" in shown,
                                  elem_id="tech-n-samples")
            sample_temperature = gr.Slider(0.05, 1.5, value=0.8, step=0.05, label=I18N("tech.sample_temperature"),
                                           info=I18N("tech.sample_temperature_info"),
                                           visible="sample_temperature" in shown, elem_id="tech-sample-temperature")
            rounds = gr.Slider(0, 4, value=1, step=1, label=I18N("tech.rounds"), visible="rounds" in shown,
                               elem_id="tech-rounds")
            k_thoughts = gr.Slider(1, 5, value=3, step=1, label=I18N("tech.k_thoughts"), visible="k_thoughts" in shown,
                                   elem_id="tech-k-thoughts")
            depth = gr.Slider(1, 4, value=2, step=1, label=I18N("tech.depth"), visible="depth" in shown,
                              elem_id="tech-depth")
            ama_chains = gr.Slider(1, 6, value=3, step=1, label=I18N("tech.n_chains"), info=I18N("tech.n_chains_info"),
                                   visible="n_chains" in shown, elem_id="tech-ama-chains")
    return dict(settings_box=settings_box, k_examples=k_examples, shuffle=shuffle, shuffle_seed=shuffle_seed,
                n_samples=n_samples, sample_temperature=sample_temperature, rounds=rounds, k_thoughts=k_thoughts,
                depth=depth, ama_chains=ama_chains)


def _layout_model(ctx: AppContext) -> dict:
    """The model and its sampling, folded; the run row."""
    with gr.Accordion(I18N("tech.model_settings"), open=False, elem_id="tech-model-settings"):
        with gr.Row():
            model = gr.Dropdown(model_choices(ctx), value=ctx.catalog.spec("instruct_llm").id, label=I18N("tech.model"),
                                allow_custom_value=custom_models_allowed(), filterable=True, elem_id="tech-model", scale=2)
            max_new_tokens = gr.Slider(4, 2048, value=default_tokens(ctx), step=1, label=I18N("common.max_new_tokens"))
            greedy = gr.Checkbox(True, label=I18N("common.greedy"), info=I18N("tech.greedy_info"))
            temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label=I18N("common.temperature"))
            seed = gr.Number(42, precision=0, minimum=0, label=I18N("common.seed"))
    row = run_row("tech.run", "tech")
    return dict(model=model, max_new_tokens=max_new_tokens, greedy=greedy, temperature=temperature, seed=seed, row=row)


def _layout_result() -> dict:
    """One run: the answer, the vote (voting techniques), every call, the raw record."""
    result = gr.Markdown(elem_id="tech-result", elem_classes="tech-result")
    with gr.Column(visible=False, elem_id="tech-vote") as vote_box:
        with gr.Row(equal_height=False):
            vote_md = gr.Markdown(elem_id="tech-vote-md")
            votes = gr.BarPlot(x="answer", y="votes", color="status", label=I18N("tech.vote_chart"),
                               elem_id="tech-vote-chart", y_lim=[0, None])
    calls = gr.HTML(label=I18N("tech.calls"), elem_id="tech-calls")
    with gr.Accordion(I18N("tech.rule_title"), open=False, elem_id="tech-rule"):
        gr.Markdown(I18N("tech.rule_body"))
    with gr.Accordion(I18N("tech.raw"), open=False):
        raw = gr.JSON(show_label=False, elem_id="tech-raw")
    return dict(result=result, vote_box=vote_box, vote_md=vote_md, votes=votes, calls=calls, raw=raw)


def _layout_benchmark(ctx: AppContext) -> dict:
    """The benchmark: several techniques on many problems, a table, two charts, the CSV files."""
    with gr.Accordion(I18N("tech.bench_title"), open=True, elem_id="tech-bench"):
        gr.Markdown(I18N("tech.bench_intro"))
        with gr.Row():
            bench_techniques = gr.CheckboxGroup([(I18N(f"tech.name.{k}"), k) for k in TECHNIQUES], value=DEFAULT_BENCH,
                                                label=I18N("tech.bench_techniques"), elem_id="tech-bench-techniques",
                                                scale=3)
            with gr.Column(scale=1, min_width=240):
                bench_kinds = gr.CheckboxGroup([(I18N(f"tech.kind_{k}"), k) for k in task_sets.KINDS], value=["number"],
                                               label=I18N("tech.bench_kinds"), elem_id="tech-bench-kinds")
                bench_n = gr.Slider(1, len(task_sets.all_tasks("en")), value=default_bench_n(ctx), step=1,
                                    label=I18N("tech.bench_n"), elem_id="tech-bench-n")
        bench_row = run_row("tech.bench_run", "tech-bench", new_sample=False)  # the settings carry the seed
        bench_md = gr.Markdown(elem_id="tech-bench-status")
        # shown with its translated headers when the page loads (empty, Gradio would show "1 2 3")
        bench_table = gr.Dataframe(label=I18N("tech.bench_table"), interactive=False, wrap=True, visible=False,
                                   elem_id="tech-bench-table")
        with gr.Row():
            acc_plot = gr.BarPlot(x="technique", y="accuracy", label=I18N("tech.bench_chart_accuracy"),
                                  x_label_angle=-30, elem_id="tech-bench-accuracy")
            cost_plot = gr.ScatterPlot(x="tokens_per_task", y="accuracy", color="technique",
                                       tooltip=["technique", "accuracy", "tokens_per_task", "seconds_per_task"],
                                       colors_in_legend=[], label=I18N("tech.bench_chart_cost"),
                                       elem_id="tech-bench-cost")
        cost_legend = gr.HTML(elem_id="tech-bench-legend")
        bench_files = gr.File(label=I18N("tech.bench_csv"), file_count="multiple", interactive=False,
                              height=140, elem_id="tech-bench-csv")
    return dict(bench_techniques=bench_techniques, bench_kinds=bench_kinds, bench_n=bench_n, bench_row=bench_row,
                bench_md=bench_md, bench_table=bench_table, acc_plot=acc_plot, cost_plot=cost_plot,
                cost_legend=cost_legend, bench_files=bench_files)


# =============================================================================== handlers
def show_card(technique: str, request: gr.Request):
    return t(f"tech.card.{technique}", request_lang(request)) if technique in TECHNIQUES else ""


def show_settings(technique: str):
    used = set(SETTINGS_USED.get(technique, SETTING_FIELDS))
    return (gr.Accordion(visible=bool(used)),) + tuple(gr.update(visible=name in used) for name in SETTING_FIELDS)


def in_language(lang: str, table: pd.DataFrame | None, problem: str = DEFAULT_PROBLEM):
    """On load and on each language switch: the problems in the page's language (English UI →
    English problems: the list and the question too, as the page is served already in its
    language, ui/page.py); an empty benchmark table gets its real headers in that language (an
    empty Dataframe would show "1 2 3"), a filled one keeps its results."""
    empty = table is None or len(table) == 0
    language = "en" if lang == "en" else "fr"
    return (language, *pick_language(language, problem),
            gr.Dataframe(summary_frame(None, lang), visible=True) if empty else gr.skip())


def pick_problem(problem: str, language: str):
    custom = problem == CUSTOM
    if custom:
        return gr.update(), gr.update(visible=True), gr.update(visible=True)
    task = task_sets.get_task(problem, language)
    return task.question, gr.update(visible=False, value=""), gr.update(visible=False)


def pick_language(language: str, problem: str):
    keep = problem or DEFAULT_PROBLEM
    text = gr.update() if keep == CUSTOM else task_sets.get_task(keep, language).question
    return gr.update(choices=problem_choices(language), value=keep), text


def edited_question():
    return CUSTOM


def run_technique_for(ctx: AppContext):
    tokens = default_tokens(ctx)

    @guard
    def run_technique(technique: str = "zero_shot", language: str = DEFAULT_LANG, problem: str = DEFAULT_PROBLEM,
                      question: str = "", expected_answer: str = "", answer_type: str = "number",
                      k_examples: float = 3, shuffle_examples: bool = False, shuffle_seed: float = 0,
                      n_samples: float = 5, sample_temperature: float = 0.8, refine_rounds: float = 1,
                      k_thoughts: float = 3, depth: float = 2, model: str = "",
                      max_new_tokens: float = tokens, temperature: float = 0.7, greedy: bool = True,
                      seed: float = 42, ama_chains: float = 3, request: gr.Request = None, progress=gr.Progress()):
        lang = request_lang(request)
        check_technique(technique)
        task = resolve_task(language, problem, question, expected_answer, answer_type)
        if not task.question:
            warn("err.empty_prompt", request)
            return
        params = SamplingParams(max_new_tokens=max(1, int(max_new_tokens or 1)), temperature=float(temperature or 0.0),
                                greedy=bool(greedy), seed=int(seed or 0))
        settings = make_settings(k_examples, shuffle_examples, shuffle_seed, n_samples, sample_temperature,
                                 refine_rounds, k_thoughts, depth, params, ama_chains)
        spec = model_spec(ctx, model)
        progress(0.0, desc=t("common.loading_model", lang, model=spec.id, precision=spec.precision))
        job = gpu_tasks.TechniqueJob(spec, technique, task, settings)
        for run in gpu_tasks.call(gpu_tasks.technique, job, zerogpu.stop_key(request, "technique"),
                                  on_progress=zerogpu.progress_to(progress, lang, waiting_text(lang)),
                                  on_notice=zerogpu.warn_notice(lang)):
            yield run_outputs(run, lang)

    return run_technique


def stop_technique(request: gr.Request):
    zerogpu.stop(request, "technique")


def benchmark_techniques_for(ctx: AppContext):
    tokens, n = default_tokens(ctx), default_bench_n(ctx)

    @guard
    def benchmark_techniques(techniques: list[str] | None = None, language: str = DEFAULT_LANG,
                             task_kinds: list[str] | None = None, n_problems: float = n,
                             k_examples: float = 3, shuffle_examples: bool = False, shuffle_seed: float = 0,
                             n_samples: float = 5, sample_temperature: float = 0.8, refine_rounds: float = 1,
                             k_thoughts: float = 3, depth: float = 2, model: str = "",
                             max_new_tokens: float = tokens, seed: float = 42, ama_chains: float = 3,
                             request: gr.Request = None, progress=gr.Progress()):
        lang = request_lang(request)
        chosen = list(DEFAULT_BENCH if techniques is None else techniques)
        if not chosen:
            raise UserError("tech.err_no_techniques")
        for name in chosen:
            check_technique(name)
        kinds = list(["number"] if task_kinds is None else task_kinds)
        problems = task_sets.benchmark_tasks("en" if language == "en" else "fr", kinds, int(n_problems or 1))
        if not problems:
            raise UserError("tech.err_no_tasks")
        params = SamplingParams(max_new_tokens=max(1, int(max_new_tokens or 1)), greedy=True, seed=int(seed or 0))
        settings = make_settings(k_examples, shuffle_examples, shuffle_seed, n_samples, sample_temperature,
                                 refine_rounds, k_thoughts, depth, params, ama_chains)
        spec = model_spec(ctx, model)
        progress(0.0, desc=t("common.loading_model", lang, model=spec.id, precision=spec.precision))

        def progress_text(event: gpu_tasks.Progress) -> str | None:
            if event.key != "tech.bench_progress":
                return None
            p = event.params
            return t("tech.bench_progress", lang, technique=t(f"tech.name.{p['technique']}", lang),
                     done=p["done"], total=p["total"])

        job = gpu_tasks.BenchmarkJob(spec, tuple(chosen), tuple(problems), settings)
        yield from stream_experiment(gpu_tasks.benchmark, job, zerogpu.stop_key(request, "benchmark"), lang, progress,
                                     progress_text, bench_outputs, "techniques")

    return benchmark_techniques


def stop_benchmark(request: gr.Request):
    zerogpu.stop(request, "benchmark")


# =============================================================================== wiring
def wire(view: View, ctx: AppContext) -> None:
    view.technique.change(show_card, inputs=view.technique, outputs=view.card, api_name=False, queue=False)
    view.technique.change(show_settings, inputs=view.technique, outputs=[view.settings_box] + view.setting_controls,
                          api_name=False, queue=False)
    ctx.on_language(in_language, inputs=[view.bench_table, view.problem],
                    outputs=[view.language, view.problem, view.question, view.bench_table])
    view.problem.change(pick_problem, inputs=[view.problem, view.language],
                        outputs=[view.question, view.expected, view.answer_type], api_name=False, queue=False)
    view.language.change(pick_language, inputs=[view.language, view.problem], outputs=[view.problem, view.question],
                         api_name=False, queue=False)
    view.question.input(edited_question, outputs=view.problem, api_name=False, queue=False)
    run_inputs = [view.technique, view.language, view.problem, view.question, view.expected, view.answer_type,
                  view.k_examples, view.shuffle, view.shuffle_seed, view.n_samples, view.sample_temperature,
                  view.rounds, view.k_thoughts, view.depth, view.model, view.max_new_tokens, view.temperature,
                  view.greedy, view.seed, view.ama_chains]
    view.row.wire(run_technique_for(ctx), action="technique", inputs=run_inputs,
                  outputs=[view.result, view.vote_box, view.vote_md, view.votes, view.calls, view.raw],
                  api_name="run_technique", seed=view.seed, concurrency_id=ctx.concurrency_id("causal_lm"),
                  concurrency_limit=ctx.llm_concurrency)
    view.row.stop.click(stop_technique, api_name="stop_technique", queue=False)
    bench_inputs = [view.bench_techniques, view.language, view.bench_kinds, view.bench_n, view.k_examples, view.shuffle,
                    view.shuffle_seed, view.n_samples, view.sample_temperature, view.rounds, view.k_thoughts,
                    view.depth, view.model, view.max_new_tokens, view.seed, view.ama_chains]
    view.bench_row.wire(benchmark_techniques_for(ctx), action="benchmark", inputs=bench_inputs,
                        outputs=[view.bench_md, view.bench_table, view.acc_plot, view.cost_plot, view.bench_files],
                        api_name="benchmark_techniques", concurrency_id=ctx.concurrency_id("causal_lm"),
                        concurrency_limit=ctx.llm_concurrency, show_progress_on=[view.bench_md])  # the table stays
    view.bench_row.stop.click(stop_benchmark, api_name="stop_benchmark", queue=False)
    view.bench_table.change(bench_legend, inputs=view.bench_table, outputs=view.cost_legend, api_name=False,
                            queue=False, show_progress="hidden")
    share_row(ctx, "techniques", api="run_technique",
              outputs={"result": view.result, "vote": view.vote_md, "votes": view.votes, "calls": view.calls,
                       "raw": view.raw},
              card={"share.card.answer": "result"}, title=lambda v: f"[{v.get('technique')}] {v.get('question', '')}",
              on_restore=(lambda v, lang: (gr.Column(visible=v.get("technique") in VOTING),), [view.vote_box]))


def build(ctx: AppContext) -> None:
    view = layout(ctx)
    wire(view, ctx)
    techniques_fragility.build(ctx, view.language, view.model, model_spec)
