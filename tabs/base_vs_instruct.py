"""Base vs Instruct: one prompt, two models streamed side by side; then follow-up turns.

"Generate both" starts a conversation from the prompt box; the follow-up box under the panes sends
the next message to both models with the conversation so far (``/compare``'s ``history``): the
instruct model through its chat template, the base model as one plain text
(:mod:`engine.chat.conversation`). Each pane shows its own conversation turn by turn
(:mod:`ui.conversation_view`). The raw result holds the whole conversation: the follow-up reads it
back, links and the wall carry it, the card shows it. "New conversation" clears it; changing the
models, the system prompt, the template option or the source mode makes the next follow-up ask for
a new one. "Give the model a source" (:mod:`ui.source_panel`) adds retrieved passages to each message.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from engine import gpu_tasks
from engine.runtime import tempfiles
from engine.share.cards import CardContent, PaneResult, render_markdown, render_png
from engine.chat.compare import PaneState
from engine.chat.conversation import Turn, as_json, parse_history
from engine.errors import UserError
from engine.generation import SamplingParams
from ui import conversation_view, fmt, source_panel, zerogpu
from ui import share_codec as codec
from ui.context import AppContext
from ui.feedback import error_message, guard, warn
from ui.i18n import I18N, forced_lang, request_lang, t
from ui.queue_status import queue_text
from ui.share import share_row
from ui.token_probs import Rendered, legend_html, render_output
from ui.widgets import (RunRow, SamplingControls, model_picker, new_tokens_bound, preset_label, run_row,
                        sampling_controls, sampling_summary, spec_for, to_params)

PRESETS_PATH = Path(__file__).resolve().parent.parent / "assets" / "presets" / "base_vs_instruct.json"


# =============================================================================== helpers
def load_presets() -> list[dict]:
    return json.loads(PRESETS_PATH.read_text(encoding="utf-8"))["presets"]


def preset_choices(lang: str) -> list[tuple[str, str]]:
    """The example prompts in the UI's language: label = the prompt's start (cut between words),
    value = the whole prompt."""
    lang = "fr" if lang == "fr" else "en"
    return [(preset_label(p[lang]), p[lang]) for p in load_presets()]


def pane_header(title_key: str, model: str, lang: str) -> str:
    return f"### {t(title_key, lang)} · `{model}`"


def _how(state: PaneState, lang: str) -> str:
    return t("bvi.how_template" if state.prompt.templated else "bvi.how_plain", lang)


def pane_stats(state: PaneState, lang: str, params: SamplingParams | None = None, turn: int = 1) -> str:
    u = state.update
    if u.error is not None:
        return "⚠️ " + error_message(u.error, lang, markdown=True)
    if u.queue_position is not None and not u.finished:
        return queue_text(u.queue_position, lang)
    reason = t(f"bvi.reason_{u.stop_reason}", lang) if u.stop_reason else t("bvi.reason_running", lang)
    ttft = fmt.seconds(u.ttft_s, lang) if u.ttft_s is not None else "…"
    line = t("bvi.stats", lang, ttft=ttft, tokens=u.n_tokens, tps=u.tokens_per_s, reason=reason)
    line += " · " + sampling_summary(params, lang) if params is not None else ""
    if turn > 1 and state.prompt.input_ids:  # which input this pane's model got, and how much of its context
        line += "  \n" + t("bvi.turn_stats", lang, turn=turn, how=_how(state, lang), tokens=state.prompt.n_tokens,
                           context=state.context or 0)
    return line


def pane_input_info(state: PaneState, lang: str, show_probs: bool = False, turn: int = 1) -> str:
    note = state.prompt.note
    if not state.prompt.input_ids:
        info = ""
    elif turn > 1:
        info = t("bvi.input_conversation", lang, n=state.prompt.n_tokens, turns=turn, how=_how(state, lang))
    else:
        info = t("bvi.input_tokens", lang, n=state.prompt.n_tokens)
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
             params: SamplingParams, history: tuple[Turn, ...] = (), source=None,
             rendered: tuple[Rendered, Rendered] | None = None) -> tuple[list, dict]:
    """Both panes' five outputs (header, input, input info, conversation, stats), the passages each
    was given, and the raw result with the whole conversation (this turn's answers as far as they
    are written). ``rendered``: each pane's output rendered so far in this run (kept by the caller
    across its updates: only what is new is rendered)."""
    out: list = []
    turn = len(history) + 1
    for state, key, done in zip(panes, source_panel.titles(source), rendered or (None, None)):
        u = state.update
        current = render_output(u.text, u.tokens, show_probs, drop_last=u.stop_reason == "eos", lang=lang,
                                rendered=done)
        out += [
            pane_header(key, state.model, lang),
            state.prompt.text,
            pane_input_info(state, lang, show_probs, turn),
            conversation_view.pane_html(history, state.role, meta["prompt"], current, lang),
            pane_stats(state, lang, params, turn),
        ]
    out += [source_panel.pane_html(state, source, lang) for state in panes]
    now = Turn(meta["prompt"], panes[0].update.text, panes[1].update.text)
    raw = {**meta, "conversation": as_json(history + (now,)), "base": panes[0].as_dict(),
           "instruct": panes[1].as_dict()}
    return out, raw


def conversation_of(result: dict | None) -> list[dict] | None:
    """The conversation a raw result holds (a result made before follow-ups existed: its one turn)."""
    if not isinstance(result, dict):
        return None
    if result.get("conversation"):
        return result["conversation"]
    if result.get("prompt") and isinstance(result.get("base"), dict) and isinstance(result.get("instruct"), dict):
        return [{"user": result["prompt"], "base": result["base"].get("output") or "",
                 "instruct": result["instruct"].get("output") or ""}]
    return None


def recorded_inputs(inputs: dict, outputs: dict) -> dict:
    """What a link stores: the call that made the result on screen (its last message and the turns
    before it), whatever the prompt box says now; the other controls as they are."""
    conversation = conversation_of(outputs.get("raw"))
    if not conversation or not isinstance(conversation, list) or not isinstance(conversation[-1], dict):
        return inputs
    return {**inputs, "prompt": conversation[-1].get("user", inputs.get("prompt")),
            "history": conversation[:-1] or None}


def card_title(inputs: dict) -> str:
    """A wall card's title: the conversation's messages in order (one message: the prompt)."""
    history = inputs.get("history")
    users = [str(turn.get("user", "")) for turn in history if isinstance(turn, dict)] \
        if isinstance(history, list) else []
    return " → ".join(users + [str(inputs.get("prompt", ""))])


def card_part(side: str):
    """A wall card's part for one pane: its answer; for a conversation, every turn (shortened)."""
    def part(label: str, outputs: dict) -> dict | None:
        raw = (outputs.get("raw") or {}).get("value")
        try:
            turns = parse_history(conversation_of(raw))
        except UserError:
            turns = ()
        if len(turns) < 2:
            return codec.card_part(label, outputs.get(f"{side}_output"))
        return {"kind": "text", "label": label, "text": conversation_view.card_text(turns, side)}
    part.output = f"{side}_output"  # what the card reads (a blank one is not sent: ShareSpec.shown)
    return part


