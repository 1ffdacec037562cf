"""Stop buttons that reach the process doing the work, even a forked ZeroGPU worker.

A ``threading.Event`` set by the Stop button's handler lives in the main process; on ZeroGPU
the generation runs in a worker forked from it, which never sees the change (and an Event
cannot be pickled into the call). So each GPU call gets a :class:`StopToken` — two integers,
plain data — naming a slot in an array of shared memory created at import, before any worker
is forked, so every worker inherits the same memory. The Stop handler writes the token's ticket
into its slot (:meth:`StopBoard.stop`); in the worker a :class:`StopSignal` — a
``threading.Event`` the engine checks at every decode or denoising step — reads it. The
generation then ends at its next step with the "stopped" state, the call returns and ZeroGPU
releases the GPU. Off-Space the same array is simply read in the same process.

A signal can also carry a deadline: on ZeroGPU a call stops itself just before its requested
GPU duration runs out (a late call is aborted by ZeroGPU, losing everything).

The board also keeps the rule "one run per student per action": :meth:`StopBoard.begin` refuses a
call when its key (session, action) already has ``limit`` calls going that were not asked to stop
(a run being stopped does not count: Stop then Run again always works).
"""
from __future__ import annotations

import ctypes
import itertools
import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass
from typing import Hashable

from engine.runtime import forksafe
from engine.errors import UserError

log = logging.getLogger(__name__)
SLOTS = 4096  # GPU calls running at once, at most
_FLAGS = multiprocessing.RawArray(ctypes.c_longlong, SLOTS)  # shared with forked workers


@dataclass(frozen=True)
class StopToken:
    """Which slot a call watches, and the ticket that means "stop" (reused slots get new tickets)."""

    slot: int
    ticket: int

    def requested(self) -> bool:
        return 0 <= self.slot < SLOTS and _FLAGS[self.slot] == self.ticket


NEVER = StopToken(-1, 0)


class StopSignal(threading.Event):
    """What the work checks (``is_set()``): its own flag, the Stop button's token, the deadline.

    ``set()`` only sets the local flag (the engine sets it when a stream is closed)."""

    def __init__(self, token: StopToken = NEVER, deadline: float | None = None) -> None:
        super().__init__()
        self.token = token
        self.deadline = deadline  # time.monotonic() value, or None
        self.timed_out = False

    def is_set(self) -> bool:
        if super().is_set() or self.token.requested():
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.timed_out = True
            return True
        return False

    isSet = is_set


class LinkedStop(threading.Event):
    """Set when any of ``parents`` is, or by its own ``set()`` — which leaves the parents alone.

    For one part of a longer run (a request, an image): the engine sets a request's stop event
    when its stream ends, and that must not stop the rest of the run; the part also stops when
    any of the signals it follows (the Stop button, the run's own end) is set."""

    def __init__(self, *parents: threading.Event | None) -> None:
        super().__init__()
        self.parents = [p for p in parents if p is not None]

    def is_set(self) -> bool:
        return super().is_set() or any(p.is_set() for p in self.parents)

    isSet = is_set


class StopBoard:
    """The main process's side: a token per running call, found again by a key (session, tab)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free = list(range(SLOTS - 1, -1, -1))
        self._tickets = itertools.count(1)
        self._running: dict[Hashable, set[StopToken]] = {}
        forksafe.renew(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def begin(self, key: Hashable, limit: int | None = None) -> StopToken:
        """A token for a new call under ``key``. With ``limit``: raises ``UserError`` (nothing
        started) if ``key`` already has ``limit`` calls going that were not asked to stop."""
        with self._lock:
            if limit is not None and self._going(key) >= limit:
                raise UserError("engine.err_already_running", n=limit)
            if not self._free:
                log.warning("no stop slot left: this call cannot be stopped")
                return NEVER
            token = StopToken(self._free.pop(), next(self._tickets))
            _FLAGS[token.slot] = 0
            self._running.setdefault(key, set()).add(token)
            return token

    def _going(self, key: Hashable) -> int:
        return sum(1 for token in self._running.get(key, ()) if not token.requested())

    def running(self, key: Hashable) -> int:
        """Calls going under ``key`` that were not asked to stop."""
        with self._lock:
            return self._going(key)

    def stop(self, key: Hashable) -> int:
        """Ask every call running under ``key`` to stop; returns how many there were."""
        with self._lock:
            tokens = list(self._running.get(key, ()))
            for token in tokens:
                _FLAGS[token.slot] = token.ticket
            return len(tokens)

    def end(self, key: Hashable, token: StopToken) -> None:
        with self._lock:
            running = self._running.get(key)
            if running is None or token not in running:
                return
            running.discard(token)
            if not running:
                del self._running[key]
            _FLAGS[token.slot] = 0
            self._free.append(token.slot)


BOARD = StopBoard()
