"""Every event's arguments checked at the boundary, before the event is queued.

The rules are declared once per handler (``RULES``, keyed by the handler's name; arguments not
listed get the rule their input component implies: a slider's range, a radio's choices, a
checkbox's true/false, a free text field's length). :func:`install` gives every queued event a
Gradio ``validator`` (Gradio runs it in ``Queue.push``, before anything is queued) that answers
in the visitor's language; the instant UI updates that run outside the queue are checked when
called. Numbers must be finite: NaN and infinities are refused, never passed on. The input
components' own preprocessing is loosened to let such values reach the rules (Gradio's would
fail on NaN with "cannot convert float NaN to integer", or echo a bad choice in English).

The limits come from ``engine/limits.py`` (one table per profile); the rules are in
``ui/rules.py``.
"""
from __future__ import annotations

import functools
import inspect
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gradio as gr
from gradio.i18n import I18nData

from engine.models.catalog import IMAGE_ROLES, LLM_ROLES
from engine.limits import SEED_MAX, Limits
from ui.fmt import plain
from ui.i18n import request_lang, t
from ui.rules import (Bool, CardResult, Choice, Choices, Conversation, Env, Grid, IdList, Model, ModelList, Num,
                      Payload, Problem, Rule, Source, SweepAxis, Text, Upload)


# =============================================================================== what each handler accepts
def llm_ids(env: Env) -> list[str]:
    """Every LLM id of the catalog: each role's model and the pickers' extra choices."""
    cat = env.ctx.catalog
    ids = [cat.spec(r).id for r in LLM_ROLES]
    for role in LLM_ROLES:
        ids += cat.llm_choices(role)
    return list(dict.fromkeys(ids))


def planner_ids(env: Env) -> list[str]:
    from engine.quantization import planner

    return list(planner.PRESETS) + llm_ids(env)


def task_ids(env: Env) -> list[str]:
    from engine.techniques import tasks

    return [task.id for lang in ("en", "fr") for task in tasks.all_tasks(lang)] + [tasks.CUSTOM]


PROMPT = Text(lambda L: L.prompt_chars)
IMAGE_PROMPT = Text(lambda L: L.image_prompt_chars)
TOKENIZER_TEXT = Text(lambda L: L.tokenizer_chars)
SEED = Num(0, SEED_MAX, True)
NEW_TOKENS = Num(hi=lambda L: L.max_new_tokens)
TECHNIQUE_SETTINGS = {
    "k_examples": Num(0, lambda L: L.examples, True), "shuffle_seed": SEED,
    "n_samples": Num(1, lambda L: L.samples, True), "refine_rounds": Num(0, lambda L: L.refine_rounds, True),
    "k_thoughts": Num(1, lambda L: L.thoughts, True), "depth": Num(1, lambda L: L.depth, True),
    "model": Model(llm_ids), "max_new_tokens": NEW_TOKENS, "seed": SEED,
    "ama_chains": Num(1, lambda L: L.ama_chains, True),
}
TOKENIZER_ARGS = {"hub_ids": ModelList(llm_ids), "tokenizers": Choices(max_count=lambda L: L.tokenizers)}
SHARED_BYTES = 8_000_000  # engine/share StoreLimits.experiment_mb: the store refuses more anyway
SHARED_RESULT = Payload(SHARED_BYTES)
BROWSER_STATE = Payload(64_000, (dict,))
TABLE = Payload(2_000_000)  # a results table sent back by the page (a benchmark's: 40 problems × 10 techniques)
ROOM, STUDENT_NAME, TOKEN = Text(64), Text(200), Text(200)
ENTRY = Num(0, 1_000_000, True)  # a wall entry's number