def wall_card(inputs: dict) -> dict:
    """A wall card's parts, by the source mode the experiment was run with; each pane's answer (its
    whole conversation after follow-ups)."""
    return {label: card_part(name.removesuffix("_output")) if name.endswith("_output") else name
            for label, name in source_panel.wall_card(inputs).items()}


def _same_setup(result: dict, base_id: str, instruct_id: str, system: str, template_on_base: bool,
                source_meta: dict) -> bool:
    """Whether the conversation in ``result`` was held with these pane models, system prompt, option
    and source mode (the source's text and passages may change from one message to the next)."""
    def mode(meta: dict) -> tuple:
        src = meta.get("source") if isinstance(meta.get("source"), dict) else {}
        return src.get("mode", "off"), src.get("model") if src.get("mode") == "with_without" else None

    return ((result.get("base") or {}).get("model") == base_id
            and (result.get("instruct") or {}).get("model") == instruct_id
            and (result.get("system_prompt") or "") == (system or "")
            and bool(result.get("template_on_base")) == bool(template_on_base)
            and mode(result) == mode(source_meta))


def card_content(result: dict, lang: str = "en") -> CardContent:
    """The comparison card of one result (the Raw JSON), worded in ``lang``; after follow-ups, each
    pane lists its earlier turns and the header names the turn."""
    sampling = result.get("sampling")
    settings = settings_text(sampling, lang) if sampling else result.get("settings", "")
    conversation = conversation_of(result) or []
    earlier = conversation[:-1]

    def pane(p: dict, title_key: str, side: str) -> PaneResult:
        reason = t(f"bvi.reason_{p['stop_reason']}", lang) if p.get("stop_reason") else ""
        stats = t("ui.card_stats", lang, tokens=p["tokens"], tps=p["tokens_per_s"], reason=reason)
        turns = [(str(turn.get("user", "")), str(turn.get(side, ""))) for turn in earlier if isinstance(turn, dict)]
        return PaneResult(t(title_key, lang), p["model"], p["output"], stats, sees=p.get("input", ""), turns=turns)

    titles = source_panel.card_titles(result)
    labels = card_labels(lang)
    if earlier:
        labels["prompt"] = t("bvi.card_turn", lang, turn=len(conversation))
    return CardContent(
        prompt=result.get("prompt", ""),
        settings=settings,
        panes=[pane(result["base"], titles[0], "base"), pane(result["instruct"], titles[1], "instruct")],
        labels=labels,
    )


