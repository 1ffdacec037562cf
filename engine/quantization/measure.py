"""What part 3 measures on a loaded model: the perplexity of a passage, one greedy generation timed
on its own, and how far two outputs agree (its real memory: :func:`engine.models.memory.model_bytes`)."""
from __future__ import annotations

import logging
import math
import threading
from typing import Callable, Sequence

from engine.runtime.stopping import LinkedStop

# bitsandbytes logs this at every int8 matmul on CPU (fp32 activations): it says nothing new
logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)


def perplexity(handle, text: str) -> float:
    import torch

    ids = handle.prepare_raw(text).input_ids
    device = next(handle.model.parameters()).device
    t = torch.tensor([ids], device=device)
    with torch.inference_mode():
        loss = handle.model(input_ids=t, labels=t).loss
    return float(math.exp(float(loss)))


def agreement(reference: Sequence[int], ids: Sequence[int]) -> tuple[float, int | None]:
    """(% of positions with the same token, first position where they differ or None)."""
    n = max(len(reference), len(ids))
    if n == 0:
        return 100.0, None
    same = sum(a == b for a, b in zip(reference, ids))
    first = next((i for i, (a, b) in enumerate(zip(reference, ids)) if a != b), None)
    if first is None and len(reference) != len(ids):
        first = min(len(reference), len(ids))
    return 100.0 * same / n, first


def prompt_for(handle, text: str):
    if handle.has_chat_template:
        return handle.prepare_chat([{"role": "user", "content": text}])
    return handle.prepare_raw(text)


class Stopped(Exception):
    """The student pressed Stop: the variant being measured is dropped, the rows so far are kept."""


def run_greedy(handle, prompt_text: str, max_new_tokens: int, stop: threading.Event | None = None,
               on_token: Callable[[int], None] | None = None):
    """(token ids, text, ttft s, total s, tokens/s) of one greedy generation.

    Runs on a private inline engine: the timing is this model's alone (not shared with other
    users' rows), and nothing keeps a reference to the variant once it is freed. ``stop`` ends
    it after the current token (:class:`Stopped`); ``on_token(tokens so far)`` follows it.
    """
    from engine.generation import DecodeEngine, SamplingParams, stream
    params = SamplingParams(max_new_tokens=max_new_tokens, greedy=True, temperature=0.0)
    prompt = prompt_for(handle, prompt_text)
    last = None
    # stream() sets the event it is given when it ends: give it one of its own that also reads ours
    for last in stream(handle, prompt, params, stop=LinkedStop(stop), eng=DecodeEngine(background=False)):
        if last.error is not None:
            raise last.error
        if on_token:
            on_token(len(last.token_ids))
    if stop is not None and stop.is_set():
        raise Stopped()
    if last is None:
        return [], "", 0.0, 0.0, 0.0
    return list(last.token_ids), last.text, last.ttft_s or 0.0, last.elapsed_s, last.tokens_per_s
