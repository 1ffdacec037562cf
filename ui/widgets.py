"""Widgets shared by several tabs: model picker, sampling controls."""
from __future__ import annotations

import random
from dataclasses import dataclass

import gradio as gr

from engine.catalog import ModelSpec
from engine.catalog import LLM_ROLES
from engine.model_policy import check_model_id, custom_models_allowed
from engine.generation import SamplingParams
from ui.context import AppContext
from ui.i18n import I18N


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
    new_seed: gr.Button

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [self.max_new_tokens, self.temperature, self.top_p, self.top_k,
                self.repetition_penalty, self.greedy, self.seed]


def sampling_controls(max_new_tokens: int = 200, temperature: float = 0.7, greedy: bool = False,
                      open_: bool = False) -> SamplingControls:
    with gr.Accordion(I18N("common.sampling"), open=open_):
        with gr.Row():
            mnt = gr.Slider(1, 2048, value=max_new_tokens, step=1, label=I18N("common.max_new_tokens"))
            temp = gr.Slider(0.0, 2.0, value=temperature, step=0.05, label=I18N("common.temperature"))
            top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.01, label=I18N("common.top_p"))
        with gr.Row():
            top_k = gr.Slider(0, 200, value=50, step=1, label=I18N("common.top_k"))
            rep = gr.Slider(1.0, 2.0, value=1.0, step=0.01, label=I18N("common.repetition_penalty"))
            greedy_box = gr.Checkbox(value=greedy, label=I18N("common.greedy"))
        with gr.Row():
            seed = gr.Number(value=42, precision=0, label=I18N("common.seed"), minimum=0)
            new_seed = gr.Button(I18N("common.new_seed"), size="sm")
    new_seed.click(lambda: random.randint(0, 2**31 - 1), outputs=seed, api_name=False, queue=False)
    return SamplingControls(mnt, temp, top_p, top_k, rep, greedy_box, seed, new_seed)


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
