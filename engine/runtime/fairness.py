"""Turns at a shared resource, served round-robin between owners (sessions).

A sweep asks for one turn per image; between two of its images, any other student who is
waiting goes first. So nobody waits behind another's long sweep for more than one image, and
an owner who keeps asking still gets every turn nobody else wants. A wait can be bounded
(``deadline_s``: the profile's ``queue_wait_s``); past it the waiter gets :class:`WaitedTooLong`,
a message that says how long it waited and how many were ahead.
"""
from __future__ import annotations

import itertools
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from engine.runtime import forksafe
from engine.errors import UserError


@dataclass(order=True)
class _Ticket:
    last_served: int  # the owner's last turn (-1: never served): lower goes first
    seq: int  # arrival order among equals
    owner: str = field(compare=False)


class Cancelled(Exception):
    """The waiter's stop event was set before its turn came."""


class WaitedTooLong(UserError):
    """The waiter's turn did not come within its deadline."""

    def __init__(self, seconds: float, ahead: int) -> None:
        super().__init__("engine.err_turn_timeout", seconds=round(seconds), ahead=ahead)


class FairGate:
    def __init__(self, slots: int = 1) -> None:
        self.slots = max(1, int(slots))
        self._cond = threading.Condition()
        self._busy = 0
        self._waiting: list[_Ticket] = []
        self._turns = itertools.count()
        self._seq = itertools.count()
        self._last: dict[str, int] = {}
        forksafe.renew(self)

    def _after_fork(self) -> None:
        """In a forked child the parent's turns (its threads) are not there: nobody holds or waits."""
        self._cond = threading.Condition()
        self._busy = 0
        self._waiting = []

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def _ahead(self, ticket: _Ticket) -> int:
        return sum(1 for t in self._waiting if t < ticket)

    @contextmanager
    def turn(self, owner: str, stop: threading.Event | None = None,
             on_wait: Callable[[int], None] | None = None, deadline_s: float | None = None) -> Iterator[None]:
        """Hold one slot for the ``with`` block. While waiting, ``on_wait(requests ahead)`` is
        called when that number changes; a set ``stop`` raises :class:`Cancelled`, a wait longer
        than ``deadline_s`` :class:`WaitedTooLong`."""
        started = time.monotonic()
        with self._cond:
            ticket = _Ticket(self._last.get(owner, -1), next(self._seq), owner)
            self._waiting.append(ticket)
            shown = None
            try:
                while True:
                    if self._busy < self.slots and min(self._waiting) is ticket:
                        break
                    if stop is not None and stop.is_set():
                        raise Cancelled()
                    ahead = self._ahead(ticket) + self._busy
                    if deadline_s is not None and time.monotonic() - started > deadline_s:
                        raise WaitedTooLong(time.monotonic() - started, ahead)
                    if on_wait is not None and ahead != shown:
                        shown = ahead
                        self._cond.release()
                        try:
                            on_wait(ahead)
                        finally:
                            self._cond.acquire()
                        continue
                    self._cond.wait(timeout=0.25)
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            self._busy += 1
            self._last[owner] = next(self._turns)
            if len(self._last) > 10_000:  # owners who left: forget the oldest half
                for old in sorted(self._last, key=self._last.get)[: len(self._last) // 2]:
                    del self._last[old]
        try:
            yield
        finally:
            with self._cond:
                self._busy = max(0, self._busy - 1)  # a turn taken before a fork is not counted after it
                self._cond.notify_all()


class TimeLimit:
    """Sets ``stop`` after ``seconds`` (the work then stops as if the user pressed Stop);
    ``expired`` says whether that is why it stopped."""

    def __init__(self, stop: threading.Event, seconds: float) -> None:
        self.stop, self.seconds = stop, seconds
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired = not self.stop.is_set()
        self.stop.set()

    def __enter__(self) -> "TimeLimit":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