RULES: dict[str, dict[str, Rule]] = {
    # Base vs Instruct
    "compare": {"prompt": PROMPT, "system_prompt": PROMPT, "base_model": Model(llm_ids),
                "instruct_model": Model(llm_ids), "max_new_tokens": NEW_TOKENS, "seed": SEED,
                "history": Conversation(), "source": Source(lambda L: L.source_chars)},
    "pick_source": {"prompt": PROMPT},
    "follow_up": {"message": PROMPT, "system_prompt": PROMPT, "base_model": Model(llm_ids),
                  "instruct_model": Model(llm_ids), "max_new_tokens": NEW_TOKENS, "seed": SEED,
                  "source": Source(lambda L: L.source_chars),
                  "result": Payload(SHARED_BYTES, (dict,))},  # its conversation: checked by the handler (a toast)
    "comparison_card": {"result": CardResult()},
    # Tokenizers
    "tokenize": {"text": TOKENIZER_TEXT, **TOKENIZER_ARGS},
    "language_cost": TOKENIZER_ARGS,
    "decode_ids": {"ids": IdList(), **TOKENIZER_ARGS},
    "clip_window": {"text": TOKENIZER_TEXT},
    "embedding_view": {"model": Model(llm_ids), "query": Text(200), "other": Text(200),
                       "k": Num(1, lambda L: L.embedding_neighbours, True)},
    # Quantization
    "layers_of": {"model": Model(llm_ids)},
    "quantize_weights": {"model": Model(llm_ids), "layer": Text(300)},
    "pick_method": {"model": Model(llm_ids), "layer": Text(300)},
    "first_view": {"was_opened": Bool(), "model": Model(llm_ids), "layer": Text(300),
                   "plan_model": Model(planner_ids)},
    "memory_plan": {"model": Model(planner_ids)},
    "finetune_plan": {"model": Model(planner_ids)},
    "context_slider": {"model": Model(planner_ids)},
    "quantize_compare": {"model": Model(llm_ids), "prompt": PROMPT,
                         "precisions": Choices(max_count=lambda L: L.quant_variants),
                         "max_new_tokens": Num(hi=lambda L: L.quant_new_tokens)},
    # Prompt techniques
    "run_technique": {"problem": Choice(task_ids), "question": PROMPT, **TECHNIQUE_SETTINGS},
    "bench_legend": {"table": TABLE},
    "benchmark_techniques": {"n_problems": Num(1, lambda L: L.benchmark_problems, True), **TECHNIQUE_SETTINGS},
    "fragility_experiment": {"n_problems": Num(1, lambda L: L.benchmark_problems, True),
                             "k_variants": Grid(2, lambda L: L.fragility_variants, "n_problems",
                                                lambda L: L.fragility_rows, "tech.frag_err_rows"),
                             "k_examples": Num(1, lambda L: L.examples, True), "model": Model(llm_ids),
                             "max_new_tokens": NEW_TOKENS, "seed": SEED},
    # Image prompting
    "generate_images": {"prompt": IMAGE_PROMPT, "second_prompt": IMAGE_PROMPT, "negative_prompt": IMAGE_PROMPT,
                        "models": Choices(list(IMAGE_ROLES)), "seed": SEED,
                        "steps": Num(1, lambda L: L.image_steps, True), "size": Num(hi=lambda L: L.image_size)},
    "image_grid_sweep": {"prompt": IMAGE_PROMPT, "negative_prompt": IMAGE_PROMPT, "seed": SEED,
                         "x_values": SweepAxis("x_param"),
                         "y_values": SweepAxis("y_param", other="x_values", other_param_arg="x_param")},
    "read_png_settings": {"png": Upload()},
    "describe_grid": {"prompt": IMAGE_PROMPT, "second_prompt": IMAGE_PROMPT, "models": Choices(list(IMAGE_ROLES)),
                      "seed": SEED},
    "describe_sweep": {"prompt": IMAGE_PROMPT, "seed": SEED},
    "refresh_tokens": {"text": IMAGE_PROMPT},
    "localise": {"text": IMAGE_PROMPT},
    "build_prompt": {"values": IMAGE_PROMPT},
    "pick_style": {"values": IMAGE_PROMPT},
    # Sharing and the class wall (engine/share checks the contents; here their sizes and kinds)
    "copy_link": {"values": SHARED_RESULT},
    "send_to_wall": {"room": ROOM, "name": STUDENT_NAME, "values": SHARED_RESULT},
    "share_experiment": {"kind": Text(64), "inputs": Payload(SHARED_BYTES, (dict,)),
                         "outputs": Payload(SHARED_BYTES, (dict,))},
    "open_experiment": {"id": Text(64)},
    "restore_wall": {"state": BROWSER_STATE, "teacher_link": TOKEN},
    "restore": {"state": BROWSER_STATE, "trigger": Text(40)}, "settle": {"state": BROWSER_STATE, "trigger": Text(40)},
    "join_room": {"state": BROWSER_STATE}, "open_room": {"state": BROWSER_STATE},
    # "refresh": the tokenizer tab's live update and the wall's (seen_key)
    "refresh": {"text": TOKENIZER_TEXT, **TOKENIZER_ARGS, "seen_key": Text(200)},
    "wall_open_room": {"title": Text(200)},
    "wall_post": {"room": ROOM, "name": STUDENT_NAME, "experiment_id": Text(64)},
    "wall_read": {"room": ROOM, "teacher_token": TOKEN},
    "wall_hide": {"room": ROOM, "teacher_token": TOKEN, "entry": ENTRY, "hidden": Bool()},
    "wall_pin": {"room": ROOM, "teacher_token": TOKEN, "entry": ENTRY, "pinned": Bool()},
    # the wall tab's own controls: entries picked in lists filled as the wall changes
    "toggle_hidden": {"room": ROOM, "key": TOKEN, "num": ENTRY},
    "toggle_pinned": {"room": ROOM, "key": TOKEN, "num": ENTRY},
    "compare_entries": {"room": ROOM, "key": TOKEN, "a": ENTRY, "b": ENTRY},
    "close_room": {"room": ROOM, "key": TOKEN},
    "wall_close": {"room": ROOM, "teacher_token": TOKEN},
    "reopen_room": {"room": ROOM, "key": TOKEN},
    "token_bound": {"base_model": Model(llm_ids), "instruct_model": Model(llm_ids), "max_new_tokens": NEW_TOKENS},
    "wall_reopen": {"room": ROOM, "teacher_token": TOKEN},
}


