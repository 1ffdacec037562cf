"""The model cache: lazy, thread-safe loading with a memory budget and LRU eviction."""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from engine.catalog import Catalog, ModelSpec
from engine.errors import UserError, as_user_error
from engine.hardware import Hardware
from engine import memory

log = logging.getLogger(__name__)
ProgressFn = Callable[[float, str], None]


@dataclass
class Entry:
    spec: ModelSpec
    obj: Any
    bytes: int  # what the budget counts: weights + head-room
    loaded_at: float
    load_seconds: float
    weights: int = 0


class ModelManager:
    """One cache of loaded models for the whole app (every tab and every user).

    ``budget_bytes`` defaults to the hardware's budget (GPU memory, else 70% of RAM). Before
    loading, the estimate is checked against the budget: if the model cannot fit even alone,
    a :class:`UserError` says so and nothing is loaded; otherwise least-recently-used models
    are released until it fits.
    """

    def __init__(self, catalog: Catalog, hardware: Hardware, budget_bytes: int | None = None) -> None:
        self.catalog = catalog
        self.hardware = hardware
        self.budget = int(budget_bytes if budget_bytes is not None else hardware.memory_budget())
        self._entries: "OrderedDict[str, Entry]" = OrderedDict()
        self._lock = threading.RLock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._estimates: dict[str, int] = {}
        self.events: list[str] = []  # human-readable log of loads / evictions (About panel)

    @property
    def device(self) -> str:
        return self.hardware.device

    # ----------------------------------------------------------------- estimates
    def estimate_bytes(self, spec: ModelSpec) -> int:
        """Memory the model will take once loaded (weights + overhead), before loading it."""
        if spec.key in self._estimates:
            return self._estimates[spec.key]
        if spec.kind == "causal_lm":
            weights = self._causal_lm_weights(spec)
        else:
            from engine.imagegen import estimate_pipeline_bytes

            weights = estimate_pipeline_bytes(spec)
        total = weights + memory.load_overhead(weights, self.device)
        self._estimates[spec.key] = total
        return total

    def weights_estimate(self, spec: ModelSpec) -> int:
        """Weights only (what ``get_memory_footprint()`` measures), for causal LMs."""
        return self._causal_lm_weights(spec)

    def _causal_lm_weights(self, spec: ModelSpec) -> int:
        from transformers import AutoConfig

        from engine.llm import model_source, torch_dtype

        if spec.params_b and not spec.is_tiny:
            counts = memory.ParamCounts(quantizable=int(spec.params_b * 1e9 * 0.97), other=int(spec.params_b * 1e9 * 0.03))
        else:
            try:
                config = AutoConfig.from_pretrained(model_source(spec))
            except Exception as exc:  # noqa: BLE001
                raise (as_user_error(exc, spec.id) or exc) from exc
            counts = memory.param_counts(config)
        compute = torch_dtype(spec.precision, self.device).itemsize
        return memory.weight_bytes(counts, spec.precision, compute_bytes=compute)

    def check_fits(self, spec: ModelSpec) -> int:
        need = self.estimate_bytes(spec)
        if need > self.budget:
            raise UserError("err.too_big", model=spec.id, precision=spec.precision,
                            need_gb=need / 1e9, budget_gb=self.budget / 1e9, device=self.device.upper())
        return need

    # ------------------------------------------------------------------ loading
    def llm(self, spec: ModelSpec, progress: ProgressFn | None = None):
        """A loaded causal LM (``LLMHandle``), or a ``RemoteLLM`` if the role points at a server."""
        if spec.endpoint:
            from engine.remote import load_remote

            with self._lock:
                entry = self._entries.get(spec.key + "@remote")
            if entry is not None:
                return entry.obj
            handle = load_remote(spec)
            with self._lock:
                self._entries[spec.key + "@remote"] = Entry(spec, handle, 0, time.time(), 0.0)
            return handle
        from engine.llm import load_causal_lm

        return self._get(spec, lambda: load_causal_lm(spec, self.device, progress))

    def pipeline(self, spec: ModelSpec, progress: ProgressFn | None = None):
        from engine.imagegen import load_pipeline

        return self._get(spec, lambda: load_pipeline(spec, self.device, progress))

    def _get(self, spec: ModelSpec, load: Callable[[], Any]) -> Any:
        with self._lock:
            entry = self._entries.get(spec.key)
            if entry is not None:
                self._entries.move_to_end(spec.key)
                return entry.obj
            key_lock = self._key_locks.setdefault(spec.key, threading.Lock())
        with key_lock:  # two users asking for the same model load it once
            with self._lock:
                entry = self._entries.get(spec.key)
                if entry is not None:
                    self._entries.move_to_end(spec.key)
                    return entry.obj
            if spec.gated and not spec.is_tiny and not _has_token():
                raise UserError("err.gated", model=spec.id)
            need = self.check_fits(spec)
            self._make_room(need, keep=spec.key)
            started = time.perf_counter()
            try:
                obj = load()
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise (as_user_error(exc, spec.id) or exc) from exc
            seconds = time.perf_counter() - started
            weights = _measured_bytes(obj)
            measured = weights + memory.load_overhead(weights, self.device) if weights else need
            with self._lock:
                self._entries[spec.key] = Entry(spec, obj, measured, time.time(), seconds, weights)
                self.events.append(f"loaded {spec.id} ({spec.precision}) in {seconds:.1f} s, {weights / 1e9:.2f} GB of weights")
            log.info("loaded %s in %.1fs", spec.key, seconds)
            return obj

    def used_bytes(self) -> int:
        with self._lock:
            return sum(e.bytes for e in self._entries.values())

    def _make_room(self, need: int, keep: str) -> None:
        with self._lock:
            while self._entries and self.used_bytes() + need > self.budget:
                key, entry = next(iter(self._entries.items()))
                if key == keep:
                    break
                self._drop(key)
                self.events.append(f"evicted {entry.spec.id} ({entry.spec.precision}) to make room")

    def release(self, spec: ModelSpec) -> None:
        with self._lock:
            if spec.key in self._entries:
                self._drop(spec.key)

    def clear(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._drop(key)

    def _drop(self, key: str) -> None:
        self._entries.pop(key, None)
        memory.free_memory()

    def is_loaded(self, spec: ModelSpec) -> bool:
        with self._lock:
            return spec.key in self._entries

    def status(self) -> list[dict]:
        with self._lock:
            return [
                {"model": e.spec.id, "precision": e.spec.precision, "role": e.spec.role,
                 "gb": round(e.bytes / 1e9, 3), "weights_gb": round(e.weights / 1e9, 3),
                 "load_seconds": round(e.load_seconds, 2),
                 "fast_path": _fast_path_status(e.obj)}
                for e in self._entries.values()
            ]


def _fast_path_status(obj: Any) -> str:
    extra = getattr(obj, "extra", None) or {}
    fast = extra.get("fast_path")
    if fast is not None:
        kind = "compiled decode step (CUDA graphs)" if fast.compiled else "static cache, eager"
        buckets = "/".join(str(d.bucket) for d in fast.decoders)
        return f"{kind}, buckets {buckets} tokens, prepared at load in {fast.warmup_seconds:.1f} s"
    if extra.get("fast_path_error"):
        return "plain decoding (fast path failed: " + extra["fast_path_error"] + ")"
    return "plain decoding" if hasattr(obj, "model") else ""


def _has_token() -> bool:
    import os

    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    try:
        from huggingface_hub import get_token

        return bool(get_token())
    except Exception:  # noqa: BLE001
        return False


def _measured_bytes(obj: Any) -> int:
    model = getattr(obj, "model", None)
    footprint = getattr(obj, "footprint_bytes", 0)
    if footprint:
        return int(footprint)
    if model is not None and hasattr(model, "get_memory_footprint"):
        return int(model.get_memory_footprint())
    if hasattr(obj, "components"):  # a diffusers pipeline: what sits on the GPU, not what is offloaded
        from engine.imagegen import gpu_resident_bytes

        return gpu_resident_bytes(obj)
    return 0
