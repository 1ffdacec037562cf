"""Base vs Instruct: one prompt, two models streamed side by side."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gradio as gr

from engine import gpu_tasks, tempfiles
from engine.cards import CardContent, PaneResult, render_markdown, render_png
from engine.compare import PaneState
from engine.generation import SamplingParams
from ui import fmt, zerogpu
from ui.context import AppContext
from ui.feedback import error_message, guard, warn
from ui.i18n import I18N, forced_lang, request_lang, t
from ui.queue_status import queue_text
from ui.share import share_row
from ui.token_probs import legend_html, render_output
from ui.widgets import (model_picker, new_tokens_bound, on_new_sample, preset_label, run_row, sampling_controls,
                        sampling_summary, spec_for, to_params)

PRESETS_PATH = Path(__file__).resolve().parent.parent / "assets" / "presets" / "base_vs_instruct.json"


def load_presets() -> list[dict]:
    return json.loads(PRESETS_PATH.read_text(encoding="utf-8"))["presets"]


def preset_choices(lang: str) -> list[tuple[str, str]]:
    """The example prompts in the UI's language: label = the prompt's start (cut between words),
    value = the whole prompt."""
    lang = "fr" if lang == "fr" else "en"
    return [(preset_label(p[lang]), p[lang]) for p in load_presets()]


def pane_header(title_key: str, model: str, lang: str) -> str:
    return f"### {t(title_key, lang)} · `{model}`"


def pane_stats(state: PaneState, lang: str, params: SamplingParams | None = None) -> str:
    u = state.update
    if u.error is not None:
        return "⚠️ " + error_message(u.error, lang, markdown=True)
    if u.queue_position is not None and not u.finished:
        return queue_text(u.queue_position, lang)
    reason = t(f"bvi.reason_{u.stop_reason}", lang) if u.stop_reason else t("bvi.reason_running", lang)
    ttft = fmt.seconds(u.ttft_s, lang) if u.ttft_s is not None else "…"
    line = t("bvi.stats", lang, ttft=ttft, tokens=u.n_tokens, tps=u.tokens_per_s, reason=reason)
    return line + (" · " + sampling_summary(params, lang) if params is not None else "")


def pane_input_info(state: PaneState, lang: str, show_probs: bool = False) -> str:
    note = state.prompt.note
    info = t("bvi.input_tokens", lang, n=state.prompt.n_tokens) if state.prompt.input_ids else ""
    if note == "system_merged":
        info += " · " + t("bvi.system_merged", lang)
    elif note in ("server_template", "server_template_local_render", "server_raw"):
        info += (" · " if info else "") + t(f"remote.{note}", lang)
    if show_probs and state.update.finished and not state.update.tokens and state.update.n_tokens:
        info += (" · " if info else "") + t("remote.no_logprobs", lang)
    return info


def settings_text(params: SamplingParams | dict, lang: str = "en") -> str:
    """The sampling settings in one line (the comparison card's), in ``lang``."""
    p = params if isinstance(params, SamplingParams) else SamplingParams(**params)
    mode = t("ui.greedy_shown", lang) if p.is_greedy else t("ui.sampled_mode", lang, temperature=p.temperature,
                                                                top_p=p.top_p, top_k=p.top_k)
    return t("ui.card_settings", lang, mode=mode, max_new_tokens=p.max_new_tokens,
             penalty=p.repetition_penalty, seed=p.seed)


def _outputs(panes: tuple[PaneState, PaneState], show_probs: bool, lang: str, meta: dict,
             params: SamplingParams) -> tuple:
    out: list = []
    for state, key in zip(panes, ("bvi.base_title", "bvi.instruct_title")):
        u = state.update
        out += [
            pane_header(key, state.model, lang),
            state.prompt.text,
            pane_input_info(state, lang, show_probs),
            render_output(u.text, u.tokens, show_probs, drop_last=u.stop_reason == "eos", lang=lang),
            pane_stats(state, lang, params),
        ]
    out.append({**meta, "base": panes[0].as_dict(), "instruct": panes[1].as_dict()})
    return tuple(out)


def build(ctx: AppContext) -> None:
    tiny = ctx.catalog.profile == "tiny"
    gr.Markdown(I18N("bvi.intro"), elem_classes="tab-intro")
    with gr.Row(equal_height=True):
        with gr.Column(scale=4):
            prompt = gr.Textbox("", lines=2, max_lines=12, label=I18N("bvi.prompt"),
                                placeholder=I18N("bvi.prompt_placeholder"), elem_id="bvi-prompt",
                                elem_classes="main-prompt")
        with gr.Column(scale=2, min_width=240):
            preset = gr.Dropdown(choices=preset_choices(forced_lang() or "en"), value=None, label=I18N("bvi.preset"),
                                 elem_id="bvi-preset")
            show_probs = gr.Checkbox(False, label=I18N("bvi.probs"), elem_id="bvi-probs")
    row = run_row("bvi.generate", "bvi")
    with gr.Row(equal_height=False, elem_classes="secondary-controls"):
        with gr.Column(min_width=300):
            with gr.Accordion(I18N("bvi.options"), open=False, elem_id="bvi-options"):
                base_model = model_picker(ctx, "base_llm", "bvi.base_model")
                instruct_model = model_picker(ctx, "instruct_llm", "bvi.instruct_model")
                system = gr.Textbox("", lines=1, label=I18N("bvi.system"),
                                    placeholder=I18N("bvi.system_placeholder"), info=I18N("bvi.system_info"))
                template_on_base = gr.Checkbox(False, label=I18N("bvi.template_on_base"),
                                               info=I18N("bvi.template_on_base_info"))
        with gr.Column(min_width=300):
            bound = new_tokens_bound(ctx, [ctx.catalog.spec("base_llm"), ctx.catalog.spec("instruct_llm")])
            sampling = sampling_controls(max_new_tokens=48 if tiny else 256, maximum=bound)
    panes_out: list = []
    with gr.Row(equal_height=False, elem_id="bvi-panes"):
        for side, title_key in (("base", "bvi.base_title"), ("instruct", "bvi.instruct_title")):
            with gr.Column(elem_classes="bvi-pane", min_width=300):
                header = gr.Markdown(I18N(title_key + "_md"), elem_id=f"bvi-{side}-header")
                with gr.Accordion(I18N("bvi.sees"), open=False):
                    sees = gr.Code(language=None, interactive=False, lines=3, elem_id=f"bvi-{side}-sees",
                                   show_label=False, wrap_lines=True)
                    sees_info = gr.Markdown(elem_id=f"bvi-{side}-sees-info")
                output = gr.HTML(elem_id=f"bvi-{side}-output", elem_classes="bvi-output model-output",
                                 label=I18N("bvi.output"))
                stats = gr.Markdown(elem_id=f"bvi-{side}-stats", elem_classes="bvi-stats")
                panes_out += [header, sees, sees_info, output, stats]
    legend = gr.HTML(legend_html(forced_lang() or "en"), elem_id="bvi-legend", elem_classes="bvi-legend")
    with gr.Accordion(I18N("bvi.card"), open=False):
        card_btn = gr.Button(I18N("bvi.card"), elem_id="bvi-card-btn")
        with gr.Row():
            card_png = gr.File(label=I18N("bvi.card_png"), elem_id="bvi-card-png")
            card_md = gr.Code(language="markdown", label=I18N("bvi.card_md"), elem_id="bvi-card-md")
    with gr.Accordion(I18N("bvi.raw"), open=False):
        raw = gr.JSON(elem_id="bvi-raw", show_label=False)

    preset.change(lambda text: text, inputs=preset, outputs=prompt, api_name=False, queue=False)

    def token_bound(base_model: str, instruct_model: str, max_new_tokens: float):
        """Another model picked: "Max new tokens" offers what both models can take, no more."""
        limit = new_tokens_bound(ctx, [spec_for(ctx, "base_llm", base_model), spec_for(ctx, "instruct_llm", instruct_model)])
        return gr.Slider(maximum=limit, value=min(int(max_new_tokens or 1), limit))

    for picker in (base_model, instruct_model):
        picker.change(guard(token_bound), inputs=[base_model, instruct_model, sampling.max_new_tokens],
                      outputs=sampling.max_new_tokens, api_name=False, queue=False)

    @guard
    def compare(prompt: str, system_prompt: str = "", base_model: str = "", instruct_model: str = "",
                template_on_base: bool = False, show_probabilities: bool = False,
                max_new_tokens: float = 128, temperature: float = 0.7, top_p: float = 0.95,
                top_k: float = 50, repetition_penalty: float = 1.0, greedy: bool = False,
                seed: float = 42, request: gr.Request = None, progress=gr.Progress()):
        lang = request_lang(request)
        if not (prompt or "").strip():
            warn("err.empty_prompt", request)
            return
        params = to_params(max_new_tokens, temperature, top_p, top_k, repetition_penalty, greedy, seed)
        meta = {"prompt": prompt, "sampling": dataclasses.asdict(params)}
        job = gpu_tasks.CompareJob(spec_for(ctx, "base_llm", base_model), spec_for(ctx, "instruct_llm", instruct_model),
                                   prompt, params, system=system_prompt or "", template_on_base=bool(template_on_base),
                                   top_probs=5 if show_probabilities else 0)
        for panes in gpu_tasks.call(gpu_tasks.compare, job, zerogpu.stop_key(request, "compare"),
                                    on_progress=zerogpu.progress_to(progress, lang),
                                    on_notice=zerogpu.warn_notice(lang)):
            yield _outputs(panes, bool(show_probabilities), lang, meta, params)

    def stop_generation(request: gr.Request):
        zerogpu.stop(request, "compare")

    @guard
    def comparison_card(result: dict | None, request: gr.Request = None):
        lang = request_lang(request)
        if not result or "base" not in result:
            warn("bvi.no_result", request)
            return None, ""
        card = card_content(result, lang)
        path = tempfiles.new_dir("card") / "base-vs-instruct.png"
        render_png(card, path)
        return str(path), render_markdown(card)

    inputs = [prompt, system, base_model, instruct_model, template_on_base, show_probs] + sampling.inputs
    queue = {"concurrency_id": ctx.concurrency_id("causal_lm"), "concurrency_limit": ctx.llm_concurrency}
    row.run.click(compare, inputs=inputs, outputs=panes_out + [raw], api_name="compare", **queue)
    prompt.submit(compare, inputs=inputs, outputs=panes_out + [raw], api_name=False, **queue)
    on_new_sample(row.new_sample, sampling.seed, compare, inputs=inputs, outputs=panes_out + [raw], **queue)
    row.stop.click(stop_generation, api_name="stop_compare", queue=False)
    card_btn.click(comparison_card, inputs=raw, outputs=[card_png, card_md], api_name="comparison_card")
    share_row(ctx, "base_vs_instruct", api="compare",
              outputs=dict(zip([f"{side}_{part}" for side in ("base", "instruct")
                                for part in ("header", "sees", "sees_info", "output", "stats")] + ["raw"],
                               panes_out + [raw])),
              card={"share.card.base": "base_output", "share.card.instruct": "instruct_output"}, empty="bvi.no_result")
    ctx.on_language(lambda lang: (gr.Dropdown(choices=preset_choices(lang)), legend_html(lang)),
                    outputs=[preset, legend])


def card_content(result: dict, lang: str = "en") -> CardContent:
    """The comparison card of one result (the Raw JSON), worded in ``lang``."""
    sampling = result.get("sampling")
    settings = settings_text(sampling, lang) if sampling else result.get("settings", "")

    def pane(p: dict, title_key: str) -> PaneResult:
        reason = t(f"bvi.reason_{p['stop_reason']}", lang) if p.get("stop_reason") else ""
        stats = t("ui.card_stats", lang, tokens=p["tokens"], tps=p["tokens_per_s"], reason=reason)
        return PaneResult(t(title_key, lang), p["model"], p["output"], stats, sees=p.get("input", ""))

    return CardContent(
        prompt=result.get("prompt", ""),
        settings=settings,
        panes=[pane(result["base"], "bvi.base_title"), pane(result["instruct"], "bvi.instruct_title")],
        labels=card_labels(lang),
    )


def card_labels(lang: str) -> dict[str, str]:
    return {k: t(f"card.{k}", lang) for k in ("title", "prompt", "sees", "output", "date_format")}