def card_labels(lang: str) -> dict[str, str]:
    labels = {k: t(f"card.{k}", lang) for k in ("title", "prompt", "sees", "output", "date_format")}
    return {**labels, "earlier": t("bvi.card_earlier", lang)}


# =============================================================================== layout
SIDES = (("base", "bvi.base_title"), ("instruct", "bvi.instruct_title"))
PANE_PARTS = ("header", "sees", "sees_info", "output", "stats")  # each pane's outputs, in this order
# every output of a turn: both panes' parts, both panes' passages, the follow-up box, the conversation's
# line, the history and the raw result
N_OUTPUTS = len(SIDES) * (len(PANE_PARTS) + 1) + 4


@dataclass
class View:
    prompt: gr.Textbox
    preset: gr.Dropdown
    show_probs: gr.Checkbox
    row: RunRow
    src: source_panel.SourcePanel
    base_model: gr.Dropdown
    instruct_model: gr.Dropdown
    system: gr.Textbox
    template_on_base: gr.Checkbox
    sampling: SamplingControls
    panes_out: list        # each pane's PANE_PARTS, base then instruct
    passages_out: list     # the passages each pane was given
    convo_info: gr.Markdown
    follow_box: gr.Textbox
    new_convo: gr.Button
    follow_row: RunRow
    history: gr.JSON
    legend: gr.HTML
    card_btn: gr.Button
    card_png: gr.File
    card_md: gr.Code
    raw: gr.JSON


def layout(ctx: AppContext) -> View:
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
    src = source_panel.build()
    with gr.Row(equal_height=False, elem_classes="secondary-controls"):
        with gr.Column(min_width=300):
            with gr.Accordion(I18N("bvi.options"), open=False, elem_id="bvi-options"):
                base_model = model_picker(ctx, "base_llm", "bvi.base_model")
                instruct_model = model_picker(ctx, "instruct_llm", "bvi.instruct_model")
                system = gr.Textbox("", lines=1, label=I18N("bvi.system"), elem_id="bvi-system",
                                    placeholder=I18N("bvi.system_placeholder"), info=I18N("bvi.system_info"))
                template_on_base = gr.Checkbox(False, label=I18N("bvi.template_on_base"),
                                               info=I18N("bvi.template_on_base_info"))
        with gr.Column(min_width=300):
            bound = new_tokens_bound(ctx, [ctx.catalog.spec("base_llm"), ctx.catalog.spec("instruct_llm")])
            sampling = sampling_controls(max_new_tokens=48 if tiny else 256, maximum=bound)
    panes_out, passages_out = _layout_panes()
    follow = _layout_follow_up()
    # the earlier turns of the message in the prompt box: empty, except after opening a link to a
    # conversation (then "Generate both" / "Run again" replays its last turn); part of /compare's API
    history = codec.json_input(gr.JSON(None, visible=False, elem_id="bvi-history"),
                               check=lambda value: as_json(parse_history(value)) or None)
    legend = gr.HTML(legend_html(forced_lang() or "en"), elem_id="bvi-legend", elem_classes="bvi-legend")
    with gr.Accordion(I18N("bvi.card"), open=False):
        card_btn = gr.Button(I18N("bvi.card"), elem_id="bvi-card-btn")
        with gr.Row():
            card_png = gr.File(label=I18N("bvi.card_png"), elem_id="bvi-card-png")
            card_md = gr.Code(language="markdown", label=I18N("bvi.card_md"), elem_id="bvi-card-md")
    with gr.Accordion(I18N("bvi.raw"), open=False):
        raw = gr.JSON(elem_id="bvi-raw", show_label=False)
    return View(prompt, preset, show_probs, row, src, base_model, instruct_model, system, template_on_base, sampling,
                panes_out, passages_out, **follow, history=history, legend=legend, card_btn=card_btn,
                card_png=card_png, card_md=card_md, raw=raw)