# =============================================================================== validators
def input_names(fn: Callable, n_inputs: int) -> list[str]:
    """The handler's argument name for each input component, in order (``*values`` repeats)."""
    from gradio.helpers import special_args

    _, progress_index, event_index, _ = special_args(fn)
    sig = inspect.signature(fn)
    hints = _hints(fn)
    names: list[str] = []
    for i, p in enumerate(sig.parameters.values()):
        if p.kind is p.VAR_POSITIONAL:
            names += [p.name] * (n_inputs - len(names))
            break
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        if i in (progress_index, event_index) or _is_request(hints.get(p.name)):
            continue
        names.append(p.name)
    return names[:n_inputs]


def _hints(fn: Callable) -> dict:
    from gradio import utils

    try:
        return utils.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no special arguments
        return {}


def _is_request(hint: Any) -> bool:
    return hint is not None and "Request" in str(hint)


def _default_rule(component: Any) -> Rule | None:
    if isinstance(component, (gr.Slider, gr.Number)):
        return Num()
    if isinstance(component, gr.Checkbox):
        return Bool()
    if isinstance(component, (gr.CheckboxGroup, gr.Radio, gr.Dropdown)):
        if getattr(component, "allow_custom_value", False) or not component.choices:
            return None  # its values are not its build-time choices (filled later): declare a rule
        many = isinstance(component, gr.CheckboxGroup) or getattr(component, "multiselect", False)
        return Choices() if many else Choice()
    if isinstance(component, gr.Textbox):
        return Text()
    if isinstance(component, gr.Dataframe):
        return TABLE
    return None


