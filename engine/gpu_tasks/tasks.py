"""The GPU work of every tab: a few module-level functions, decorated once at import.

Each is a ``@spaces.GPU`` generator taking ``(job, stop, seconds)`` — a plain-data request, a
:class:`~engine.runtime.stopping.StopToken` and the GPU duration requested for it — and yielding plain
data: :class:`~engine.gpu_tasks.jobs.Snapshot` (the current state of a streamed result),
:class:`Progress`, :class:`ImageDone`, :class:`Skipped`, :class:`Failed` (the call's error as a
translatable key: ``spaces`` would only pass a ``gr.Error`` through), :class:`TimeLimit`.
The models are looked up inside, in the process-wide :class:`~engine.serving.manager.ModelManager`
given to :func:`bind` at start-up (a forked ZeroGPU worker inherits it with the models that
were placed on CUDA before launch).
"""
from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import replace
from typing import Any, Callable, Iterator

from engine import limits
from engine.errors import UserError, as_user_error
from engine.runtime.fairness import Cancelled, FairGate, WaitedTooLong
from engine.gpu_tasks.durations import MARGIN_S, OVERHEAD_S
from engine.gpu_tasks.jobs import (QUEUE_KEY, BenchmarkJob, CompareJob, Failed, FragilityJob, ImageDone, ImagePreview,
                                   ImagesJob, Progress, QuantizeJob, Skipped, Snapshot, TechniqueJob, TimeLimit)
from engine.generation.turns import set_owner
from engine.runtime.stopping import StopSignal, StopToken
from engine.runtime.zerogpu import Emit, gpu, on_zerogpu, streamed

log = logging.getLogger(__name__)
Translate = Callable[..., str]  # (key, lang, **params) -> text
_manager = None
_translate: Translate | None = None
_served = 0  # calls this process has run (a forked ZeroGPU worker starts from 0)
_forked_at: float | None = None  # when this process was forked (time.monotonic(), shared across processes)


def _count_from_fork() -> None:
    global _served, _forked_at
    _served, _forked_at = 0, time.monotonic()


os.register_at_fork(after_in_child=_count_from_fork)
_image_gate = FairGate(1)


def bind(manager, translate: Translate | None = None, image_slots: int = 1) -> None:
    """The app's model manager (and its translator, for texts made during the work), and how many
    images may be made at once in this process (requests take turns, round-robin)."""
    global _manager, _translate, _image_gate
    _manager, _translate = manager, translate
    _image_gate = FairGate(image_slots)


def manager():
    if _manager is None:
        raise RuntimeError("engine.gpu_tasks.bind(manager) must be called at start-up")
    return _manager


def _requested(job: Any, stop: StopToken, seconds: float) -> float:
    """The duration ZeroGPU is asked for: computed by the caller from the request."""
    return seconds


def _deadline(job: Any, seconds: float) -> float | None:
    """When the work must stop: the job's own time limit (sweeps), and on ZeroGPU the end of the
    requested duration, less :data:`MARGIN_S`. The duration runs from the GPU's allocation: in a
    fresh worker (its first call) that is when ``spaces`` forked it, before it copied the resident
    weights to its GPU, so the time since the fork is counted as it really was (a process that was
    not forked assumes :data:`OVERHEAD_S` went to that set-up)."""
    global _served
    limit = getattr(job, "time_limit_s", None)
    now = time.monotonic()
    deadline = now + limit if limit else None
    if not on_zerogpu():
        return deadline
    fresh, _served = _served == 0, _served + 1
    if not fresh:
        start = now
    elif _forked_at is not None:
        start = min(now, _forked_at)
    else:
        start = now - (OVERHEAD_S - MARGIN_S)
    gpu_end = start + seconds - MARGIN_S
    return gpu_end if deadline is None else min(deadline, gpu_end)


def _run(body: Callable[[Any, StopSignal, Emit], Iterator[Any]], job: Any, stop: StopToken,
         seconds: float) -> Iterator[Any]:
    """Run ``body`` (its callbacks streamed too); errors become :class:`Failed`. The body's thread
    asks the engine for the job's owner (its requests take turns with other sessions')."""
    signal = StopSignal(stop, _deadline(job, seconds))
    owner = getattr(job, "owner", "") or None

    def owned(emit: Emit) -> Iterator[Any]:
        set_owner(owner)  # streamed() runs this in a thread of its own, for this call only
        return body(job, signal, emit)

    try:
        yield from streamed(owned, on_close=signal.set)
    except Exception as exc:  # noqa: BLE001 - every error reaches the UI as a message
        yield _failed(exc)
    if signal.timed_out:
        yield TimeLimit(seconds)


