"""Base vs instruct: the same prompt to two models, both decoded in one loop.

A role that cannot be loaded (an inference server down at first use, a model not in the
cache) costs only its own pane: the other one still streams.

With a source (``engine.retrieval.SourcePlan``) the retrieved passages go into the prompts: both
models get them (mode ``both``), or one model answers without them in the left pane and with
them in the right one (``with_without``), both rows in the same loop."""
from __future__ import annotations

import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from engine.catalog import ModelSpec
from engine.errors import UserError
from engine.generation import SamplingParams, StreamUpdate, stream_many
from engine.limits import current as current_limits
from engine.llm import LLMHandle, PreparedPrompt
from engine.models import ModelManager

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

    def as_dict(self) -> dict:
        u = self.update
        source = {} if self.passages is None else {"passages": [vars(p) for p in self.passages]}
        return {**source,
            "model": self.model, "input": self.prompt.text, "input_tokens": self.prompt.n_tokens,
            "templated": self.prompt.templated, "note": self.prompt.note, "output": u.text,
            "tokens": u.n_tokens, "ttft_s": round(u.ttft_s, 4) if u.ttft_s is not None else None,
            "tokens_per_s": round(u.tokens_per_s, 2), "seconds": round(u.elapsed_s, 3),
            "stop_reason": u.stop_reason,
            "error": getattr(u.error, "key", None) or (repr(u.error) if u.error else None),
        }


def prepare_inputs(base: LLMHandle, instruct: LLMHandle, prompt: str, system: str,
                   template_on_base: bool, source: SourcePlan | None = None) -> tuple[PreparedPrompt, PreparedPrompt]:
    """The base model gets the raw text, or, if asked, the chat template (its own, else the
    instruct sibling's, tokenized by the base tokenizer); the instruct model gets its template.
    A source's passages come first in the base's text, inside the user turn of a template."""
    messages = [{"role": "user", "content": source.chat(prompt) if source else prompt}]
    instr_in = instruct.prepare_chat(messages, system=system)
    if not template_on_base:
        return base.prepare_raw(source.document(prompt) if source else prompt), instr_in
    if getattr(base, "has_chat_template", False):
        return base.prepare_chat(messages, system=system), instr_in
    tok = getattr(base, "tokenizer", None)
    ids = list(tok(instr_in.text, add_special_tokens=False)["input_ids"]) if tok is not None else []
    return PreparedPrompt(text=instr_in.text, input_ids=ids, templated=True, note=instr_in.note), instr_in


def compare_stream(manager: ModelManager, base_spec: ModelSpec, instruct_spec: ModelSpec, prompt: str,
                   params: SamplingParams, *, system: str = "", template_on_base: bool = False,
                   top_probs: int = 0, stop: threading.Event | None = None,
                   progress: Callable[[float, str], None] | None = None,
                   source: SourcePlan | None = None) -> Iterator[tuple[PaneState, PaneState]]:
    if not prompt or not prompt.strip():
        raise UserError("err.empty_prompt")
    limits = current_limits()
    max_chars = min(MAX_PROMPT_CHARS, limits.prompt_chars)
    if len(prompt) > max_chars:
        raise UserError("err.prompt_too_many_chars", chars=len(prompt), limit=max_chars)
    if source is not None and source.mode == "with_without":
        spec = instruct_spec if source.role == "instruct" else base_spec
        yield from _with_without(manager, spec, prompt, params, source, system=system,
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
                                 source=source)
            return
        base_in, instr_in = prepare_inputs(base, instruct, prompt, system, template_on_base, source)
        _check_length(base, base_in, params)
        _check_length(instruct, instr_in, params)
        if getattr(base, "remote", False) and not template_on_base:
            base_in.note = base_in.note or "server_raw"
        panes = (PaneState("base", base_spec.id, base_in, passages=given),
                 PaneState("instruct", instruct_spec.id, instr_in, passages=given))
        yield panes
        for updates in stream_many([(base, base_in), (instruct, instr_in)], params, top_probs=top_probs, stop=stop):
            panes[0].update, panes[1].update = updates
            yield panes


def _one_pane(base: LLMHandle | None, instruct: LLMHandle | None, base_spec: ModelSpec, instruct_spec: ModelSpec,
              error: UserError, prompt: str, params: SamplingParams, *, system: str, template_on_base: bool,
              top_probs: int, stop: threading.Event | None,
              source: SourcePlan | None = None) -> Iterator[tuple[PaneState, PaneState]]:
    """The role that loaded streams; the other pane shows why its model could not be used."""
    alive, alive_spec, failed_spec = (instruct, instruct_spec, base_spec) if base is None else (base, base_spec,
                                                                                               instruct_spec)
    chat = alive is instruct or (template_on_base and getattr(alive, "has_chat_template", False))
    alive_in = _prepare_one(alive, chat, prompt, system, source)
    _check_length(alive, alive_in, params)
    failed = PaneState("base" if base is None else "instruct", failed_spec.id, PreparedPrompt(text="", input_ids=[]),
                       StreamUpdate(finished=True, stop_reason="error", error=error))
    running = PaneState("instruct" if base is None else "base", alive_spec.id, alive_in,
                        passages=source.passages if source is not None else None)
    panes = (failed, running) if base is None else (running, failed)
    yield panes
    for (update,) in stream_many([(alive, alive_in)], params, top_probs=top_probs, stop=stop):
        running.update = update
        yield panes


def _prepare_one(handle: LLMHandle, chat: bool, prompt: str, system: str,
                 source: SourcePlan | None) -> PreparedPrompt:
    """One model's input: its chat template around the (augmented) user turn, or the raw text."""
    if chat:
        return handle.prepare_chat([{"role": "user", "content": source.chat(prompt) if source else prompt}],
                                   system=system)
    return handle.prepare_raw(source.document(prompt) if source else prompt)


def _with_without(manager: ModelManager, spec: ModelSpec, prompt: str, params: SamplingParams,
                  source: SourcePlan, *, system: str, template_on_base: bool, top_probs: int,
                  stop: threading.Event | None, progress) -> Iterator[tuple[PaneState, PaneState]]:
    """One model, the same question: without the source (left pane), with it (right), one batch.
    The base model keeps its plain text unless it has a chat template of its own and the
    template was asked for (its instruct sibling's is not loaded here)."""
    with manager.using(spec, _sub(progress, 0.0, 1.0, spec.id)) as handle:
        chat = source.role == "instruct" or (template_on_base and getattr(handle, "has_chat_template", False))
        plain = _prepare_one(handle, chat, prompt, system, None)
        given = _prepare_one(handle, chat, prompt, system, source)
        for prepared in (plain, given):
            _check_length(handle, prepared, params)
            if getattr(handle, "remote", False) and not chat:
                prepared.note = prepared.note or "server_raw"
        panes = (PaneState(source.role, spec.id, plain), PaneState(source.role, spec.id, given,
                                                                   passages=source.passages))
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


def _check_length(handle: LLMHandle, prompt: PreparedPrompt, params: SamplingParams) -> None:
    """The model's context first (its message names the model), then this app's prompt budget."""
    handle.check_length(prompt, params.max_new_tokens)
    limit = current_limits().prompt_tokens
    if prompt.n_tokens > limit:
        raise UserError("safety.err.prompt_tokens", tokens=f"{prompt.n_tokens:,}", limit=f"{limit:,}")


def _sub(progress, lo: float, hi: float, name: str):
    if progress is None:
        return None
    return lambda frac, desc: progress(lo + (hi - lo) * frac, f"{name}: {desc}")