def _layout_panes() -> tuple[list, list]:
    """The two panes side by side: each one's header, what its model sees, its output, its stats and
    the passages it was given."""
    panes_out: list = []
    passages_out: list = []
    with gr.Row(equal_height=False, elem_id="bvi-panes"):
        for side, title_key in SIDES:
            with gr.Column(elem_classes="bvi-pane", min_width=300):
                header = gr.Markdown(I18N(title_key + "_md"), elem_id=f"bvi-{side}-header")
                with gr.Accordion(I18N("bvi.sees"), open=False, elem_id=f"bvi-{side}-sees-acc"):
                    sees = gr.Code(language=None, interactive=False, lines=3, elem_id=f"bvi-{side}-sees",
                                   show_label=False, wrap_lines=True)
                    sees_info = gr.Markdown(elem_id=f"bvi-{side}-sees-info")
                output = gr.HTML(elem_id=f"bvi-{side}-output", elem_classes="bvi-output model-output",
                                 label=I18N("bvi.output"))
                stats = gr.Markdown(elem_id=f"bvi-{side}-stats", elem_classes="bvi-stats")
                panes_out += [header, sees, sees_info, output, stats]
                passages_out.append(source_panel.pane_block(side))
    return panes_out, passages_out


def _layout_follow_up() -> dict:
    """Under the panes: the conversation's line, the follow-up box, New conversation, its run row."""
    with gr.Column(elem_id="bvi-followup", elem_classes="bvi-followup"):
        convo_info = gr.Markdown(elem_id="bvi-conversation-info")
        with gr.Row(equal_height=True):
            follow_box = gr.Textbox("", lines=1, max_lines=6, label=I18N("bvi.follow_up"),
                                    placeholder=I18N("bvi.follow_up_placeholder"), info=I18N("bvi.follow_up_info"),
                                    elem_id="bvi-follow-up", elem_classes="main-prompt", scale=5)
            new_convo = gr.Button(I18N("bvi.new_conversation"), variant="secondary", elem_id="bvi-new-conversation",
                                  scale=1, min_width=190)
        follow_row = run_row("bvi.follow_send", "bvi-followup", new_sample=False)
    return dict(convo_info=convo_info, follow_box=follow_box, new_convo=new_convo, follow_row=follow_row)


# =============================================================================== handlers
def unchanged() -> tuple:
    """Every output as it is (a generator that yields nothing would blank them)."""
    return (gr.skip(),) * N_OUTPUTS


