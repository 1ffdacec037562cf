"""The fast single-user path: a static KV cache and a compiled decode step (CUDA graphs).

Plain eager decoding spends most of a batch-1 step in Python and kernel launches; with a
static cache the decode step has fixed shapes, so ``torch.compile(mode="reduce-overhead")``
captures it as a CUDA graph. The capture happens when the model loads (``prepare``), once per
cache-length bucket, never on a student's click. When a second request joins, the engine
copies the lone row into its batch cache.

The static caches belong to the model (they are prepared with it, and their bytes are booked
with it by the model cache), but a decoder is *leased* to one engine batch at a time
(``acquire``/``release``): two engines decoding the same model (the app's and the quantization
tab's private one) never write into the same static cache.

Used on CUDA; elsewhere the engine's dynamic-cache loop runs (same tokens). Set
``GENAI_FAST_PATH=eager`` to run the static-cache path without compiling (tests, CPU),
``GENAI_FAST_PATH=off`` to disable it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

import torch

from engine import forksafe

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
        self.leased = False
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

    @property
    def nbytes(self) -> int:
        """Bytes of the static cache (allocated by the warm-up's first prefill)."""
        return sum(t.nelement() * t.element_size() for layer in self.cache.layers
                   for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None)


class FastPath:
    """The static decoders of one model (one per bucket), warmed up at load time."""

    def __init__(self, model, compiled: bool) -> None:
        self.decoders = [StaticDecoder(model, b, compiled) for b in BUCKETS
                         if b <= getattr(model.config, "max_position_embeddings", 4096)]
        self.compiled = compiled
        self.warmup_seconds = 0.0
        self.pool_bytes = 0  # CUDA memory the warm-up kept beyond the static caches (graph pools)
        self._lock = threading.Lock()
        forksafe.renew(self)

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock, and no decoder leased (the parent's rows are not there)."""
        self._lock = threading.Lock()
        for d in self.decoders:
            d.leased = False

    def available(self, need_tokens: int) -> bool:
        with self._lock:
            return any(d.bucket >= need_tokens and not d.leased for d in self.decoders)

    def acquire(self, need_tokens: int) -> StaticDecoder | None:
        """The smallest free decoder with room for ``need_tokens`` positions, leased to the caller."""
        with self._lock:
            for d in self.decoders:
                if d.bucket >= need_tokens and not d.leased:
                    d.leased = True
                    return d
        return None

    def release(self, decoder: StaticDecoder) -> None:
        with self._lock:
            decoder.leased = False

    @property
    def nbytes(self) -> int:
        """What the fast path allocated: its static caches and, on CUDA, the graph pools."""
        return sum(d.nbytes for d in self.decoders) + self.pool_bytes

    def warm_up(self, progress: Callable[[float, str], None] | None = None) -> None:
        started = time.perf_counter()
        cuda = any(d.device.type == "cuda" for d in self.decoders)
        before = torch.cuda.memory_reserved() if cuda else 0
        for i, dec in enumerate(self.decoders):
            if progress:
                progress(i / max(1, len(self.decoders)), f"compiling the decode step ({dec.bucket} tokens)")
            logits = dec.prefill([1, 2, 3])
            token = logits.argmax(-1)
            for _ in range(3):  # compile, record the CUDA graph, replay once
                token = dec.decode(token).argmax(-1)
            dec.length = 0  # the next prefill resets the cache
        self.warmup_seconds = time.perf_counter() - started
        if cuda:
            grown = torch.cuda.memory_reserved() - before
            self.pool_bytes = max(0, grown - sum(d.nbytes for d in self.decoders))


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
