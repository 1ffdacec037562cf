"""Widgets shared by several tabs: model picker, sampling controls, the run row (Generate,
🎲 New sample, Stop) and its one-run-at-a-time wiring, example-prompt labels."""
from __future__ import annotations

import functools
import inspect
import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gradio as gr

from engine import gpu_tasks
from engine.models.catalog import ModelSpec
from engine.models.catalog import LLM_ROLES
from engine.models.llm import context_length_of
from engine.models.policy import check_model_id, custom_models_allowed
from engine.generation import SamplingParams
from ui.context import AppContext
from ui.i18n import I18N, t
from ui.zerogpu import stop_key


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
    label_key: str = ""  # the run button's label (it comes back when a run ends)

    def wire(self, fn: Callable, *, action: str, inputs: Sequence, outputs: Sequence, api_name: str,
             seed: gr.Number | None = None, enter: gr.Textbox | None = None, **queue: Any):
        """Run ``fn`` from this row, one run at a time (see :func:`on_run`): from the run button
        (the API's ``api_name``), from 🎲 New sample (a new ``seed`` first) and from Enter in
        ``enter`` (a click on the run button: nothing while it is disabled). Returns the run
        button's event."""
        buttons = [(self.run, self.label_key)] + ([(self.new_sample, None)] if self.new_sample is not None else [])
        main = on_run(self.run.click, fn, action=action, buttons=buttons, inputs=inputs, outputs=outputs,
                      api_name=api_name, **queue)
        if self.new_sample is not None and seed is not None:
            on_run(lambda wrapped, **kw: on_new_sample(self.new_sample, seed, wrapped, **kw), fn, action=action,
                   buttons=buttons, inputs=inputs, outputs=outputs, **queue)
        if enter is not None:
            enter.submit(None, js=CLICK_JS.replace("ELEM_ID", self.run.elem_id or ""))
        return main


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
    return RunRow(run, new, stop, run_key)


def random_seed() -> int:
    return random.randint(0, 2**31 - 1)


def on_new_sample(button: gr.Button, seed: gr.Number, fn, **run_kwargs):
    """``button`` draws a new seed into ``seed``, then runs ``fn`` exactly as the main action does
    (same inputs, outputs and queue settings in ``run_kwargs``)."""
    return button.click(random_seed, outputs=seed, api_name=False, queue=False).then(fn, api_name=False, **run_kwargs)


# ------------------------------------------------------------------ one run at a time
# Enter in a prompt box clicks the run button, as a student would: a disabled button ignores it.
CLICK_JS = "() => { const b = document.getElementById('ELEM_ID'); if (b && !b.disabled) b.click(); }"
Buttons = Sequence[tuple[gr.Button, "str | None"]]  # a button, and its label key if it shows "⏳ Running…"


def on_run(trigger: Callable, fn: Callable, *, action: str, buttons: Buttons, inputs: Sequence,
           outputs: Sequence, **event: Any):
    """Wire ``fn`` to ``trigger`` (``button.click``, or a ``.then``) so that a visitor has one run
    of ``action`` at a time, the rule of docs/serving.md ("Serving a whole class"):

    * from its first update to its end, ``buttons`` are disabled and the one with a label key reads
      "⏳ Running…" (Stop stays: Stop, then run again — what ChatGPT's and the Arena's send
      buttons do); they come back when it ends, also on an error. A run refused before it starts
      (a validator's message) never disabled them;
    * the server refuses a second run of ``action`` from the same session while one is going
      (``engine.gpu_tasks.call``), whatever the client: a script, a double click, Enter.

    The buttons come back in an event chained after the run (``.then``), not in the run's last
    update: Gradio's page ignores a click on an event that has not ended yet (``trigger_mode``
    "once"), so a button usable before its run has ended would drop a click made in between — on a
    loaded machine, long enough for a student's click to do nothing.

    ``buttons`` become the event's first outputs: ``gradio_client`` leaves buttons out of results,
    and the REST API's last output stays the last of ``outputs``. Returns the event."""
    comps = [b for b, _ in buttons]
    dep = trigger(busy_while_running(fn, buttons, len(outputs)), inputs=inputs, outputs=comps + list(outputs),
                  **event)

    def after_run(request: gr.Request = None):
        states = buttons_after_run(action, buttons, request)
        return states if len(states) > 1 else states[0]  # one output: its value, not a 1-tuple

    dep.then(after_run, outputs=comps, api_name=False, queue=False, show_progress="hidden")
    return dep


def busy_while_running(fn: Callable, buttons: Buttons, n_outputs: int) -> Callable:
    """``fn`` (an event handler, a generator or not) with ``buttons`` busy first in each update."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        # made here, in the handler: a gr.Button made while the page is built would be a new button on it
        busy = tuple(gr.Button(interactive=False, value=I18N("run.busy")) if key else gr.Button(interactive=False)
                     for _, key in buttons)
        result = fn(*args, **kwargs)
        for item in (result if inspect.isgenerator(result) else iter([result])):
            yield busy + ((item,) if n_outputs == 1 else tuple(item))

    return run


def buttons_after_run(action: str, buttons: Buttons, request: gr.Request | None = None) -> tuple:
    """The buttons once a run ended: usable again, unless another run of the session is going
    (then still busy: that run's own end brings them back)."""
    going = gpu_tasks.running(stop_key(request, action)) > 0
    return tuple(gr.Button(interactive=not going, **({"value": I18N("run.busy" if going else key)} if key else {}))
                 for _, key in buttons)


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