def run_turn(ctx: AppContext, prompt: str, history: tuple[Turn, ...], system_prompt: str, base_model: str,
             instruct_model: str, template_on_base: bool, show_probabilities: bool, params: SamplingParams, plan,
             request, progress):
    """Stream one turn: (pane outputs, raw result) after each step; once more at the end."""
    lang = request_lang(request)
    if plan is not None and not plan.matched:
        warn("src.no_match", request)
    meta = {"prompt": prompt, "sampling": dataclasses.asdict(params), "system_prompt": system_prompt or "",
            "template_on_base": bool(template_on_base), **source_panel.meta(plan)}
    job = gpu_tasks.CompareJob(spec_for(ctx, "base_llm", base_model), spec_for(ctx, "instruct_llm", instruct_model),
                               prompt, params, system=system_prompt or "", template_on_base=bool(template_on_base),
                               top_probs=5 if show_probabilities else 0, history=history, source=plan)
    rendered = (Rendered(), Rendered())  # each pane's output so far: an update renders only what is new
    for panes in gpu_tasks.call(gpu_tasks.compare, job, zerogpu.stop_key(request, "compare"),
                                on_progress=zerogpu.progress_to(progress, lang),
                                on_notice=zerogpu.warn_notice(lang)):
        yield _outputs(panes, bool(show_probabilities), lang, meta, params, history, plan, rendered)


def token_bound_for(ctx: AppContext):
    def token_bound(base_model: str, instruct_model: str, max_new_tokens: float):
        """Another model picked: "Max new tokens" offers what both models can take, no more."""
        limit = new_tokens_bound(ctx, [spec_for(ctx, "base_llm", base_model), spec_for(ctx, "instruct_llm", instruct_model)])
        return gr.Slider(maximum=limit, value=min(int(max_new_tokens or 1), limit))

    return token_bound


def compare_for(ctx: AppContext):
    @guard
    def compare(prompt: str, system_prompt: str = "", base_model: str = "", instruct_model: str = "",
                template_on_base: bool = False, show_probabilities: bool = False,
                max_new_tokens: float = 128, temperature: float = 0.7, top_p: float = 0.95,
                top_k: float = 50, repetition_penalty: float = 1.0, greedy: bool = False,
                seed: float = 42, history: list | None = None, source: str = "", source_mode: str = "off",
                source_model: str = "instruct", passages: float = 3, request: gr.Request = None,
                progress=gr.Progress()):
        """Both models answer ``prompt``; with ``history`` (earlier turns, each ``{"user", "base",
        "instruct"}``: a result's ``conversation``), as the next turn of that conversation; with a
        ``source`` (``source_mode`` ``both`` or ``with_without``), given the ``passages`` best
        passages of it."""
        lang = request_lang(request)
        turns = parse_history(history)
        if not (prompt or "").strip():
            if turns:
                raise UserError("bvi.err.empty_follow_up")
            warn("err.empty_prompt", request)
            yield unchanged()
            return
        params = to_params(max_new_tokens, temperature, top_p, top_k, repetition_penalty, greedy, seed)
        plan = source_panel.plan(source, source_mode, source_model, passages, prompt, lang)
        info = t("bvi.conversation_info", lang, turn=len(turns) + 1)
        for panes, result in run_turn(ctx, prompt, turns, system_prompt, base_model, instruct_model, template_on_base,
                                      show_probabilities, params, plan, request, progress):
            yield (*panes, gr.skip(), info, gr.skip(), result)

    return compare


def follow_up_for(ctx: AppContext):
    @guard
    def follow_up(message: str, system_prompt: str = "", base_model: str = "", instruct_model: str = "",
                  template_on_base: bool = False, show_probabilities: bool = False,
                  max_new_tokens: float = 128, temperature: float = 0.7, top_p: float = 0.95,
                  top_k: float = 50, repetition_penalty: float = 1.0, greedy: bool = False,
                  seed: float = 42, source: str = "", source_mode: str = "off", source_model: str = "instruct",
                  passages: float = 3, result: dict | None = None, request: gr.Request = None,
                  progress=gr.Progress()):
        """The next turn of the conversation on screen (the raw result holds it). What stops it before
        it starts (an empty box, no conversation, other settings, a conversation past the context) is
        a warning: the conversation stays on screen as it was, the box keeps its text."""
        lang = request_lang(request)
        first = True
        try:
            if not (message or "").strip():
                raise UserError("bvi.err.empty_follow_up")
            conversation = conversation_of(result)
            if not conversation:
                raise UserError("bvi.err.no_conversation")
            turns = parse_history(conversation)
            plan = source_panel.plan(source, source_mode, source_model, passages, message, lang)
            base_id, instruct_id = spec_for(ctx, "base_llm", base_model).id, spec_for(ctx, "instruct_llm",
                                                                                      instruct_model).id
            if not _same_setup(result, *source_panel.pane_models(plan, base_id, instruct_id), system_prompt,
                               template_on_base, source_panel.meta(plan)):
                raise UserError("bvi.err.settings_changed")
            params = to_params(max_new_tokens, temperature, top_p, top_k, repetition_penalty, greedy, seed)
            info = t("bvi.conversation_info", lang, turn=len(turns) + 1)
            for panes, result in run_turn(ctx, message, turns, system_prompt, base_model, instruct_model,
                                          template_on_base, show_probabilities, params, plan, request, progress):
                # the box empties (and a link's replayed turns are forgotten) once the turn has started
                yield (*panes, "" if first else gr.skip(), info, None if first else gr.skip(), result)
                first = False
        except UserError as err:
            if not first:
                raise
            warn(err.key, request, **err.params)
            yield unchanged()

    return follow_up