def _failed(exc: BaseException) -> Failed:
    user = as_user_error(exc)
    if user is None:
        log.exception("GPU task failed", exc_info=exc)
        user = UserError("err.unexpected", detail=f"{type(exc).__name__}: {exc}"[:300])
    return Failed(user.key, dict(user.params))


def _portable_error(exc: BaseException | None) -> UserError | None:
    if exc is None or isinstance(exc, UserError):
        return exc
    return as_user_error(exc) or UserError("err.unexpected", detail=f"{type(exc).__name__}: {exc}"[:300])


def _loading(emit: Emit, lo: float = 0.0, hi: float = 1.0) -> Callable[[float, str], None]:
    return lambda frac, desc: emit(Progress(lo + (hi - lo) * frac, text=desc))


# ------------------------------------------------------------------------------ Base vs Instruct
def _compare_body(job: CompareJob, signal: StopSignal, emit: Emit) -> Iterator[Any]:
    from engine.chat.compare import compare_stream

    for panes in compare_stream(manager(), job.base, job.instruct, job.prompt, job.params, system=job.system,
                                template_on_base=job.template_on_base, top_probs=job.top_probs, stop=signal,
                                progress=_loading(emit), history=job.history, source=job.source):
        yield Snapshot(tuple(replace(p, update=replace(p.update, error=_portable_error(p.update.error)))
                             for p in panes))


@gpu(duration=_requested)
def compare(job: CompareJob, stop: StopToken, seconds: float) -> Iterator[Any]:
    """Both panes of Base vs Instruct, streamed: ``Snapshot((base PaneState, instruct PaneState))``; a
    follow-up's earlier turns travel in the job (``CompareJob.history``)."""
    yield from _run(_compare_body, job, stop, seconds)


# ------------------------------------------------------------------------------ Prompt techniques
def _technique_body(job: TechniqueJob, signal: StopSignal, emit: Emit) -> Iterator[Any]:
    from engine.techniques.driver import run_technique
    from engine.techniques.generator import EngineGenerator

    with manager().using(job.model, _loading(emit)) as handle:  # leased: never evicted mid-run
        generator = EngineGenerator(handle, on_step=lambda done, total: emit(Progress(done / max(1, total))),
                                    on_wait=lambda ahead: emit(Progress(0.0, key=QUEUE_KEY, params={"ahead": ahead})))
        for run in run_technique(job.technique, job.task, generator, job.settings, stop=signal):
            yield Snapshot(copy.deepcopy(run))


@gpu(duration=_requested)
def technique(job: TechniqueJob, stop: StopToken, seconds: float) -> Iterator[Any]:
    """One technique on one task: ``Snapshot(Run)`` after each batch of model calls."""
    yield from _run(_technique_body, job, stop, seconds)


def _benchmark_body(job: BenchmarkJob, signal: StopSignal, emit: Emit) -> Iterator[Any]:
    from engine.techniques.benchmark import benchmark as run_benchmark
    from engine.techniques.generator import EngineGenerator

    def on_progress(done: int, total: int, name: str) -> None:
        emit(Progress(done / max(1, total), key="tech.bench_progress",
                      params={"technique": name, "done": done, "total": total}))

    with manager().using(job.model, _loading(emit)) as handle:  # leased: never evicted mid-benchmark
        for result in run_benchmark(EngineGenerator(handle), list(job.techniques), list(job.tasks), job.settings,
                                    stop=signal, on_progress=on_progress):
            yield Snapshot(copy.deepcopy(result))


@gpu(duration=_requested)
def benchmark(job: BenchmarkJob, stop: StopToken, seconds: float) -> Iterator[Any]:
    """Techniques × problems: ``Snapshot(BenchmarkResult)`` after each technique's batch."""
    yield from _run(_benchmark_body, job, stop, seconds)


