"""Fair turns: requests are admitted round-robin between owners (sessions), in arrival order
within one owner.

Start-time fair queuing. The engine keeps a current *round* (the turn of the last request
admitted). An arriving request gets the current round if its owner has nothing queued or served
in it, else one more than its owner's latest turn; requests are admitted by (turn, arrival). So:

* a student's first request joins the current round, ahead of the second, third or tenth request
  of a student who sent many (ten clicks, a script): nobody waits behind another's backlog, and
  the one who sent many still gets every turn nobody else wants;
* a request's turn never changes, and a newcomer's turn is never below the current round: the
  place a student with one request waiting is shown ("⏳ 2 requests ahead of you") only goes
  down. Only the backlog of a student who sent several can be passed by newcomers;
* a student served in this round who asks again goes to the next round, behind those still
  waiting in this one: a stream of requests, one at a time, cannot starve anyone's backlog.

The owner comes from :func:`asking` / :func:`set_owner` (the GPU task of a session says who it
runs for); requests without one share one owner: plain arrival order (scripts, tests).
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
    """The turns of one engine. Memory stays bounded: an owner is remembered while it has requests
    waiting or was served in the current round, and nobody is once the queue is empty."""

    MAX_OWNERS = 10_000  # past this many remembered, only owners with requests waiting are kept

    def __init__(self) -> None:
        self.round = 0  # the turn of the last request admitted
        self._last: dict[Hashable | None, int] = {}  # owner -> its latest turn

    def give(self, request: Queued) -> None:
        """A request arrives: its turn."""
        last = self._last.get(request.owner)
        request.turn = self.round if last is None else max(self.round, last + 1)
        self._last[request.owner] = request.turn

    @staticmethod
    def order(waiting: Iterable[Queued]) -> list[Queued]:
        """The order in which ``waiting`` will be admitted."""
        return sorted(waiting, key=lambda r: (r.turn, r.seq))

    def admitted(self, request: Queued) -> None:
        self.round = max(self.round, request.turn)

    def forget_idle(self, waiting: Iterable[Queued]) -> None:
        """After an admission round: keep the owners with requests ``waiting`` (their latest turn:
        a request that left unserved gives its turn back) and those served in the current round;
        once nobody waits, nobody needs remembering (the next ones come in arrival order)."""
        last: dict[Hashable | None, int] = {}
        for r in waiting:
            if r.turn > last.get(r.owner, -1):
                last[r.owner] = r.turn
        if last and len(self._last) <= self.MAX_OWNERS:
            for owner, turn in self._last.items():
                if owner not in last and turn >= self.round:
                    last[owner] = self.round
        self._last = last

    def owners(self) -> int:
        """Owners remembered now (for tests of bounded memory)."""
        return len(self._last)
