"""The fast single-user path: a static KV cache and a compiled decode step (CUDA graphs).

Plain eager decoding spends most of a batch-1 step in Python and kernel launches; with a
static cache the decode step has fixed shapes, so ``torch.compile(mode="reduce-overhead")``
captures it as a CUDA graph. The capture happens when the model loads (``prepare``), once per
cache-length bucket, never on a student's click. When a second request joins, the engine
copies the lone row into its batch cache.

**One thread compiles, captures and replays.** torch keeps CUDA-graph trees per thread
(``torch/_inductor/cudagraph_trees.py``: a ``threading.local``): a graph recorded in one thread
is recorded again, in a new memory pool, the first time another thread calls it. So a compiled
fast path owns one thread (:class:`Replayer`) that runs its warm-up at load time and every
prefill and decode step afterwards, whoever asks: the app's decode loop, the quantization
tab's private engine driven by a request's thread, a benchmark. The callers wait for the step
(they would wait for the GPU anyway); the app's loop is never blocked by a compile.

**A compiled step that cannot be trusted is not used.** At load time, in that thread, each
bucket's step is compiled (its first call), captured (its second call) and replayed, and its
logits are compared with the eager step's on the same tokens (the first-step check). If the
compile raises, the capture raises, a replay raises or a token differs, the model falls back to
the eager static path (same caches, no graph): the reason is logged, kept in ``fallback`` and
shown in the About tab, and requests are served as usual. On CPU the tests force each failure
through the one place the compiled step comes from, ``torch.compile`` (see
``tests/test_fast_path_fallback.py``); ``GENAI_FAST_PATH_FAULT=compile|capture|check`` does the
same in a running app (a test hook: the compiled step raises on its first or second call, or
returns other logits), to see the fallback end to end, on a GPU too.

The static caches belong to the model (they are prepared with it, and their bytes are booked
with it by the model cache, in the estimate made before loading: :func:`engine.models.memory.fast_path_bytes`),
but a decoder is *leased* to one engine batch at a time (``acquire``/``release``): two engines
decoding the same model (the app's and the quantization tab's private one) never write into the
same static cache.

Used on CUDA; elsewhere the engine's dynamic-cache loop runs (same tokens). Set
``GENAI_FAST_PATH=eager`` to run the static-cache path without compiling (tests, CPU),
``GENAI_FAST_PATH=compile`` to compile anywhere (inductor on CPU), ``GENAI_FAST_PATH=off`` to
disable it.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
import weakref
from concurrent.futures import Future
from typing import Any, Callable, Sequence

import torch

from engine.runtime import forksafe

log = logging.getLogger(__name__)
BUCKETS = (1024, 4096)
PROBE = (1, 2, 3, 4)  # the prompt of the warm-up and of the first-step check (token ids)
CHECK_STEPS = 4  # decode steps compared: compile, capture, then replays
TIE_EPS = 8  # a differing token still agrees when the eager logits tie within this many ulps of the largest
FAULT_ENV = "GENAI_FAST_PATH_FAULT"  # test hook: compile | capture | check makes that stage fail


class FastPathFailure(Exception):
    """Why the compiled step is not used: ``stage`` is compile, capture, replay or check."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage, self.detail = stage, detail


def mode(device: str, zerogpu: bool = False) -> str:
    """"compile" (CUDA), "eager" (forced, for tests) or "off".

    Never "compile" on ZeroGPU (``zerogpu``, or a Space's environment): it does not support
    ``torch.compile`` (each call runs in a short-lived forked worker, and the models are loaded
    before any GPU exists)."""
    from engine.runtime.zerogpu import on_zerogpu

    forced = os.environ.get("GENAI_FAST_PATH", "").lower()
    if zerogpu or on_zerogpu():
        return "eager" if forced == "eager" else "off"
    if forced in ("off", "eager", "compile"):
        return forced
    return "compile" if device == "cuda" else "off"