@dataclass
class EventRules:
    """The bound rules of one event: one per input, in the order of the inputs."""

    fn_name: str
    names: list[str]
    rules: list[Rule]
    labels: list[Any]  # what a message calls each input: its label (I18nData or text), else its name

    def problems(self, args: dict[str, Any], values: Sequence[Any], env: Env) -> list[Problem | None]:
        env.args = args
        return [rule.check(value, env) for rule, value in zip(self.rules, values)]


def rules_for(fn_name: str, fn: Callable, inputs: Sequence[Any]) -> EventRules:
    names = input_names(fn, len(inputs))
    if len(names) != len(inputs):
        raise RuntimeError(f"{fn_name}: {len(inputs)} inputs but {len(names)} arguments")
    declared = RULES.get(fn_name, {})
    rules = []
    for name, component in zip(names, inputs):
        rule = declared.get(name) or _default_rule(component)
        if rule is None:
            raise RuntimeError(f"no validation rule for argument {name!r} of {fn_name} "
                               f"({type(component).__name__}): declare one in ui/validation.py RULES")
        rules.append(rule.bind(component))
    labels = [getattr(c, "label", None) or name for name, c in zip(names, inputs)]
    return EventRules(fn_name, names, rules, labels)


def make_validator(fn: Callable, event: EventRules, limits: Limits, ctx: Any) -> Callable:
    """A Gradio ``validator`` with the handler's own signature (so Gradio passes the same
    arguments, ``gr.Request`` included): one ``gr.validate`` per input."""
    sig = inspect.signature(fn)
    single = len(event.rules) == 1

    @functools.wraps(fn)
    def validator(*args, **kwargs):
        bound = sig.bind_partial(*args, **kwargs)
        request = next((v for v in list(args) + list(kwargs.values()) if isinstance(v, gr.Request)), None)
        arguments = dict(bound.arguments)
        values = _input_values(event.names, arguments)
        found = event.problems(arguments, values, Env(limits, ctx, {}))
        lang = request_lang(request)
        out = [gr.validate(p is None, "" if p is None else message(p, label, lang))
               for label, p in zip(event.labels, found)]
        return out[0] if single else out

    return validator  # functools.wraps: inspect.signature (hence Gradio) sees the handler's parameters


def _input_values(names: list[str], arguments: dict[str, Any]) -> list[Any]:
    values, positions = [], {}
    for name in names:
        value = arguments.get(name)
        if isinstance(value, tuple):  # *values
            k = positions.get(name, 0)
            positions[name] = k + 1
            value = value[k] if k < len(value) else None
        values.append(value)
    return values


def check_call(fn_name: str, fn: Callable, inputs: Sequence[Any], values: Sequence[Any], limits: Limits,
               ctx: Any, lang: str = "en") -> list[str]:
    """The messages a call would get (empty: valid). For tests and scripts."""
    event = rules_for(fn_name, fn, inputs)
    args = dict(zip(event.names, values))
    found = event.problems(args, list(values), Env(limits, ctx, {}))
    return [message(p, label, lang) for label, p in zip(event.labels, found) if p is not None]


def message(problem: Problem, param: Any, lang: str) -> str:
    """A problem in the user's language: the input named by its label as the page shows it,
    numbers written the language's way."""
    key, params = problem
    shown = {k: plain(v, lang) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
             for k, v in params.items()}
    return t(key, lang, **{"param": param_text(param, lang), **shown})


def param_text(param: Any, lang: str) -> str:
    """An input's label in ``lang`` (an ``I18N`` key or plain text), without its parenthesised hint."""
    if isinstance(param, I18nData):
        param = t(param.key, lang)
    text = re.sub(r"\s*\([^()]*\)\s*$", "", str(param)).rstrip(" :")
    return text or str(param)