def _fragility_body(job: FragilityJob, signal: StopSignal, emit: Emit) -> Iterator[Any]:
    from engine.techniques.fragility import run_fragility
    from engine.techniques.generator import EngineGenerator

    total = len(job.variants) * len(job.tasks)
    finished = [0]  # rows kept before the engine call in flight
    shown = [0]  # the bar only moves forward (a Stop may drop rows that had finished)

    def report(done: int) -> None:
        shown[0] = max(shown[0], done)
        emit(Progress(shown[0] / max(1, total), key="tech.frag_progress", params={"done": shown[0], "total": total}))

    def on_step(done_rows: int, rows: int) -> None:  # rows of the call in flight that finished
        report(finished[0] + done_rows)

    def on_progress(done: int, _total: int) -> None:
        finished[0] = done
        report(done)

    # leased: never evicted mid-experiment; loading says what it does at 0 %, so the bar only moves forward
    with manager().using(job.model, _loading(emit, 0.0, 0.0)) as handle:
        generator = EngineGenerator(handle, on_step=on_step)
        for result in run_fragility(generator, list(job.tasks), job.settings, list(job.variants), stop=signal,
                                    on_progress=on_progress):
            yield Snapshot(copy.deepcopy(result))


@gpu(duration=_requested)
def fragility(job: FragilityJob, stop: StopToken, seconds: float) -> Iterator[Any]:
    """One few-shot prompt under K variants × problems: ``Snapshot(FragilityResult)`` after each batch."""
    yield from _run(_fragility_body, job, stop, seconds)


# ------------------------------------------------------------------------------ Quantization (live)
def _quantize_body(job: QuantizeJob, signal: StopSignal, emit: Emit) -> Iterator[Any]:
    """The comparison runs in its own thread, admitted by memory next to other students'
    (``live_runs``); this yields its state whenever it changed, and stops it on Stop."""
    from engine.quantization import live_runs

    lang = job.lang

    def explain(err: UserError) -> str:
        return _translate(err.key, lang, **err.params) if _translate else f"{err.key}: {err.params}"

    run = live_runs.start(manager(), job.model, list(job.variants), job.prompt, max_new_tokens=job.max_new_tokens,
                          passages=dict(job.passages) or None, explain=explain)
    try:
        seen = -1
        while True:
            if signal.is_set():
                run.stop()
            snap = run.wait_change(seen, 0.1)
            if snap.version != seen:
                seen = snap.version
                yield Snapshot(replace(snap, rows=copy.deepcopy(snap.rows), error=_portable_error(snap.error)))
            if snap.state in ("done", "stopped", "failed"):
                return
    finally:
        run.stop()  # a no-op once finished; ends the comparison if the visitor went away


@gpu(duration=_requested)
def quantize(job: QuantizeJob, stop: StopToken, seconds: float) -> Iterator[Any]:
    """One model at several precisions: ``Snapshot(list[Row])`` after each precision."""
    yield from _run(_quantize_body, job, stop, seconds)


# ------------------------------------------------------------------------------ Images
def _images_body(job: ImagesJob, signal: StopSignal, emit: Emit) -> Iterator[Any]:
    from engine.images import imagegen

    n = len(job.items)
    for i, item in enumerate(job.items):
        if signal.is_set():
            break
        title = imagegen.DEFAULTS[item.spec.role].title
        try:
            def waiting(ahead: int, i: int = i) -> None:
                emit(Progress(i / n, key="safety.waiting_turn", params={"ahead": ahead}))

            result = None
            # a turn per image (round-robin between requests), the pipeline leased while it draws
            with _image_gate.turn(job.owner, signal, on_wait=waiting, deadline_s=limits.current().queue_wait_s), \
                    manager().using(item.spec, _loading(emit, i / n, (i + 1) / n)) as pipe:
                for update in imagegen.generate_stream(pipe, item.settings, stop=signal):
                    emit(Progress((i + update.step / update.total) / n, key="img.progress",
                                  params={"model": title, "step": update.step, "steps": update.total,
                                          "i": i + 1, "n": n}))
                    if update.preview is not None:
                        yield ImagePreview(i, item.spec.role, update.step, update.total, update.preview)
                    result = update.result or result
            if result is None:  # stopped mid-image
                break
        except Cancelled:
            break
        except WaitedTooLong:
            raise  # the next images would wait as long: the call ends with the message
        except Exception as exc:  # noqa: BLE001 - one model failing (missing, out of memory) keeps the others
            err = as_user_error(exc, item.spec.id)
            if err is None:
                raise
            yield Skipped(i, item.spec.role, err.key, dict(err.params))
            continue
        yield ImageDone(i, result.image, result.settings, result.seconds)


@gpu(duration=_requested)
def images(job: ImagesJob, stop: StopToken, seconds: float) -> Iterator[Any]:
    """Each image as soon as it is done (``ImageDone``), denoising steps as ``Progress``."""
    yield from _run(_images_body, job, stop, seconds)
