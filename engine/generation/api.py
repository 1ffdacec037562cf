"""What the tabs call: the process-wide engine, and streaming or batched generation on it.

A handle served by an inference server (``handle.remote``) starts its own request
(``handle.start_request``): the engine never imports the remote backend.

However a stream ends — finished, Stop, a closed page, an exception in the caller's code — its
requests are handed to :meth:`DecodeEngine.cancel`: on ZeroGPU (an inline engine driven by the
caller) that is what gives their model leases and KV caches back in the worker.
"""
from __future__ import annotations

import atexit
import threading
import time
from typing import Callable, Iterator, Sequence

from engine.runtime import forksafe
from engine.generation.admission import MemoryLedger
from engine.generation.loop import DecodeEngine
from engine.generation.types import Completion, Request, SamplingParams, StreamUpdate
from engine.models.llm import LLMHandle, PreparedPrompt

_engine: DecodeEngine | None = None
_inline = False
_memory: MemoryLedger | None = None


@forksafe.at_fork
def _after_fork() -> None:
    """A forked child makes its own engine (the parent's loop thread does not exist there)."""
    global _engine
    _engine = None


def engine() -> DecodeEngine:
    """The process-wide engine; in inline mode (ZeroGPU) a fresh one driven by the caller."""
    global _engine
    if _inline:
        return DecodeEngine(background=False, memory=_memory)
    if _engine is None:
        _engine = DecodeEngine(background=True, memory=_memory)
        atexit.register(_engine.close)
    return _engine


def set_inline(inline: bool) -> None:
    """ZeroGPU: the GPU exists only inside the request's ``@spaces.GPU`` call, so each request
    drives its own loop in its own thread (no cross-user batching there)."""
    global _inline
    _inline = inline


def set_memory(memory: MemoryLedger | None) -> None:
    """The ledger the engines book their KV caches with (the app's model manager). Call it
    before the first ``engine()``; an engine already running keeps its own."""
    global _memory
    _memory = memory


def submit_any(eng: DecodeEngine, handle, prompt: PreparedPrompt, params: SamplingParams, *, top_probs: int = 0,
               stop: threading.Event | None = None, notify: threading.Condition | None = None):
    """A local request to the engine, or a streamed request to the role's inference server."""
    if getattr(handle, "remote", False):
        return handle.start_request(prompt, params, top_probs=top_probs, stop=stop, notify=notify)
    return eng.submit(handle, prompt, params, top_probs=top_probs, stop=stop, notify=notify)


def _cancel(eng: DecodeEngine, reqs: Sequence) -> None:
    """End what the caller no longer waits for (requests to an inference server: just stopped)."""
    local = [r for r in reqs if isinstance(r, Request)]
    for r in reqs:
        if not isinstance(r, Request):
            r.cancel()
    eng.cancel(local)


def _raise_if_error(req: Request) -> None:
    if req.error is not None:
        raise req.error


def stream(handle: LLMHandle, prompt: PreparedPrompt, params: SamplingParams, *, top_probs: int = 0,
           stop: threading.Event | None = None, eng: DecodeEngine | None = None) -> Iterator[StreamUpdate]:
    """Generate for one prompt, yielding the state whenever it changed."""
    eng = eng or engine()
    req = submit_any(eng, handle, prompt, params, top_probs=top_probs, stop=stop)
    try:
        for _ in eng.wait([req]):
            _raise_if_error(req)
            yield req.update()
    finally:
        _cancel(eng, [req])  # a closed browser tab (GeneratorExit), an exception: the row is freed


def stream_many(jobs: Sequence[tuple[LLMHandle, PreparedPrompt]], params: SamplingParams, *,
                top_probs: int = 0, stop: threading.Event | None = None,
                eng: DecodeEngine | None = None) -> Iterator[list[StreamUpdate]]:
    """Several generations at once (e.g. base and instruct), all advanced by the same loop.

    A failing generation does not stop the others: its update carries ``error``."""
    eng = eng or engine()
    cond = threading.Condition()
    reqs = [submit_any(eng, h, p, params, top_probs=top_probs, stop=stop, notify=cond) for h, p in jobs]
    try:
        for _ in eng.wait(reqs, notify=cond):
            yield [r.update() for r in reqs]
    finally:
        _cancel(eng, reqs)


def generate_many(handle: LLMHandle, prompts: Sequence[PreparedPrompt], params: SamplingParams, *,
                  n_per_prompt: int = 1, stop: threading.Event | None = None,
                  on_step: Callable[[int, int], None] | None = None,
                  on_wait: Callable[[int], None] | None = None,
                  eng: DecodeEngine | None = None) -> list[Completion]:
    """All prompts × ``n_per_prompt`` samples, submitted at once so they decode as one batch.

    Sample ``j`` of a prompt uses seed ``params.seed + j`` (greedy samples are identical).
    ``on_step(done_rows, total_rows)`` is called whenever a row progressed; ``on_wait(ahead)``
    whenever the number of requests queued ahead of these ones changed.
    """
    if getattr(handle, "remote", False):
        return handle.generate_many(prompts, params, n_per_prompt, stop)
    eng = eng or engine()
    for p in prompts:
        handle.check_length(p, params.max_new_tokens)
    cond = threading.Condition()
    stop = stop or threading.Event()
    jobs = [(pi, sj) for pi in range(len(prompts)) for sj in range(n_per_prompt)]
    reqs = [eng.submit(handle, prompts[pi], params, seed=params.seed + sj, stop=stop, notify=cond) for pi, sj in jobs]
    ahead: int | None = None
    try:
        for _ in eng.wait(reqs, notify=cond):
            queued = [r.queue_position for r in reqs if r.queue_position is not None]
            now_ahead = min(queued) if queued else None
            if on_wait and now_ahead is not None and now_ahead != ahead:
                on_wait(now_ahead)
            ahead = now_ahead
            if on_step:
                on_step(sum(r.done for r in reqs), len(reqs))
    finally:
        _cancel(eng, reqs)
    for r in reqs:
        _raise_if_error(r)
    return [
        Completion(text=r.text(), n_tokens=len(r.generated), seconds=(r.finished_at or time.perf_counter()) - r.submitted,
                   stop_reason=r.reason or "stopped", prompt=prompts[pi], prompt_index=pi, sample_index=sj,
                   token_ids=list(r.generated))
        for r, (pi, sj) in zip(reqs, jobs)
    ]
