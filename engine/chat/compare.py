"""Base vs instruct: the same prompt to two models, both decoded in one loop.

A follow-up carries the earlier turns (``history``, :mod:`engine.chat.conversation`): the instruct
model gets the whole conversation through its chat template, the base model as one plain text,
and the context check counts all of it. A role that cannot be loaded (an inference server down
at first use, a model not in the cache) costs only its own pane: the other one still streams.

With a source (``engine.retrieval.SourcePlan``) the passages retrieved for the message go into it:
both models get them (mode ``both``), or one model answers without them in the left pane and with
them in the right one (``with_without``), both rows in the same loop."""
from __future__ import annotations

import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from engine.chat import conversation
from engine.models.catalog import ModelSpec
from engine.chat.conversation import Turn
from engine.errors import UserError
from engine.generation import SamplingParams, StreamUpdate, stream_many
from engine.limits import current as current_limits
from engine.models.llm import LLMHandle, PreparedPrompt
from engine.serving.manager import ModelManager

if TYPE_CHECKING:  # the retrieval package (bm25s) is imported by whoever makes a plan
    from engine.retrieval import Passage, SourcePlan

MAX_PROMPT_CHARS = 20_000  # kept for callers; the running profile's limit is ``limits.prompt_chars``


@dataclass
class PaneState:
    role: str
    model: str
    prompt: PreparedPrompt
    update: StreamUpdate = field(default_factory=StreamUpdate)
    passages: tuple[Passage, ...] | None = None  # the source's passages this pane was given (None: no source)
    context: int = 0  # tokens the model reads at most (its context length; 0: unknown)

    def as_dict(self) -> dict:
        u = self.update
        source = {} if self.passages is None else {"passages": [vars(p) for p in self.passages]}
        return {
            **source,
            "model": self.model, "input": self.prompt.text, "input_tokens": self.prompt.n_tokens,
            "templated": self.prompt.templated, "note": self.prompt.note, "output": u.text,
            "tokens": u.n_tokens, "ttft_s": round(u.ttft_s, 4) if u.ttft_s is not None else None,
            "tokens_per_s": round(u.tokens_per_s, 2), "seconds": round(u.elapsed_s, 3),
            "stop_reason": u.stop_reason, "context_length": self.context or None,
            "error": getattr(u.error, "key", None) or (repr(u.error) if u.error else None),
        }


def prepare_pane(handle: LLMHandle, side: str, prompt: str, history: Sequence[Turn], system: str,
                 chat: bool, source: SourcePlan | None = None) -> PreparedPrompt:
    """What one pane's model receives: its conversation through its chat template (``chat``), else
    as one plain text (:func:`engine.chat.conversation.transcript`). A source's passages go with the
    new message: inside its user turn, or as a document just before it."""
    if chat:
        message = source.chat(prompt) if source is not None else prompt
        return handle.prepare_chat(conversation.messages(history, message, side), system=system)
    return handle.prepare_raw(conversation.transcript(history, source.document(prompt) if source is not None
                                                      else prompt))


def prepare_inputs(base: LLMHandle, instruct: LLMHandle, prompt: str, system: str, template_on_base: bool,
                   history: Sequence[Turn] = (),
                   source: SourcePlan | None = None) -> tuple[PreparedPrompt, PreparedPrompt]:
    """The base model gets the raw text, or, if asked, the chat template (its own, else the
    instruct sibling's, tokenized by the base tokenizer); the instruct model gets its template.
    With ``history``, each gets its own side of the conversation before ``prompt``."""
    instr_in = prepare_pane(instruct, "instruct", prompt, history, system, True, source)
    if not template_on_base or getattr(base, "has_chat_template", False):
        return prepare_pane(base, "base", prompt, history, system, template_on_base, source), instr_in
    message = source.chat(prompt) if source is not None else prompt
    borrowed = instr_in if not history else instruct.prepare_chat(conversation.messages(history, message, "base"),
                                                                   system=system)
    tok = getattr(base, "tokenizer", None)
    ids = list(tok(borrowed.text, add_special_tokens=False)["input_ids"]) if tok is not None else []
    return PreparedPrompt(text=borrowed.text, input_ids=ids, templated=True, note=borrowed.note), instr_in


def compare_stream(manager: ModelManager, base_spec: ModelSpec, instruct_spec: ModelSpec, prompt: str,
                   params: SamplingParams, *, system: str = "", template_on_base: bool = False,
                   top_probs: int = 0, stop: threading.Event | None = None,
                   progress: Callable[[float, str], None] | None = None,
                   history: Sequence[Turn] = (),
                   source: SourcePlan | None = None) -> Iterator[tuple[PaneState, PaneState]]:
    """Both panes' states after each step of the shared decoding loop (the same objects, updated).
    ``history``: the conversation's earlier turns (:func:`engine.chat.conversation.parse_history`)."""
    if not prompt or not prompt.strip():
        raise UserError("bvi.err.empty_follow_up" if history else "err.empty_prompt")
    limits = current_limits()
    max_chars = min(MAX_PROMPT_CHARS, limits.prompt_chars)
    if len(prompt) > max_chars:
        raise UserError("err.prompt_too_many_chars", chars=len(prompt), limit=max_chars)
    if source is not None and source.mode == "with_without":
        spec = instruct_spec if source.role == "instruct" else base_spec
        yield from _with_without(manager, spec, prompt, params, source, system=system, history=history,
                                 template_on_base=template_on_base, top_probs=top_probs, stop=stop, progress=progress)
        return
    given = source.passages if source is not None else None
    # both models leased for the whole comparison: loading the second never evicts the first
    with ExitStack() as leases:
        base, base_err = _use(leases, manager, base_spec, _sub(progress, 0.0, 0.5, base_spec.id))
        instruct, instr_err = _use(leases, manager, instruct_spec, _sub(progress, 0.5, 1.0, instruct_spec.id))
        if base_err is not None and instr_err is not None:
            raise base_err
        if base is None or instruct is None:  # one pane reports its error, the other streams alone
            yield from _one_pane(base, instruct, base_spec, instruct_spec, base_err or instr_err, prompt, params,
                                 system=system, template_on_base=template_on_base, top_probs=top_probs, stop=stop,
                                 history=history, source=source)
            return
        base_in, instr_in = prepare_inputs(base, instruct, prompt, system, template_on_base, history, source)
        _check_length(base, base_in, params, len(history) + 1)
        _check_length(instruct, instr_in, params, len(history) + 1)
        if getattr(base, "remote", False) and not template_on_base:
            base_in.note = base_in.note or "server_raw"
        panes = (PaneState("base", base_spec.id, base_in, passages=given, context=_context(base)),
                 PaneState("instruct", instruct_spec.id, instr_in, passages=given, context=_context(instruct)))
        yield panes
        for updates in stream_many([(base, base_in), (instruct, instr_in)], params, top_probs=top_probs, stop=stop):
            panes[0].update, panes[1].update = updates
            yield panes


