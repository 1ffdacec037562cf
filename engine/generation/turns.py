"""Fair turns: requests are admitted round-robin between owners (sessions), in arrival order
within one owner.

Start-time fair queuing: when a request arrives it is given a turn number, one more than the
larger of the engine's current round (the turn of the last request admitted) and its owner's
latest turn. Requests are admitted by (turn, arrival). So a student's first request joins the
current round, ahead of the third or tenth request of a student who sent many (a script, ten
clicks): nobody waits behind another's backlog, and the one who sent many still gets every turn
nobody else wants. A turn is fixed when given, and a newcomer's turn is never lower than the
current round: the place a waiting student is shown ("⏳ 2 requests ahead of you") only goes
down, except when a student with nothing in this round arrives (a queue is fair only that way).

The owner comes from :func:`asking` (the GPU task of a session says who it runs for); requests
without one share one owner, which is plain arrival order (scripts, tests).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Hashable, Iterable, Iterator, Protocol

_owner: ContextVar[Hashable | None] = ContextVar("genai_engine_owner", default=None)


def current_owner() -> Hashable | None:
    """Who the requests submitted from here are for (None: nobody in particular)."""
    return _owner.get()


def set_owner(owner: Hashable | None) -> None:
    """For a thread that runs one owner's work from its start to its end (a GPU task's thread)."""
    _owner.set(owner)


@contextmanager
def asking(owner: Hashable | None) -> Iterator[None]:
    """``with asking(session):`` requests submitted in the block are that session's."""
    token = _owner.set(owner)
    try:
        yield
    finally:
        _owner.reset(token)


class Queued(Protocol):
    owner: Hashable | None
    turn: int
    seq: int


class Turns:
    """The turn numbers of one engine. Memory stays bounded: only owners with requests waiting
    are remembered (:meth:`forget_idle` after each admission round)."""

    def __init__(self) -> None:
        self.round = 0  # the turn of the last request admitted
        self._last: dict[Hashable | None, int] = {}  # owner -> its latest turn, while it has requests waiting

    def give(self, request: Queued) -> None:
        """A request arrives: its turn."""
        turn = max(self.round, self._last.get(request.owner, 0)) + 1
        self._last[request.owner] = turn
        request.turn = turn

    @staticmethod
    def order(waiting: Iterable[Queued]) -> list[Queued]:
        """The order in which ``waiting`` will be admitted."""
        return sorted(waiting, key=lambda r: (r.turn, r.seq))

    def admitted(self, request: Queued) -> None:
        self.round = max(self.round, request.turn)

    def forget_idle(self, waiting: Iterable[Queued]) -> None:
        """Keep only the owners that still have requests waiting (an owner whose turns are all
        behind the current round counts as new: its next turn is the next round's either way).
        A request that left without being served (stopped, failed) gives its turn back."""
        last: dict[Hashable | None, int] = {}
        for r in waiting:
            if r.turn > self.round and r.turn > last.get(r.owner, 0):
                last[r.owner] = r.turn
        self._last = last

    def owners(self) -> int:
        """Owners remembered now (for tests of bounded memory)."""
        return len(self._last)
