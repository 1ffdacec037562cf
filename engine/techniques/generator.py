"""What a technique needs from a model (:class:`Generator`), and the real one over the engine.

Techniques never see a model: they talk to a :class:`Generator` — :class:`EngineGenerator` over
``engine.generation.generate_many`` in the app, a scripted one in the unit tests.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from engine.generation import SamplingParams

Messages = list[dict]


@dataclass
class Generation:
    """One generated sequence and the exact prompt it came from."""

    text: str
    n_tokens: int
    seconds: float
    stop_reason: str
    prompt_text: str
    prompt_tokens: int
    prompt_index: int = 0
    sample_index: int = 0
    note: str | None = None  # e.g. "system_merged" when the template has no system role


class Generator(Protocol):
    """What a technique needs from a model."""

    def render(self, messages: Messages) -> str:
        """The prompt text after the chat template (special tokens visible)."""

    def generate(self, prompts: Sequence[Messages], params: SamplingParams, n_per_prompt: int = 1,
                 stop: threading.Event | None = None) -> list[Generation]:
        """All prompts × ``n_per_prompt`` samples, prompt-major (prompt i, sample j at i·n + j)."""


def split_system(messages: Messages) -> tuple[str | None, Messages]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return (system or None), [m for m in messages if m["role"] != "system"]


class EngineGenerator:
    """The real generator: the handle's chat template, then one ``generate_many`` batch per call."""

    def __init__(self, handle, on_step: Callable[[int, int], None] | None = None,
                 on_wait: Callable[[int], None] | None = None, engine=None) -> None:
        self.handle = handle
        self.on_step = on_step
        self.on_wait = on_wait  # requests queued ahead of this call's, while it waits for memory
        self.engine = engine  # a DecodeEngine of its own (benchmarks); None: the process's shared one
        self.calls = 0

    def prepare(self, messages: Messages):
        system, turns = split_system(messages)
        return self.handle.prepare_chat(turns, system=system)

    def render(self, messages: Messages) -> str:
        return self.prepare(messages).text

    def generate(self, prompts: Sequence[Messages], params: SamplingParams, n_per_prompt: int = 1,
                 stop: threading.Event | None = None) -> list[Generation]:
        from engine.generation import generate_many

        prepared = [self.prepare(m) for m in prompts]
        self.calls += 1
        outs = generate_many(self.handle, prepared, params, n_per_prompt=n_per_prompt, stop=stop,
                             on_step=self.on_step, on_wait=self.on_wait, eng=self.engine)
        outs = sorted(outs, key=lambda o: (o.prompt_index, o.sample_index))
        return [Generation(text=o.text, n_tokens=o.n_tokens, seconds=o.seconds, stop_reason=o.stop_reason,
                           prompt_text=o.prompt.text, prompt_tokens=o.prompt.n_tokens, prompt_index=o.prompt_index,
                           sample_index=o.sample_index, note=o.prompt.note)
                for o in outs]
