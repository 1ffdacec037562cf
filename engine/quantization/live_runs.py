"""Several students' live comparisons at once, within the memory budget, each with its own Stop.

A comparison loads one precision at a time, so what it needs at most is its largest variant
(the planner's estimate, :func:`peak_bytes`). :class:`Gate` admits comparisons in arrival order
while the sum of their peaks fits the budget (and at most ``GENAI_QUANT_CONCURRENCY`` of them,
default 4, so that the speeds they measure still mean something); the others wait in a queue
and see their position. Each comparison runs in a worker thread (:class:`LiveRun`): the event
handler only polls it, so Stop answers at once — the rows measured so far stay, the precision in
flight is dropped — while the worker gives its memory back at the next token or phase.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from engine import limits
from engine.runtime import forksafe
from engine.models.catalog import PRECISIONS, ModelSpec
from engine.errors import UserError
from engine.quantization import live
from engine.quantization.variants import compute_precision, estimate_variant_bytes, ordered

DEFAULT_CONCURRENCY = 4


def peak_bytes(manager, spec: ModelSpec, variants: Sequence[str]) -> int:
    """The most memory one comparison holds at a time: its largest variant that fits the budget
    (the others are skipped without loading anything)."""
    needs = []
    for key in ordered(variants):
        try:
            need = estimate_variant_bytes(manager, spec, key)
            if key not in PRECISIONS:  # quanto / HQQ load at the compute dtype first
                full = compute_precision(manager.device, manager.hardware.bf16)
                need = max(need, estimate_variant_bytes(manager, spec, full))
        except Exception:  # noqa: BLE001 - an unreadable config: the comparison itself says why
            continue
        if need <= manager.budget:
            needs.append(need)
    return max(needs, default=0)


@dataclass
class Ticket:
    need: int
    admitted: bool = False
    released: bool = False


def concurrency() -> int:
    """How many comparisons may run at once (memory permitting): ``GENAI_QUANT_CONCURRENCY``."""
    return int(os.environ.get("GENAI_QUANT_CONCURRENCY", DEFAULT_CONCURRENCY))


class Gate:
    """FIFO admission by memory: the first waiting comparison starts as soon as its peak fits next
    to the running ones (alone, it always starts: what cannot fit is skipped variant by variant)."""

    def __init__(self, capacity: Callable[[], int], max_running: int | None = None) -> None:
        self.capacity = capacity
        self.max_running = max_running or concurrency()
        self._cond = threading.Condition()
        self._queue: list[Ticket] = []
        self._running: list[Ticket] = []
        forksafe.renew(self)

    def _after_fork(self) -> None:
        """In a forked child (a ZeroGPU worker) the parent's comparisons are not running."""
        self._cond = threading.Condition()
        self._queue, self._running = [], []

    def enter(self, need: int) -> Ticket:
        with self._cond:
            ticket = Ticket(need)
            self._queue.append(ticket)
            self._admit()
            return ticket

    def _admit(self) -> None:
        while self._queue:
            head = self._queue[0]
            used = sum(t.need for t in self._running)
            if self._running and (len(self._running) >= self.max_running or used + head.need > self.capacity()):
                return
            self._queue.pop(0)
            head.admitted = True
            self._running.append(head)
            self._cond.notify_all()

    def position(self, ticket: Ticket) -> int:
        """0 when admitted, else 1 + the comparisons waiting ahead of it."""
        with self._cond:
            return 0 if ticket.admitted else self._queue.index(ticket) + 1 if ticket in self._queue else 0

    def wait(self, ticket: Ticket, timeout: float) -> bool:
        with self._cond:
            if not ticket.admitted:
                self._cond.wait_for(lambda: ticket.admitted, timeout)
            return ticket.admitted

    def leave(self, ticket: Ticket) -> None:
        with self._cond:
            if ticket.released:
                return
            ticket.released = True
            if ticket in self._queue:
                self._queue.remove(ticket)
            if ticket in self._running:
                self._running.remove(ticket)
            self._admit()
            self._cond.notify_all()

    def running(self) -> int:
        with self._cond:
            return len(self._running)

    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)


