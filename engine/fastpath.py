"""The fast single-user path: a static KV cache and a compiled decode step (CUDA graphs).

Plain eager decoding spends most of a batch-1 step in Python and kernel launches; with a
static cache the decode step has fixed shapes, so ``torch.compile(mode="reduce-overhead")``
captures it as a CUDA graph. The capture happens when the model loads (``prepare``), once per
cache-length bucket, never on a student's click. When a second request joins, the engine
converts the static cache to the dynamic one it batches with (``to_dynamic``).

Used on CUDA; elsewhere the engine's dynamic-cache loop runs (same tokens). Set
``GENAI_FAST_PATH=eager`` to run the static-cache path without compiling (tests, CPU),
``GENAI_FAST_PATH=off`` to disable it.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable

import torch

log = logging.getLogger(__name__)
BUCKETS = (1024, 4096)


def mode(device: str) -> str:
    """"compile" (CUDA), "eager" (forced, for tests) or "off".

    Never "compile" on ZeroGPU: it does not support ``torch.compile`` (each call runs in a
    short-lived forked worker, and the models are loaded before any GPU exists)."""
    from engine.zerogpu import on_zerogpu

    forced = os.environ.get("GENAI_FAST_PATH", "").lower()
    if on_zerogpu():
        return "eager" if forced == "eager" else "off"
    if forced in ("off", "eager", "compile"):
        return forced
    return "compile" if device == "cuda" else "off"


class StaticDecoder:
    """One static cache of ``bucket`` tokens for a batch of one, with its (compiled) step."""

    def __init__(self, model, bucket: int, compiled: bool) -> None:
        from transformers import StaticCache

        self.model = model
        self.bucket = bucket
        self.device = next(model.parameters()).device
        self.cache = StaticCache(config=model.config, max_cache_len=bucket)
        self.length = 0
        self.compiled = compiled
        self._step = torch.compile(self._forward, mode="reduce-overhead", fullgraph=True) if compiled else self._forward

    def _forward(self, input_ids: torch.Tensor, cache_position: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, position_ids=cache_position.unsqueeze(0), cache_position=cache_position,
                         cache=self.cache, use_cache=True)
        return out.logits[:, -1, :]

    @torch.inference_mode()
    def prefill(self, ids: list[int]) -> torch.Tensor:
        self.cache.reset()
        x = torch.tensor([ids], device=self.device)
        pos = torch.arange(len(ids), device=self.device)
        out = self.model(input_ids=x, position_ids=pos.unsqueeze(0), cache_position=pos,
                         cache=self.cache, use_cache=True, logits_to_keep=1)
        self.length = len(ids)
        return out.logits[:, -1, :]

    @torch.inference_mode()
    def decode(self, token: torch.Tensor) -> torch.Tensor:
        pos = torch.tensor([self.length], device=self.device)
        logits = self._step(token.view(1, 1), pos)
        self.length += 1
        return logits.clone()

    def to_dynamic(self):
        """The cache so far as a ``DynamicCache`` (to batch with newcomers)."""
        from transformers import DynamicCache

        dyn = DynamicCache()
        for layer in self.cache.layers:
            keys = layer.keys[:, :, : self.length].clone()
            values = layer.values[:, :, : self.length].clone()
            dyn.update(keys, values, len(dyn.layers))
        return dyn

    def fits(self, prompt_len: int, max_new_tokens: int) -> bool:
        return prompt_len + max_new_tokens <= self.bucket


class FastPath:
    """The static decoders of one model (one per bucket), warmed up at load time."""

    def __init__(self, model, compiled: bool) -> None:
        self.decoders = [StaticDecoder(model, b, compiled) for b in BUCKETS
                         if b <= getattr(model.config, "max_position_embeddings", 4096)]
        self.compiled = compiled
        self.warmup_seconds = 0.0

    def pick(self, prompt_len: int, max_new_tokens: int) -> StaticDecoder | None:
        return next((d for d in self.decoders if d.fits(prompt_len, max_new_tokens)), None)

    def warm_up(self, progress: Callable[[float, str], None] | None = None) -> None:
        started = time.perf_counter()
        for i, dec in enumerate(self.decoders):
            if progress:
                progress(i / max(1, len(self.decoders)), f"compiling the decode step ({dec.bucket} tokens)")
            logits = dec.prefill([1, 2, 3])
            token = logits.argmax(-1)
            for _ in range(3):  # compile, record the CUDA graph, replay once
                token = dec.decode(token).argmax(-1)
            dec.length = 0  # the next prefill resets the cache
        self.warmup_seconds = time.perf_counter() - started


def prepare(handle, progress: Callable[[float, str], None] | None = None) -> FastPath | None:
    """Build and warm up the fast path for a freshly loaded model, or None where it does not apply."""
    how = mode(handle.device)
    if how == "off":
        return None
    try:
        fast = FastPath(handle.model, compiled=how == "compile")
        fast.warm_up(progress)
    except Exception as exc:  # noqa: BLE001 - e.g. a quantized layer that does not compile: stay eager
        log.warning("fast path unavailable for %s: %s", handle.spec.id, exc)
        handle.extra["fast_path_error"] = f"{type(exc).__name__}: {exc}"[:200]
        return None
    handle.extra["fast_path"] = fast
    log.info("fast path ready for %s (%s, %.1f s)", handle.spec.id, how, fast.warmup_seconds)
    return fast
