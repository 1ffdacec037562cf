"""Widgets shared by several tabs: model picker, sampling controls, the run row (Generate,
🎲 New sample, Stop), example-prompt labels."""
from __future__ import annotations

import random
from dataclasses import dataclass

import gradio as gr

from engine.catalog import ModelSpec
from engine.catalog import LLM_ROLES
from engine.llm import context_length_of
from engine.model_policy import check_model_id, custom_models_allowed
from engine.generation import SamplingParams
from ui.context import AppContext
from ui.i18n import I18N, t


def model_picker(ctx: AppContext, role: str, label_key: str = "common.model", **kwargs) -> gr.Dropdown:
    """A dropdown of the catalog's ids for ``role``; it also accepts a Hub id typed in when the
    teacher allows custom models (``--allow-custom-models``)."""
    choices = ctx.catalog.llm_choices(role)
    return gr.Dropdown(choices=choices, value=ctx.catalog.spec(role).id, label=I18N(label_key),
                       allow_custom_value=custom_models_allowed(), filterable=True, **kwargs)


def spec_for(ctx: AppContext, role: str, model_id: str | None) -> ModelSpec:
    """The catalog spec of ``role``, switched to ``model_id`` if the user picked another one."""
    spec = ctx.catalog.spec(role)
    model_id = (model_id or "").strip()
    if model_id and model_id != spec.id:
        offered = [ctx.catalog.spec(r).id for r in LLM_ROLES] + ctx.catalog.llm_choices(role)
        spec = spec.with_id(check_model_id(model_id, offered))
    return spec


@dataclass
class SamplingControls:
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    top_p: gr.Slider
    top_k: gr.Slider
    repetition_penalty: gr.Slider
    greedy: gr.Checkbox
    seed: gr.Number

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [self.max_new_tokens, self.temperature, self.top_p, self.top_k,
                self.repetition_penalty, self.greedy, self.seed]


MIN_PROMPT_TOKENS = 2  # the shortest prompt a model can get: a start token and one token of text


def new_tokens_bound(ctx: AppContext, specs: list[ModelSpec]) -> int:
    """The most new tokens every model of ``specs`` can accept at all (its context minus the shortest
    prompt), within the profile's limit: a "Max new tokens" slider never offers more."""
    bound = ctx.limits.max_new_tokens
    for spec in specs:
        context = context_length_of(spec)
        if context:
            bound = min(bound, context - MIN_PROMPT_TOKENS)
    return max(1, bound)


def sampling_controls(max_new_tokens: int = 200, temperature: float = 0.7, greedy: bool = False,
                      open_: bool = False, maximum: int = 2048) -> SamplingControls:
    """``maximum``: "Max new tokens"'s bound (:func:`new_tokens_bound` of the models it feeds)."""
    with gr.Accordion(I18N("common.sampling"), open=open_):
        with gr.Row():
            mnt = gr.Slider(1, maximum, value=min(max_new_tokens, maximum), step=1,
                            label=I18N("common.max_new_tokens"))
            temp = gr.Slider(0.0, 2.0, value=temperature, step=0.05, label=I18N("common.temperature"))
            top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.01, label=I18N("common.top_p"))
        with gr.Row():
            top_k = gr.Slider(0, 200, value=50, step=1, label=I18N("common.top_k"))
            rep = gr.Slider(1.0, 2.0, value=1.0, step=0.01, label=I18N("common.repetition_penalty"))
            greedy_box = gr.Checkbox(value=greedy, label=I18N("common.greedy"))
        seed = gr.Number(value=42, precision=0, label=I18N("common.seed"), info=I18N("ui.seed_info"), minimum=0)
    return SamplingControls(mnt, temp, top_p, top_k, rep, greedy_box, seed)


@dataclass
class RunRow:
    run: gr.Button
    new_sample: gr.Button | None
    stop: gr.Button


def run_row(run_key: str, prefix: str, new_sample: bool = True) -> RunRow:
    """The row of an action: the action, "🎲 New sample" (a new seed, then the same action; only
    where a seed matters) and Stop. Ids: ``{prefix}-run``, ``{prefix}-new-sample``, ``{prefix}-stop``."""
    with gr.Row(elem_classes="run-row"):
        run = gr.Button(I18N(run_key), variant="primary", elem_id=f"{prefix}-run", elem_classes="main-action",
                        scale=4, min_width=160)
        new = gr.Button(I18N("ui.new_sample"), variant="secondary", elem_id=f"{prefix}-new-sample",
                        elem_classes="new-sample", scale=1, min_width=150) if new_sample else None
        stop = gr.Button(I18N("common.stop"), variant="stop", elem_id=f"{prefix}-stop", elem_classes="main-stop",
                         scale=1, min_width=110)
    return RunRow(run, new, stop)


def random_seed() -> int:
    return random.randint(0, 2**31 - 1)


def on_new_sample(button: gr.Button, seed: gr.Number, fn, **run_kwargs):
    """``button`` draws a new seed into ``seed``, then runs ``fn`` exactly as the main action does
    (same inputs, outputs and queue settings in ``run_kwargs``)."""
    return button.click(random_seed, outputs=seed, api_name=False, queue=False).then(fn, api_name=False, **run_kwargs)


def preset_label(text: str, width: int = 70) -> str:
    """A dropdown label for an example text: its first line, cut at a word boundary with "…"."""
    first = " ".join((text or "").strip().splitlines()[0].split()) if (text or "").strip() else ""
    more = len(first) > width or len((text or "").strip().splitlines()) > 1
    if len(first) > width:
        cut = first[:width + 1]
        first = cut[:cut.rfind(" ")] if " " in cut else first[:width]
        first = first.rstrip(" ,;:·-–—")
    return first + (" …" if more else "")


def sampling_summary(params: SamplingParams | dict, lang: str, sampled: bool | None = None) -> str:
    """For a stats line: "seed 1234" (what reproduces a sampled result) or "greedy" (nothing random).
    ``sampled`` overrides the params (e.g. self-consistency samples whatever the greedy box says)."""
    p = params if isinstance(params, SamplingParams) else SamplingParams(**params)
    random = (not p.is_greedy) if sampled is None else sampled
    return t("ui.seed_shown", lang, seed=p.seed) if random else t("ui.greedy_shown", lang)


def to_params(max_new_tokens: float, temperature: float, top_p: float, top_k: float,
              repetition_penalty: float, greedy: bool, seed: float) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=max(1, int(max_new_tokens or 1)),
        temperature=float(temperature or 0.0),
        top_p=float(top_p or 1.0),
        top_k=int(top_k or 0),
        repetition_penalty=float(repetition_penalty or 1.0),
        greedy=bool(greedy),
        seed=int(seed or 0),
    )