@dataclass
class Snapshot:
    """What the handler shows: queue position, progress, the rows so far, how it ended."""

    state: str  # queued | running | done | stopped | failed
    position: int
    rows: list
    fraction: float
    stage: live.Stage | None
    error: BaseException | None
    others: int  # other comparisons running at the same time (their speeds share the machine)
    version: int


@dataclass
class LiveRun:
    """One comparison in a worker thread. ``snapshot()`` / ``wait_change()`` for the handler,
    ``stop()`` for the Stop button."""

    gate: Gate
    manager: object
    spec: ModelSpec
    variants: list[str]
    prompt: str
    options: dict = field(default_factory=dict)  # max_new_tokens, passages, explain
    need: int = 0
    state: str = "queued"
    rows: list = field(default_factory=list)
    stage: live.Stage | None = None
    error: BaseException | None = None
    others: int = 0
    version: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    ticket: Ticket | None = None
    started_at: float = field(default_factory=time.perf_counter)

    def start(self) -> "LiveRun":
        self.ticket = self.gate.enter(self.need)
        threading.Thread(target=self._work, name="quant-live", daemon=True).start()
        return self

    def _bump(self, **changes) -> None:
        with self._changed:
            for k, v in changes.items():
                setattr(self, k, v)
            self.version += 1
            self._changed.notify_all()

    def _work(self) -> None:
        try:
            queued = time.perf_counter()
            while not self.gate.wait(self.ticket, 0.5):
                if self._stop.is_set():
                    self._bump(state="stopped")
                    return
                waited = time.perf_counter() - queued
                if waited > limits.current().queue_wait_s:  # ends as "failed", with this message
                    raise UserError("engine.err_turn_timeout", seconds=round(waited),
                                    ahead=self.gate.position(self.ticket) - 1)
                self._bump()  # the queue moved: the position shown changes
            if self._stop.is_set():
                self._bump(state="stopped")
                return
            self._bump(state="running", others=self.gate.running() - 1)
            for rows in live.compare(self.manager, self.spec, self.variants, self.prompt, stop=self._stop,
                                     on_stage=lambda stage: self._bump(stage=stage,
                                                                       others=max(self.others, self.gate.running() - 1)),
                                     **self.options):
                self._bump(rows=list(rows))
            self._bump(state="stopped" if self._stop.is_set() else "done")
        except BaseException as exc:  # noqa: BLE001 - shown to this student only
            self._bump(state="failed", error=exc)
        finally:
            self.gate.leave(self.ticket)

    def stop(self) -> None:
        self._stop.set()
        self._bump(state="stopped" if self.state in ("queued", "running") else self.state)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "stopped", "failed")

    def snapshot(self) -> Snapshot:
        with self._changed:
            return Snapshot(self.state, self.gate.position(self.ticket) if self.ticket else 0, list(self.rows),
                            self.stage.fraction if self.stage else 0.0, self.stage, self.error, self.others,
                            self.version)

    def wait_change(self, seen: int, timeout: float) -> Snapshot:
        """The next snapshot after version ``seen`` (or the current one after ``timeout`` s)."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen, timeout)
        return self.snapshot()


_gates: dict[int, Gate] = {}
_gates_lock = forksafe.RenewedLock()


def gate_for(manager) -> Gate:
    """One gate per model manager (one per app), sized by its memory budget."""
    with _gates_lock:
        gate = _gates.get(id(manager))
        if gate is None:
            gate = _gates[id(manager)] = Gate(lambda: manager.budget)
        return gate


def start(manager, spec: ModelSpec, variants: Sequence[str], prompt: str, **options) -> LiveRun:
    """Queue a comparison; it starts as soon as the memory budget allows."""
    if not (prompt or "").strip():
        raise UserError("err.empty_prompt")
    keys = ordered(variants)
    if not keys:
        raise UserError("quant.err_no_precision")
    run = LiveRun(gate_for(manager), manager, spec, keys, prompt, options, need=peak_bytes(manager, spec, keys))
    return run.start()