def stop_generation(request: gr.Request):
    zerogpu.stop(request, "compare")


def new_conversation():
    panes = [gr.skip(), "", "", "", ""] * 2  # headers stay; inputs, outputs, stats and passages are cleared
    return (*panes, "", "", "", "", None, None)


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


# =============================================================================== wiring
def wire(view: View, ctx: AppContext) -> None:
    # a new prompt (typed or picked) starts a new conversation on the next "Generate both"
    view.preset.change(lambda text: (text, None), inputs=view.preset, outputs=[view.prompt, view.history],
                       api_name=False, queue=False)
    view.prompt.input(None, inputs=view.prompt, outputs=view.history, js="(text) => [[]]", api_name=False,
                      queue=False)  # in the page
    token_bound = token_bound_for(ctx)
    for picker in (view.base_model, view.instruct_model):
        picker.change(guard(token_bound), inputs=[view.base_model, view.instruct_model, view.sampling.max_new_tokens],
                      outputs=view.sampling.max_new_tokens, api_name=False, queue=False)
    compare = compare_for(ctx)
    settings = [view.system, view.base_model, view.instruct_model, view.template_on_base,
                view.show_probs] + view.sampling.inputs
    inputs = [view.prompt] + settings + [view.history] + view.src.inputs
    outputs = view.panes_out + view.passages_out + [view.follow_box, view.convo_info, view.history, view.raw]
    queue = {"concurrency_id": ctx.concurrency_id("causal_lm"), "concurrency_limit": ctx.llm_concurrency}
    view.row.wire(compare, action="compare", inputs=inputs, outputs=outputs, api_name="compare",
                  seed=view.sampling.seed, enter=view.prompt, **queue)
    view.follow_row.wire(follow_up_for(ctx), action="compare", inputs=[view.follow_box] + settings + view.src.inputs
                         + [view.raw], outputs=outputs, api_name=False, enter=view.follow_box, **queue)
    source_panel.wire(view.src, view.prompt, compare, queue, inputs, outputs, ctx)
    view.row.stop.click(stop_generation, api_name="stop_compare", queue=False)
    view.follow_row.stop.click(stop_generation, api_name=False, queue=False)
    view.new_convo.click(new_conversation, outputs=outputs, api_name=False, queue=False)
    view.card_btn.click(comparison_card, inputs=view.raw, outputs=[view.card_png, view.card_md],
                        api_name="comparison_card")
    share_row(ctx, "base_vs_instruct", api="compare",
              outputs=dict(zip([f"{side}_{part}" for side, _ in SIDES for part in PANE_PARTS]
                               + ["base_passages", "instruct_passages", "conversation_info", "raw"],
                               view.panes_out + view.passages_out + [view.convo_info, view.raw])),
              card=wall_card, title=card_title, recorded=recorded_inputs,
              on_restore=(source_panel.on_restore, [view.src.accordion]), empty="bvi.no_result",
              settle=False)  # no event here reacts to restored values: a follow-up sent at once is kept
    ctx.on_language(lambda lang: (gr.Dropdown(choices=preset_choices(lang)), legend_html(lang)),
                    outputs=[view.preset, view.legend])


def build(ctx: AppContext) -> None:
    wire(layout(ctx), ctx)