def _one_pane(base: LLMHandle | None, instruct: LLMHandle | None, base_spec: ModelSpec, instruct_spec: ModelSpec,
              error: UserError, prompt: str, params: SamplingParams, *, system: str, template_on_base: bool,
              top_probs: int, stop: threading.Event | None, history: Sequence[Turn] = (),
              source: SourcePlan | None = None) -> Iterator[tuple[PaneState, PaneState]]:
    """The role that loaded streams; the other pane shows why its model could not be used."""
    alive, alive_spec, failed_spec = (instruct, instruct_spec, base_spec) if base is None else (base, base_spec,
                                                                                               instruct_spec)
    chat = alive is instruct or (template_on_base and getattr(alive, "has_chat_template", False))
    alive_in = prepare_pane(alive, "instruct" if alive is instruct else "base", prompt, history, system, chat, source)
    _check_length(alive, alive_in, params, len(history) + 1)
    failed = PaneState("base" if base is None else "instruct", failed_spec.id, PreparedPrompt(text="", input_ids=[]),
                       StreamUpdate(finished=True, stop_reason="error", error=error))
    running = PaneState("instruct" if base is None else "base", alive_spec.id, alive_in,
                        passages=source.passages if source is not None else None, context=_context(alive))
    panes = (failed, running) if base is None else (running, failed)
    yield panes
    for (update,) in stream_many([(alive, alive_in)], params, top_probs=top_probs, stop=stop):
        running.update = update
        yield panes


def _with_without(manager: ModelManager, spec: ModelSpec, prompt: str, params: SamplingParams,
                  source: SourcePlan, *, system: str, history: Sequence[Turn], template_on_base: bool,
                  top_probs: int, stop: threading.Event | None, progress) -> Iterator[tuple[PaneState, PaneState]]:
    """One model, the same question: without the source (left pane), with it (right), one batch.
    The base model keeps its plain text unless it has a chat template of its own and the
    template was asked for (its instruct sibling's is not loaded here). In a conversation each
    pane continues its own side (the left one's answers are the ``base`` side of the turns)."""
    with manager.using(spec, _sub(progress, 0.0, 1.0, spec.id)) as handle:
        chat = source.role == "instruct" or (template_on_base and getattr(handle, "has_chat_template", False))
        plain = prepare_pane(handle, "base", prompt, history, system, chat)
        given = prepare_pane(handle, "instruct", prompt, history, system, chat, source)
        for prepared in (plain, given):
            _check_length(handle, prepared, params, len(history) + 1)
            if getattr(handle, "remote", False) and not chat:
                prepared.note = prepared.note or "server_raw"
        context = _context(handle)
        panes = (PaneState(source.role, spec.id, plain, context=context),
                 PaneState(source.role, spec.id, given, passages=source.passages, context=context))
        yield panes
        for updates in stream_many([(handle, plain), (handle, given)], params, top_probs=top_probs, stop=stop):
            panes[0].update, panes[1].update = updates
            yield panes


def _use(leases: ExitStack, manager: ModelManager, spec: ModelSpec,
         progress) -> tuple[LLMHandle | None, UserError | None]:
    """The role's model, leased until ``leases`` closes; or why it cannot be used."""
    try:
        return leases.enter_context(manager.using(spec, progress)), None
    except UserError as err:
        return None, err


def _check_length(handle: LLMHandle, prompt: PreparedPrompt, params: SamplingParams, turns: int = 1) -> None:
    """The model's context first (its message names the model), then this app's prompt budget.
    A conversation is measured whole: past either limit its message says so and what to do."""
    if turns > 1 and not getattr(handle, "remote", False):  # a server checks its own context
        limit = min(handle.context_length - params.max_new_tokens, current_limits().prompt_tokens)
        if limit > 0 and prompt.n_tokens > limit:
            raise UserError("bvi.err.conversation_too_long", tokens=prompt.n_tokens, turns=turns,
                            model=handle.spec.id, limit=limit, new=params.max_new_tokens)
    handle.check_length(prompt, params.max_new_tokens)
    limit = current_limits().prompt_tokens
    if prompt.n_tokens > limit:
        raise UserError("safety.err.prompt_tokens", tokens=prompt.n_tokens, limit=limit)


def _context(handle: LLMHandle) -> int:
    return 0 if getattr(handle, "remote", False) else int(handle.context_length)


def _sub(progress, lo: float, hi: float, name: str):
    if progress is None:
        return None
    return lambda frac, desc: progress(lo + (hi - lo) * frac, f"{name}: {desc}")
