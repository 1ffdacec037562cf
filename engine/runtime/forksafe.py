"""What a forked child must not inherit: locks held by the parent's threads, and their state.

On a ZeroGPU Space the ``spaces`` package forks a worker from the app's process while other
threads run (Gradio's, the decode loop, a model load). ``fork`` copies every lock as it is at that
moment, but only the forking thread: a lock another thread held stays held for ever in the child,
and the first ``with lock:`` there hangs the worker. Bookkeeping those threads owned (a model
lease, an image turn, a queued comparison) would also never be given back in the child.

So every long-lived lock of the engine is made again in the child, together with the state of
the parent's threads it guards: module-level ones with :func:`at_fork` or as a
:class:`RenewedLock`, objects with :func:`renew` (the object's ``_after_fork()`` is called; it is
held weakly, so registering costs nothing once it is gone). One ``os.register_at_fork`` hook runs
them all: module-level hooks first, in registration order.
"""
from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, Callable, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
_hooks: list[Callable[[], None]] = []
_objects: "weakref.WeakSet[Any]" = weakref.WeakSet()


def at_fork(fn: Callable[[], None]) -> Callable[[], None]:
    """Call ``fn()`` in every forked child (module-level locks and state); usable as a decorator."""
    _hooks.append(fn)
    return fn


def renew(obj: T) -> T:
    """Call ``obj._after_fork()`` in every forked child while ``obj`` exists; returns ``obj``."""
    _objects.add(obj)
    return obj


class RenewedLock:
    """A lock that is made again in a forked child: use it wherever the lock it wraps (a
    ``threading.Lock`` by default, or ``RenewedLock(threading.RLock)``) is used; modules that
    imported it keep the same object."""

    def __init__(self, factory: Callable[[], Any] = threading.Lock) -> None:
        self._factory = factory
        self._lock = factory()
        renew(self)

    def _after_fork(self) -> None:
        self._lock = self._factory()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def after_fork_in_child() -> None:
    """What the hook runs (tests call it to check a renewal without forking)."""
    for fn in list(_hooks):
        try:
            fn()
        except Exception:  # noqa: BLE001 - one failing renewal must not leave the others undone
            log.exception("renewing %r after fork failed", fn)
    for obj in list(_objects):
        try:
            obj._after_fork()
        except Exception:  # noqa: BLE001
            log.exception("renewing %r after fork failed", obj)


os.register_at_fork(after_in_child=after_fork_in_child)
