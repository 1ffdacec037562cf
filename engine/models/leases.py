"""Who is using which loaded model right now.

A model (an ``LLMHandle`` or a diffusers pipeline) is *in use* while someone holds a lease on it:
a request queued or decoding in the engine, an image being generated, a quantization run, or
a caller inside ``ModelManager.using(spec)``. The model cache never evicts a model in use:
evicting it would free nothing (the user still holds a reference) and the next request would
load a second copy.

Leases are counted per object and per owner (a request, or a thread for ``using``), so the
manager can tell a caller that waits on memory only it is pinning itself.

A forked child (a ZeroGPU worker) starts with no leases and a fresh lock: the parent's leases
belong to the parent's threads and requests, which the child does not have, and would keep their
models from ever being evicted there (see :mod:`engine.runtime.forksafe`).
"""
from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from typing import Any, Hashable, Iterator

from engine.runtime import forksafe

_lock = threading.Lock()
_holds: dict[int, Counter] = {}  # id(obj) -> owner -> count (the holder keeps obj alive)


@forksafe.at_fork
def _after_fork() -> None:
    global _lock, _holds
    _lock = threading.Lock()
    _holds = {}


def total() -> int:
    """Leases held in this process, all objects and owners together."""
    with _lock:
        return sum(sum(c.values()) for c in _holds.values())


def thread_owner() -> Hashable:
    """The owner key of leases taken by the calling thread."""
    return ("thread", threading.get_ident())


def acquire(obj: Any, owner: Hashable | None = None) -> None:
    owner = thread_owner() if owner is None else owner
    with _lock:
        _holds.setdefault(id(obj), Counter())[owner] += 1


def release(obj: Any, owner: Hashable | None = None) -> None:
    owner = thread_owner() if owner is None else owner
    with _lock:
        held = _holds.get(id(obj))
        if held is None or held[owner] <= 0:
            return
        held[owner] -= 1
        if held[owner] <= 0:
            del held[owner]
        if not held:
            del _holds[id(obj)]


def in_use(obj: Any) -> bool:
    with _lock:
        return id(obj) in _holds


def count(obj: Any) -> int:
    with _lock:
        return sum(_holds.get(id(obj), Counter()).values())


def held_by(obj: Any, owner: Hashable) -> bool:
    with _lock:
        return _holds.get(id(obj), Counter())[owner] > 0


@contextmanager
def holding(obj: Any, owner: Hashable | None = None) -> Iterator[Any]:
    """``with holding(pipe):`` the object cannot be evicted until the block ends."""
    owner = thread_owner() if owner is None else owner
    acquire(obj, owner)
    try:
        yield obj
    finally:
        release(obj, owner)
