"""The model cache: lazy, thread-safe loading with a memory budget and LRU eviction.

Models in use are never evicted (see :mod:`engine.models.leases`): a request decoding on a model, an
image being generated, a caller inside ``using(spec)``. A load reserves its estimate under the
lock before it starts, so two users loading different models cannot both pass the budget
check; when nothing can be evicted the load waits (bounded) for a model to be released, and
says so if it times out. While a load waits for room, users of other models that hold
nothing yet wait behind it, so the GPU is handed over instead of being kept by a stream of
newcomers. The decode engine books its KV caches here too (``set_reserved``).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from engine.runtime import forksafe
from engine.models import leases
from engine.models import memory
from engine.models.catalog import Catalog, ModelSpec
from engine.errors import UserError, as_user_error
from engine.models.hardware import Hardware

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

    def __init__(self, catalog: Catalog, hardware: Hardware, budget_bytes: int | None = None,
                 wait_s: float | None = None) -> None:
        self.catalog = catalog
        self.hardware = hardware
        self.budget = int(budget_bytes if budget_bytes is not None else hardware.memory_budget())
        self.wait_s = float(os.environ.get("GENAI_LOAD_WAIT_S", 120) if wait_s is None else wait_s)
        self._entries: "OrderedDict[str, Entry]" = OrderedDict()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._key_locks: dict[str, threading.Lock] = {}
        self._estimates: dict[str, int] = {}
        self._pinned: set[str] = set()  # never evicted (on ZeroGPU: placed on CUDA at start-up)
        self._reserved: dict[str, int] = {}  # loads in progress, engine KV caches, in-place quantization runs
        self._waiting_loads: list[object] = []  # tickets of loads waiting for room, oldest first
        self.peak_bytes = 0  # the most ever booked at once (entries + reservations)
        self._dropped = False  # models were dropped since memory was last collected
        self.loads = 0  # models loaded so far (counters, not a log: memory stays flat over a day)
        self.evictions = 0  # models evicted to make room
        forksafe.renew(self)  # a forked ZeroGPU worker must not inherit a lock held by another thread

    def _after_fork(self) -> None:
        """In a forked child: fresh locks; the parent's loads in progress, engine caches and waiting
        loads belong to its threads, which the child does not have."""
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._key_locks = {}
        self._reserved = {}
        self._waiting_loads = []

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
            from engine.images.imagegen import estimate_pipeline_bytes

            weights = estimate_pipeline_bytes(spec)
        total = weights + memory.load_overhead(weights, self.device) + self.fast_path_estimate(spec)
        self._estimates[spec.key] = total
        return total

    def fast_path_estimate(self, spec: ModelSpec) -> int:
        """The static caches (and, compiled, the CUDA-graph pool) the fast path allocates when this
        model loads: booked before loading, like the weights (0 where there is no fast path)."""
        from engine.models import fastpath
        from engine.models.llm import torch_dtype

        how = fastpath.mode(self.device, zerogpu=self.hardware.zerogpu)
        if spec.kind != "causal_lm" or how == "off":
            return 0
        config = self._config(spec)
        buckets = fastpath.buckets_for(config, spec.fast_path_buckets)
        compute = torch_dtype(spec.precision, self.device).itemsize
        return memory.fast_path_bytes(config, compute, buckets, compiled=how == "compile")

    def _config(self, spec: ModelSpec):
        from transformers import AutoConfig

        from engine.models.llm import model_source

        try:
            return AutoConfig.from_pretrained(model_source(spec))
        except Exception as exc:  # noqa: BLE001
            raise (as_user_error(exc, spec.id) or exc) from exc

    def weights_estimate(self, spec: ModelSpec) -> int:
        """Weights only (what ``get_memory_footprint()`` measures), for causal LMs."""
        return self._causal_lm_weights(spec)

    def _causal_lm_weights(self, spec: ModelSpec) -> int:
        from engine.models.llm import torch_dtype

        if spec.params_b and not spec.is_tiny:
            counts = memory.ParamCounts(quantizable=int(spec.params_b * 1e9 * 0.97), other=int(spec.params_b * 1e9 * 0.03))
        else:
            counts = memory.param_counts(self._config(spec))
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
            return self._remote(spec)
        return self._get(spec, self._loader(spec, progress))

    def pipeline(self, spec: ModelSpec, progress: ProgressFn | None = None):
        return self._get(spec, self._loader(spec, progress))

    def _loader(self, spec: ModelSpec, progress: ProgressFn | None) -> Callable[[], Any]:
        if spec.kind == "causal_lm":
            from engine.models.llm import load_causal_lm

            return lambda: load_causal_lm(spec, self.device, progress)
        from engine.images.imagegen import load_pipeline

        return lambda: load_pipeline(spec, self.device, progress)

    def _remote(self, spec: ModelSpec):
        from engine.remote.client import load_remote

        with self._lock:
            entry = self._entries.get(spec.key + "@remote")
        if entry is not None:
            return entry.obj
        handle = load_remote(spec)
        with self._lock:
            self._entries[spec.key + "@remote"] = Entry(spec, handle, 0, time.time(), 0.0)
        return handle

    def _get(self, spec: ModelSpec, load: Callable[[], Any], owner: object | None = None) -> Any:
        """The loaded object (loading it if needed); with ``owner``, leased to it before it is returned."""
        self._wait_behind_loads(spec.key)
        with self._lock:
            obj = self._hand_out(spec.key, owner)
            if obj is not None:
                return obj
            key_lock = self._key_locks.setdefault(spec.key, threading.Lock())
        with key_lock:  # two users asking for the same model load it once
            with self._lock:
                obj = self._hand_out(spec.key, owner)
                if obj is not None:
                    return obj
            if spec.gated and not spec.is_tiny and not has_token():
                raise UserError("err.gated", model=spec.id)
            need = self.check_fits(spec)
            self._claim(spec, need)
            started = time.perf_counter()
            try:
                obj = load()
                seconds = time.perf_counter() - started
                weights = _measured_bytes(obj)
                measured = weights + memory.load_overhead(weights, self.device) if weights else need
                measured += _fast_path_bytes(obj)
            except BaseException as exc:
                with self._lock:
                    self._reserved.pop(_load_key(spec.key), None)
                    self._changed.notify_all()
                if isinstance(exc, UserError) or not isinstance(exc, Exception):
                    raise
                raise (as_user_error(exc, spec.id) or exc) from exc
            with self._lock:  # the reservation becomes the entry in one step: no moment counts neither
                self._reserved.pop(_load_key(spec.key), None)
                self._evict_until(measured, keep=spec.key)  # it came out bigger than estimated
                self._entries[spec.key] = Entry(spec, obj, measured, time.time(), seconds, weights)
                self._note_usage()
                self.loads += 1
                if owner is not None:
                    leases.acquire(obj, owner)
            self._free_dropped()
            log.info("loaded %s in %.1f s, %.2f GB of weights", spec.key, seconds, weights / 1e9)
            return obj

    def pin(self, spec: ModelSpec) -> None:
        """Keep a loaded model for good: eviction skips it (the ZeroGPU start-up preload)."""
        with self._lock:
            self._pinned.add(spec.key)

    def is_pinned(self, spec: ModelSpec) -> bool:
        return spec.key in self._pinned


    @contextmanager
    def using(self, spec: ModelSpec, progress: ProgressFn | None = None) -> Iterator[Any]:
        """``with manager.using(spec) as model:`` loaded if needed, never evicted until the block ends."""
        if spec.endpoint:  # served elsewhere: nothing to keep in memory here
            yield self._remote(spec)
            return
        owner = leases.thread_owner()
        obj = self._get(spec, self._loader(spec, progress), owner)
        try:
            yield obj
        finally:
            leases.release(obj, owner)
            with self._lock:
                self._changed.notify_all()

    @contextmanager
    def reservation(self, owner: str, nbytes: int, model: str = "") -> Iterator[None]:
        """Book ``nbytes`` for work done outside the cache (a model quantized in place): waits for
        room like a load does, evicting models nobody uses."""
        self._claim_bytes(_reserve_key(owner), nbytes, model or owner)
        try:
            yield
        finally:
            with self._lock:
                self._reserved.pop(_reserve_key(owner), None)
                self._changed.notify_all()

    def in_use(self, spec: ModelSpec) -> bool:
        with self._lock:
            entry = self._entries.get(spec.key)
            return entry is not None and leases.in_use(entry.obj)

    def _hand_out(self, key: str, owner: object | None) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        if owner is not None:
            leases.acquire(entry.obj, owner)
        return entry.obj

    def _wait_behind_loads(self, key: str) -> None:
        """While another model's load waits for room, newcomers that hold nothing wait too
        (bounded): the models in use get released and the GPU changes hands."""
        me = leases.thread_owner()
        deadline = time.monotonic() + self.wait_s
        with self._lock:
            while (self._waiting_loads and key in self._entries and time.monotonic() < deadline
                   and not any(leases.held_by(e.obj, me) for e in self._entries.values())):
                self._changed.wait(0.05)

    # ------------------------------------------------------------------ memory
    def used_bytes(self) -> int:
        with self._lock:
            return sum(e.bytes for e in self._entries.values()) + sum(self._reserved.values())

    def free_bytes(self) -> int:
        """What a reservation could get now: the free budget plus the models nobody uses."""
        with self._lock:
            evictable = sum(e.bytes for k, e in self._entries.items() if k not in self._pinned and not leases.in_use(e.obj))
            return max(0, self.budget - self.used_bytes() + evictable)

    def most_bytes(self, keep: Any = None) -> int:
        """The most reservations could ever get while the loaded object ``keep`` stays: the budget
        less the pinned models and ``keep`` (everything else can leave: loads and jobs end, models
        in use are released, unused ones evicted). What "can this request ever fit" is judged by."""
        with self._lock:
            staying = sum(e.bytes for k, e in self._entries.items() if k in self._pinned or e.obj is keep)
            return max(0, self.budget - staying)

    def set_reserved(self, owner: str, nbytes: int) -> bool:
        """The engine's KV caches: reserve (evicting unused models if needed) or release; False if
        ``nbytes`` cannot fit. A reservation that does not grow is always accepted."""
        key = _reserve_key(owner)
        try:
            with self._lock:
                current = self._reserved.get(key, 0)
                if nbytes > current:
                    self._evict_until(nbytes - current, keep=None)
                    if self.used_bytes() - current + nbytes > self.budget:
                        return False
                if nbytes:
                    self._reserved[key] = nbytes
                else:
                    self._reserved.pop(key, None)
                self._note_usage()
                self._changed.notify_all()
                return True
        finally:
            self._free_dropped()

    def _claim(self, spec: ModelSpec, need: int) -> None:
        self._claim_bytes(_load_key(spec.key), need, spec.id, keep=spec.key)

    def _claim_bytes(self, key: str, need: int, model: str, keep: str | None = None) -> None:
        """Reserve ``need`` bytes under the lock, evicting unused models; wait (bounded) while the
        models in use leave no room, first come first served."""
        me = leases.thread_owner()
        ticket = object()
        deadline = time.monotonic() + self.wait_s
        try:
            self._claim_locked(key, need, model, keep, me, ticket, deadline)
        finally:
            self._free_dropped()  # the evicted models' memory is back before the caller allocates

    def _claim_locked(self, key: str, need: int, model: str, keep: str | None, me: object, ticket: object,
                      deadline: float) -> None:
        with self._lock:
            try:
                while True:
                    first = not self._waiting_loads or self._waiting_loads[0] is ticket
                    if first:
                        self._evict_until(need, keep=keep)
                        if self.used_bytes() + need <= self.budget:
                            self._reserved[key] = need
                            self._note_usage()
                            return
                        if self._pinned_by(me, need):
                            raise UserError("engine.err_memory_pinned", model=model, need_gb=need / 1e9,
                                            budget_gb=self.budget / 1e9)
                    if time.monotonic() >= deadline:
                        busy = ", ".join(e.spec.id for e in self._entries.values() if leases.in_use(e.obj))
                        raise UserError("engine.err_memory_busy", model=model, need_gb=need / 1e9,
                                        busy=busy or "—", seconds=round(self.wait_s))
                    if ticket not in self._waiting_loads:
                        self._waiting_loads.append(ticket)
                        log.info("%s waits for memory held by models in use", model)
                    self._changed.wait(0.05)
            finally:
                if ticket in self._waiting_loads:
                    self._waiting_loads.remove(ticket)
                self._changed.notify_all()

    def _pinned_by(self, owner: object, need: int) -> bool:
        """Waiting is futile when the models the caller itself holds leave no room for ``need``."""
        mine = sum(e.bytes for e in self._entries.values() if leases.held_by(e.obj, owner))
        return mine > 0 and mine + need > self.budget

    def _evict_until(self, need: int, keep: str | None) -> None:
        """Drop least-recently-used models nobody uses until ``need`` more bytes fit."""
        for key, entry in list(self._entries.items()):
            if self.used_bytes() + need <= self.budget:
                return
            if key == keep or key in self._pinned or leases.in_use(entry.obj):
                continue
            self._drop(key)
            self.evictions += 1
            log.info("evicted %s (%s) to make room", entry.spec.id, entry.spec.precision)

    def _note_usage(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self.used_bytes())

    def release(self, spec: ModelSpec) -> bool:
        """Drop a model from the cache, unless someone is using it (then it stays; False)."""
        with self._lock:
            entry = self._entries.get(spec.key)
            dropped = entry is not None and spec.key not in self._pinned and not leases.in_use(entry.obj)
            if dropped:
                self._drop(spec.key)
        self._free_dropped()
        return dropped

    def clear(self) -> None:
        """Drop every model nobody is using."""
        with self._lock:
            for key, entry in list(self._entries.items()):
                if key not in self._pinned and not leases.in_use(entry.obj):
                    self._drop(key)
        self._free_dropped()

    def _drop(self, key: str) -> None:
        self._entries.pop(key, None)
        self._dropped = True
        self._changed.notify_all()

    def _free_dropped(self) -> None:
        """Collect what dropped models leave behind, outside the lock (it takes a while, and the
        decode loop books its caches under the same lock)."""
        if self._dropped:
            self._dropped = False
            memory.free_memory()

    def is_loaded(self, spec: ModelSpec) -> bool:
        with self._lock:
            return spec.key in self._entries

    def status(self) -> list[dict]:
        with self._lock:
            return [
                {"model": e.spec.id, "precision": e.spec.precision, "role": e.spec.role,
                 "gb": round(e.bytes / 1e9, 3), "weights_gb": round(e.weights / 1e9, 3),
                 "load_seconds": round(e.load_seconds, 2), "in_use": leases.count(e.obj),
                 "decoding": decoding_state(e.obj)}
                for e in self._entries.values()
            ]


def _load_key(key: str) -> str:
    return f"load:{key}"


def _reserve_key(owner: str) -> str:
    return f"reserved:{owner}"


def _fast_path_bytes(obj: Any) -> int:
    """What the fast path allocated after the weights (static caches, CUDA-graph pools)."""
    fast = (getattr(obj, "extra", None) or {}).get("fast_path")
    return int(fast.nbytes) if fast is not None else 0


def decoding_state(obj: Any) -> dict:
    """How a loaded model decodes, as data (the UI words it in each language): ``kind`` is
    ``compiled``, ``static``, ``plain``, ``failed`` or ``""`` (not an LLM); a ``static`` one
    whose compiled step was given up at load time says why in ``fallback``."""
    extra = getattr(obj, "extra", None) or {}
    fast = extra.get("fast_path")
    if fast is not None:
        return {"kind": "compiled" if fast.compiled else "static", "buckets": [d.bucket for d in fast.decoders],
                "warmup_s": round(fast.warmup_seconds, 1), "fallback": getattr(fast, "fallback", None) or "",
                "fallback_stage": getattr(fast, "fallback_stage", None) or ""}
    if extra.get("fast_path_error"):
        return {"kind": "failed", "error": extra["fast_path_error"]}
    return {"kind": "plain" if hasattr(obj, "model") else ""}


def has_token() -> bool:
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
        from engine.images.imagegen import gpu_resident_bytes

        return gpu_resident_bytes(obj)
    return 0
