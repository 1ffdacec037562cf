"""ZeroGPU: where the GPU exists only inside ``@spaces.GPU`` calls.

On a ZeroGPU Space the ``spaces`` package runs each call of a decorated function in a *forked
worker* that gets the GPU for the call's ``duration``: the arguments and results are pickled
through queues, a decorated generator streams what it yields, and the models must already be
on CUDA (moved there at start-up, outside the functions). Off-Space ``spaces.GPU`` returns the
function unchanged, so the same code runs everywhere.

This module is the glue: :func:`on_zerogpu`, the :func:`gpu` decorator and :func:`streamed`,
which runs a task's body in a helper thread of the worker so that callbacks (loading progress,
denoising steps, the engine's per-step progress) become yielded events, rate-limited so that
only the latest state of a stream crosses the process boundary every ``interval`` seconds.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable)
log = logging.getLogger(__name__)
HEARTBEAT_S = 1.0  # a waiting worker still yields this often, so a closed stream is seen
STREAM_INTERVAL_S = 0.05  # the latest state of a stream is sent at most this often


def on_zerogpu(env: dict[str, str] | None = None) -> bool:
    """True on a ZeroGPU Space (what ``spaces`` reads: ``SPACES_ZERO_GPU``, plus a Space id)."""
    env = os.environ if env is None else env
    return bool(env.get("SPACE_ID")) and env.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu(duration: int | Callable[..., float]) -> Callable[[F], F]:
    """``spaces.GPU(duration=…)``: decorate module-level functions once, at import.

    ``duration`` is seconds or a function of the call's arguments (short calls get priority in
    ZeroGPU's queue). Off-Space (or without the package) the function is returned unchanged."""
    try:
        import spaces
    except ImportError:  # the package is in requirements.txt; this keeps scripts working without it
        return lambda fn: fn
    return spaces.GPU(duration=duration)


class Heartbeat:
    """Yielded by a worker that has nothing new, so that a stop from the caller reaches it."""


class Coalesced:
    """Base of events where only the latest matters (a progress bar, the state of a stream)."""


Emit = Callable[[Any], None]
_END = object()


def streamed(body: Callable[[Emit], Iterator[Any]], on_close: Callable[[], None],
             interval: float = STREAM_INTERVAL_S) -> Iterator[Any]:
    """Run ``body(emit)`` in a helper thread; yield what it yields and what it emits, in order.

    Events that subclass :class:`Coalesced` are rate-limited per type (the latest one is sent at
    most every ``interval`` seconds, and always before any other event and at the end). While
    nothing happens a :class:`Heartbeat` is yielded every :data:`HEARTBEAT_S`. If the consumer
    closes this generator (Stop, a closed page), ``on_close`` is called and the thread joined.
    An exception in the body is re-raised here.
    """
    events: "queue.Queue[Any]" = queue.Queue()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            for item in body(events.put):
                events.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            failure.append(exc)
        finally:
            events.put(_END)

    thread = threading.Thread(target=target, name="gpu-task", daemon=True)
    thread.start()
    pending: dict[type, Any] = {}
    sent_at = 0.0
    finished = False
    try:
        while True:
            now = time.monotonic()
            due = sent_at + interval
            if pending and now >= due:
                yield from _flush(pending)
                sent_at = time.monotonic()
                continue
            try:
                event = events.get(timeout=(due - now) if pending else HEARTBEAT_S)
            except queue.Empty:
                if not pending:
                    yield Heartbeat()
                continue
            if event is _END:
                break
            if isinstance(event, Coalesced):
                pending[type(event)] = event
                continue
            yield from _flush(pending)
            yield event
            sent_at = time.monotonic()
        yield from _flush(pending)
        finished = True
    finally:
        if not finished:
            on_close()
        thread.join()
    if failure:
        raise failure[0]


def _flush(pending: dict[type, Any]) -> Iterator[Any]:
    items = list(pending.values())
    pending.clear()
    yield from items
