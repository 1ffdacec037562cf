"""Base vs instruct: the same prompt to two models, both decoded in one loop."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

from engine.catalog import ModelSpec
from engine.errors import UserError
from engine.generation import SamplingParams, StreamUpdate, stream_many
from engine.llm import LLMHandle, PreparedPrompt
from engine.models import ModelManager

MAX_PROMPT_CHARS = 20_000


@dataclass
class PaneState:
    role: str
    model: str
    prompt: PreparedPrompt
    update: StreamUpdate = field(default_factory=StreamUpdate)

    def as_dict(self) -> dict:
        u = self.update
        return {
            "model": self.model, "input": self.prompt.text, "input_tokens": self.prompt.n_tokens,
            "templated": self.prompt.templated, "note": self.prompt.note, "output": u.text,
            "tokens": u.n_tokens, "ttft_s": round(u.ttft_s, 4) if u.ttft_s is not None else None,
            "tokens_per_s": round(u.tokens_per_s, 2), "seconds": round(u.elapsed_s, 3),
            "stop_reason": u.stop_reason,
            "error": getattr(u.error, "key", None) or (repr(u.error) if u.error else None),
        }


def prepare_inputs(base: LLMHandle, instruct: LLMHandle, prompt: str, system: str,
                   template_on_base: bool) -> tuple[PreparedPrompt, PreparedPrompt]:
    """The base model gets the raw text, or, if asked, the chat template (its own, else the
    instruct sibling's, tokenized by the base tokenizer); the instruct model gets its template."""
    messages = [{"role": "user", "content": prompt}]
    instr_in = instruct.prepare_chat(messages, system=system)
    if not template_on_base:
        return base.prepare_raw(prompt), instr_in
    if getattr(base, "has_chat_template", False):
        return base.prepare_chat(messages, system=system), instr_in
    tok = getattr(base, "tokenizer", None)
    ids = list(tok(instr_in.text, add_special_tokens=False)["input_ids"]) if tok is not None else []
    return PreparedPrompt(text=instr_in.text, input_ids=ids, templated=True, note=instr_in.note), instr_in


def compare_stream(manager: ModelManager, base_spec: ModelSpec, instruct_spec: ModelSpec, prompt: str,
                   params: SamplingParams, *, system: str = "", template_on_base: bool = False,
                   top_probs: int = 0, stop: threading.Event | None = None,
                   progress: Callable[[float, str], None] | None = None) -> Iterator[tuple[PaneState, PaneState]]:
    if not prompt or not prompt.strip():
        raise UserError("err.empty_prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UserError("err.prompt_too_many_chars", chars=len(prompt), limit=MAX_PROMPT_CHARS)
    base = manager.llm(base_spec, _sub(progress, 0.0, 0.5, base_spec.id))
    instruct = manager.llm(instruct_spec, _sub(progress, 0.5, 1.0, instruct_spec.id))
    base_in, instr_in = prepare_inputs(base, instruct, prompt, system, template_on_base)
    base.check_length(base_in, params.max_new_tokens)
    instruct.check_length(instr_in, params.max_new_tokens)
    if getattr(base, "remote", False) and not template_on_base:
        base_in.note = base_in.note or "server_raw"
    panes = (PaneState("base", base_spec.id, base_in), PaneState("instruct", instruct_spec.id, instr_in))
    yield panes
    for updates in stream_many([(base, base_in), (instruct, instr_in)], params, top_probs=top_probs, stop=stop):
        panes[0].update, panes[1].update = updates
        yield panes


def _sub(progress, lo: float, hi: float, name: str):
    if progress is None:
        return None
    return lambda frac, desc: progress(lo + (hi - lo) * frac, f"{name}: {desc}")