def buckets_for(config, wanted: Sequence[int] | None = None) -> tuple[int, ...]:
    """The static-cache lengths prepared for a model: ``wanted`` (a profile's choice) or
    :data:`BUCKETS`, those that fit its context."""
    limit = int(getattr(config, "max_position_embeddings", None) or 4096)
    return tuple(b for b in (wanted or BUCKETS) if b <= limit)


# ------------------------------------------------------------------------------------ the thread
def _serve(jobs: "queue.SimpleQueue") -> None:
    """The replay thread's loop: run each job, hand back its result; ``None`` ends it."""
    while True:
        job = jobs.get()
        if job is None:
            return
        fn, args, future = job
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - the caller re-raises it in its own thread
            future.set_exception(exc)
        del job, fn, args, future  # hold nothing (a model) while waiting for the next job


class Replayer:
    """The one thread that compiles, captures and replays one model's CUDA graphs."""

    def __init__(self, name: str) -> None:
        self._jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        self._thread = threading.Thread(target=_serve, args=(self._jobs,), name=f"fast-path {name}", daemon=True)
        self._thread.start()
        self.pid = os.getpid()
        self._stop = weakref.finalize(self, self._jobs.put, None)  # the thread ends with its fast path

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def alive(self) -> bool:
        """False in a forked child (threads do not survive a fork) or once closed."""
        return os.getpid() == self.pid and self._thread.is_alive() and self._stop.alive

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if threading.get_ident() == self.ident:
            return fn(*args)
        if not self.alive():
            raise RuntimeError("the fast path's replay thread is gone (a forked process?)")
        future: Future = Future()
        self._jobs.put((fn, args, future))
        return future.result()

    def close(self) -> None:
        self._stop()


# ------------------------------------------------------------------------------------ decoders
class StaticDecoder:
    """One static cache of ``bucket`` tokens for a batch of one, with its (compiled) step.

    ``prefill`` and ``decode`` run in the fast path's replay thread when it has one."""

    def __init__(self, model, bucket: int, replayer: Replayer | None = None) -> None:
        from transformers import StaticCache

        self.model = model
        self.bucket = bucket
        self.device = next(model.parameters()).device
        self.cache = StaticCache(config=model.config, max_cache_len=bucket)
        self.length = 0
        self.leased = False
        self.replayer = replayer
        self._compiled_step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    @property
    def compiled(self) -> bool:
        return self._compiled_step is not None

    def _forward(self, input_ids: torch.Tensor, cache_position: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, position_ids=cache_position.unsqueeze(0), cache_position=cache_position,
                         cache=self.cache, use_cache=True)
        return out.logits[:, -1, :]

    def compile(self) -> None:
        """Compile the decode step (``torch.compile`` is lazy: the first call compiles)."""
        self._compiled_step = injected_fault(torch.compile(self._forward, mode="reduce-overhead", fullgraph=True))

    def uncompile(self) -> None:
        self._compiled_step = None

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.replayer.call(fn, *args) if self.replayer is not None else fn(*args)

    def prefill(self, ids: Sequence[int]) -> torch.Tensor:
        return self._run(self._prefill, list(ids))

    def decode(self, token: torch.Tensor) -> torch.Tensor:
        return self._run(self._decode, token)

    @torch.inference_mode()
    def _prefill(self, ids: list[int]) -> torch.Tensor:
        self.cache.reset()
        x = torch.tensor([ids], device=self.device)
        pos = torch.arange(len(ids), device=self.device)
        out = self.model(input_ids=x, position_ids=pos.unsqueeze(0), cache_position=pos,
                         cache=self.cache, use_cache=True, logits_to_keep=1)
        self.length = len(ids)
        return out.logits[:, -1, :]

    @torch.inference_mode()
    def _decode(self, token: torch.Tensor) -> torch.Tensor:
        pos = torch.tensor([self.length], device=self.device)
        logits = (self._compiled_step or self._forward)(token.to(self.device).view(1, 1), pos)
        self.length += 1
        return logits.clone()  # a CUDA graph's output is overwritten by its next replay

    @torch.inference_mode()
    def probe(self, steps: int, forced: list[int] | None = None,
              on_step: Callable[[int], None] | None = None) -> tuple[list[int], list[torch.Tensor]]:
        """Greedy tokens and logits of ``steps`` decode steps after :data:`PROBE` (in this thread).

        ``forced``: the tokens another run chose, fed instead of this run's own (the check feeds
        both steps the same tokens, so one near-tie does not make every later step differ)."""
        vocab = int(self.model.config.vocab_size)
        logits = self._prefill([t % vocab for t in PROBE])
        token = logits.argmax(-1)
        tokens, seen = [], []
        for i in range(steps):
            if on_step is not None:
                on_step(i)
            if forced is not None and i:
                token = torch.tensor([forced[i - 1]], device=self.device)
            logits = self._decode(token).float()
            token = logits.argmax(-1)
            tokens.append(int(token))
            seen.append(logits)
        self.length = 0  # the next prefill resets the cache
        return tokens, seen

    @property
    def nbytes(self) -> int:
        """Bytes of the static cache (allocated by the warm-up's first prefill)."""
        return sum(t.nelement() * t.element_size() for layer in self.cache.layers
                   for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None)