# =============================================================================== lenient preprocessing
def _lenient_number(component: Any) -> Callable:
    """Range and finiteness are the validator's job (translated); Gradio's own preprocessing
    would turn NaN into "cannot convert float NaN to integer"."""
    precision = getattr(component, "precision", None)

    def preprocess(payload: Any) -> Any:
        if payload is None or isinstance(payload, bool) or not isinstance(payload, (int, float)):
            return payload
        if isinstance(payload, float) and not math.isfinite(payload):
            return payload
        if precision is None:
            return payload
        rounded = round(payload, precision)
        return int(rounded) if precision == 0 and float(rounded).is_integer() else rounded

    return preprocess


def _lenient_choice(component: Any) -> Callable:
    """A value outside the choices reaches the validator, which names the choices in the
    visitor's language (Gradio's own error echoes it as HTML, in English)."""
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except (gr.Error, TypeError, ValueError):
            return payload

    return preprocess


def _loosen(component: Any) -> None:
    if getattr(component, "_genai_lenient", False):
        return
    if isinstance(component, (gr.Slider, gr.Number)):
        component.preprocess = _lenient_number(component)
    elif isinstance(component, (gr.Dropdown, gr.Radio, gr.CheckboxGroup)) \
            and getattr(component, "type", "value") == "value":
        component.preprocess = _lenient_choice(component)
    else:
        return
    component._genai_lenient = True


def checked_at_call(fn: Callable, event: EventRules, limits: Limits, ctx: Any) -> Callable:
    """For events that run outside the queue (instant UI updates): the same check, made when
    the call arrives, refusing with a translated ``gr.Error``."""
    validator = make_validator(fn, event, limits, ctx)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        results = validator(*args, **kwargs)
        for result in results if isinstance(results, list) else [results]:
            if not result["is_valid"]:
                raise gr.Error(result["message"], print_exception=False)
        return fn(*args, **kwargs)

    return wrapper


def install(demo: gr.Blocks, ctx: Any, limits: Limits) -> dict[str, EventRules]:
    """Check every event of ``demo`` that takes inputs; returns the rules per handler.

    Queued events get a Gradio ``validator`` (run before the event is queued); the few that
    run outside the queue are checked when called. Fails at start-up (RuntimeError) if an
    argument has no rule."""
    installed: dict[str, EventRules] = {}
    for block_fn in demo.fns.values():
        if block_fn.fn is None or not block_fn.inputs:
            continue
        event = rules_for(block_fn.name, block_fn.fn, block_fn.inputs)
        _clamp_sliders(block_fn.inputs, event, limits)
        if block_fn.queue:
            block_fn.validator = make_validator(block_fn.fn, event, limits, ctx)
        elif not inspect.isgeneratorfunction(block_fn.fn) and not inspect.iscoroutinefunction(block_fn.fn):
            block_fn.fn = checked_at_call(block_fn.fn, event, limits, ctx)
        else:
            raise RuntimeError(f"{block_fn.name}: an unqueued generator or coroutine cannot be checked; queue it")
        installed.setdefault(block_fn.name, event)
        for comp in block_fn.inputs:
            _loosen(comp)  # range and choices are the rules' job, with messages in the visitor's language
    return installed


def _clamp_sliders(inputs: Sequence[Any], event: EventRules, limits: Limits) -> None:
    """A slider never offers more than the profile allows (its maximum becomes the limit)."""
    for comp, rule in zip(inputs, event.rules):
        if isinstance(comp, gr.Slider) and isinstance(rule, Num) and callable(rule.hi):
            hi = rule.hi(limits)
            if comp.maximum is not None and comp.maximum > hi >= (comp.minimum or 0):
                comp.maximum = hi
                if isinstance(comp.value, (int, float)) and comp.value > hi:
                    comp.value = hi


def describe(installed: dict[str, EventRules]) -> str:
    """One line per handler: its arguments and their rules (for debugging and the tests)."""
    return "\n".join(f"{name}: " + ", ".join(f"{n}={type(r).__name__}" for n, r in zip(ev.names, ev.rules))
                     for name, ev in sorted(installed.items()))


__all__ = ["RULES", "EventRules", "check_call", "describe", "install", "Problem"]