class FastPath:
    """The static decoders of one model (one per bucket), warmed up at load time."""

    def __init__(self, model, compiled: bool, buckets: Sequence[int] | None = None, name: str = "") -> None:
        self.replayer = Replayer(name or type(model).__name__) if compiled else None
        self.decoders = [StaticDecoder(model, b, self.replayer) for b in buckets_for(model.config, buckets)]
        self.compiled = compiled
        self.fallback: str | None = None  # why the compiled step was given up for the eager one
        self.fallback_stage: str | None = None  # compile | capture | replay | check
        self.warmup_seconds = 0.0
        self.pool_bytes = 0  # CUDA memory the warm-up kept beyond the static caches (graph pools)
        self._lock = threading.Lock()
        forksafe.renew(self)

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock, and no decoder leased (the parent's rows are not there)."""
        self._lock = threading.Lock()
        for d in self.decoders:
            d.leased = False

    def usable(self) -> bool:
        """A compiled fast path only runs in its replay thread, which a forked process lacks."""
        return self.replayer is None or self.replayer.alive()

    def available(self, need_tokens: int) -> bool:
        with self._lock:
            return self.usable() and any(d.bucket >= need_tokens and not d.leased for d in self.decoders)

    def acquire(self, need_tokens: int) -> StaticDecoder | None:
        """The smallest free decoder with room for ``need_tokens`` positions, leased to the caller."""
        if not self.usable():
            return None
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
        """Prefill and decode once per bucket; compiled, in the replay thread: compile, capture,
        replay and check each bucket, or fall back to the eager step (``fallback`` says why)."""
        started = time.perf_counter()
        cuda = any(d.device.type == "cuda" for d in self.decoders)
        before = torch.cuda.memory_reserved() if cuda else 0
        if self.replayer is not None:
            self.replayer.call(self._warm_compiled, progress)
        else:
            for i, dec in enumerate(self.decoders):
                if progress:
                    progress(i / max(1, len(self.decoders)), f"preparing the static cache ({dec.bucket} tokens)")
                dec.probe(1)
        self.warmup_seconds = time.perf_counter() - started
        if cuda:
            grown = torch.cuda.memory_reserved() - before
            self.pool_bytes = max(0, grown - sum(d.nbytes for d in self.decoders))

    def _warm_compiled(self, progress: Callable[[float, str], None] | None) -> None:
        try:
            for i, dec in enumerate(self.decoders):
                if progress:
                    progress(i / max(1, len(self.decoders)), f"compiling the decode step ({dec.bucket} tokens)")
                check_compiled(dec)
        except FastPathFailure as failure:
            self._fall_back(failure)

    def _fall_back(self, failure: FastPathFailure) -> None:
        """The eager static path for every bucket: no graph, no replay thread."""
        self.fallback = str(failure)[:300]
        self.fallback_stage = failure.stage
        for dec in self.decoders:
            dec.uncompile()
            dec.replayer = None
            dec.length = 0
        self.compiled = False
        if self.replayer is not None:
            self.replayer.close()
            self.replayer = None


def injected_fault(step: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``step``, or with :data:`FAULT_ENV` set, a step that fails at that stage: raises on its first
    call (the compile) or its second (the capture), or returns other logits (the check)."""
    fault = os.environ.get(FAULT_ENV, "").lower()
    if fault not in ("compile", "capture", "check"):
        return step
    calls = [0]

    def faulty(*args: Any) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == {"compile": 1, "capture": 2}.get(fault):
            raise RuntimeError(f"{fault} failure injected ({FAULT_ENV}={fault})")
        logits = step(*args)
        return logits.roll(1, dims=-1) if fault == "check" else logits
    return faulty


def check_compiled(dec: StaticDecoder) -> None:
    """Compile, capture and replay ``dec``'s step, and compare its logits with the eager step's
    on the same tokens; raise :class:`FastPathFailure` saying which stage failed."""
    expected, reference = dec.probe(CHECK_STEPS)  # the eager static step
    stage = ["compile"]

    def staged(i: int) -> None:
        stage[0] = ("compile", "capture")[i] if i < 2 else "replay"

    try:
        dec.compile()
        first = dec.probe(CHECK_STEPS, forced=expected, on_step=staged)  # compile, capture, replays
        stage[0] = "replay"
        again = dec.probe(CHECK_STEPS, forced=expected)  # replays only
    except Exception as exc:  # noqa: BLE001 - whatever the compiler or the graph raised
        raise FastPathFailure(stage[0], f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                              [:200]) from exc
    dtype = dec.model.get_input_embeddings().weight.dtype  # the compute dtype (quantized models too)
    for run in (first, again):
        step = differing_step(reference, run[1], dtype)
        if step is not None:
            raise FastPathFailure("check", f"decode step {step + 1} of {CHECK_STEPS} chose token {run[0][step]}, "
                                           f"the eager step {expected[step]}")


def differing_step(reference: list[torch.Tensor], logits: list[torch.Tensor], dtype: torch.dtype) -> int | None:
    """The first step whose greedy token differs from the reference's, unless the reference's
    logits tie there within :data:`TIE_EPS` ulps of ``dtype`` (the rounding of another kernel,
    not a wrong graph: in bf16 two kernels may order a near-tie differently)."""
    for i, (ref, got) in enumerate(zip(reference, logits)):
        flat = ref.flatten()
        want, chose = int(flat.argmax()), int(got.flatten().argmax())
        if want == chose:
            continue
        tolerance = TIE_EPS * torch.finfo(dtype).eps * float(flat.abs().max())
        if float(flat[want] - flat[chose]) > tolerance:
            return i
    return None


def prepare(handle, progress: Callable[[float, str], None] | None = None) -> FastPath | None:
    """Build and warm up the fast path for a freshly loaded model, or None where it does not apply.

    Compiled (CUDA): compiled, captured and checked in the fast path's own replay thread; any
    failure leaves the eager static path (``fast.fallback``). A model whose static path itself
    fails decodes on the engine's plain batched path (``handle.extra["fast_path_error"]``)."""
    how = mode(handle.device)
    if how == "off":
        return None
    buckets = getattr(handle.spec, "fast_path_buckets", None)
    try:
        fast = FastPath(handle.model, compiled=how == "compile", buckets=buckets, name=handle.spec.id)
        fast.warm_up(progress)
    except Exception as exc:  # noqa: BLE001 - e.g. a model whose cache cannot be static: plain decoding
        log.warning("fast path unavailable for %s: %s", handle.spec.id, exc)
        handle.extra["fast_path_error"] = f"{type(exc).__name__}: {exc}"[:200]
        return None
    handle.extra["fast_path"] = fast
    if fast.fallback:
        log.warning("compiled decode step of %s not used (%s): eager static path", handle.spec.id, fast.fallback)
    else:
        log.info("fast path ready for %s (%s, %.1f s)", handle.spec.id, how, fast.warmup_seconds)
    return fast
