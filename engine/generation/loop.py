"""The decode loop: one queue for every request, one batch per model, stepped in turn.

Each iteration takes in new requests, admits what fits, then runs one decode step of every
model that has rows. Admission is by memory (:mod:`engine.generation.admission`) and by turns
(:mod:`engine.generation.turns`): round-robin between sessions, in arrival order within one, and
nobody overtakes: while the next request in that order waits for memory, so does everyone behind
it, whatever their model (a long request is never passed by a stream of short ones). Every
waiting request knows how many are ahead of it (``queue_position``), and waits at most
``queue_wait_s`` (the profile's ``Limits.queue_wait_s``), then ends with a message saying why.

Admission cannot lose a request: a request leaves the waiting list only once it is in a batch or
has ended (stopped, failed with a message, timed out). Whatever raises while admitting leaves the
waiting requests waiting; a request whose admission keeps raising is failed with a message (its
model lease goes with it), the others go on.

The loop does not die: each batch's steps and each model's admissions run under their own
guard (a failure ends only the requests it touched, see :mod:`engine.generation.batch`), the
background thread guards every iteration (a fault that keeps coming back ends every request, with
a message, and the loop starts afresh), and a dead thread is started again by the next
``submit`` or ``wait``.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from typing import Hashable, Iterable, Iterator, Sequence

from engine.runtime import forksafe
from engine.errors import UserError
from engine.generation.admission import KVBudget, MemoryLedger, Plan
from engine.generation.batch import ModelBatch, NoRoom
from engine.generation.faults import row_error
from engine.generation.turns import Turns, current_owner
from engine.generation.types import Request, SamplingParams
from engine.models.llm import LLMHandle, PreparedPrompt

log = logging.getLogger(__name__)
MAX_BATCH = 32  # rows per model batch at most, whatever the memory
CRASHES_BEFORE_RESET = 3  # loop-level failures in a row before every request is ended
ADMISSION_TRIES = 3  # admissions of one request that raise, in a row, before it is failed
WINDOW_S = 5  # tokens/s is measured over the last this many seconds


class DecodeEngine:
    """Owns the decode loop. ``background=True``: a daemon thread runs it for every user;
    ``background=False``: the caller's thread drives it (ZeroGPU, scripts).

    ``memory`` (the app's model manager) and ``kv_budget_bytes`` bound the KV caches the
    engine may allocate; see :class:`~engine.generation.admission.KVBudget`. ``queue_wait_s``:
    how long a request may wait to be admitted (default: the running profile's limit)."""

    def __init__(self, background: bool = True, max_batch: int = MAX_BATCH, *,
                 memory: MemoryLedger | None = None, kv_budget_bytes: int | None = None,
                 queue_wait_s: float | None = None) -> None:
        self.background = background
        self.max_batch = max_batch
        self.budget = KVBudget(memory, kv_budget_bytes)
        self.queue_wait_s = queue_wait_s
        self.turns = Turns()
        self._inbox: "queue.Queue[Request]" = queue.Queue()
        self._waiting: list[Request] = []  # arrival order; admitted in turn order (``self.turns``)
        self._batches: dict[int, ModelBatch] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count()
        self._tokens = 0
        self._tok_window: deque[list[int]] = deque(maxlen=WINDOW_S + 2)  # [second, tokens]: bounded
        self.max_batch_seen = 0
        self.steps = 0
        self.batch_steps = 0  # decode forwards of a model batch that had rows
        self.rows_stepped = 0  # rows those forwards advanced (÷ batch_steps: the mean batch)
        self.crashes = 0  # loop iterations that raised (and were survived)
        self.admission_faults = 0  # admission attempts that raised (the request stayed waiting)
        self._crashes_in_a_row = 0
        self._closed = threading.Event()
        forksafe.renew(self)

    def _after_fork(self) -> None:
        """In a forked child: fresh locks and queue, none of the parent's requests or batches
        (they belong to the parent's threads), no loop thread (the next submit starts one)."""
        self._lock = threading.Lock()
        self._inbox = queue.Queue()
        self._waiting, self._batches, self._thread = [], {}, None
        closed, self._closed = self._closed.is_set(), threading.Event()
        if closed:
            self._closed.set()

    # ------------------------------------------------------------------ public
    def submit(self, handle: LLMHandle, prompt: PreparedPrompt | Sequence[int], params: SamplingParams, *,
               seed: int | None = None, top_probs: int = 0, stop: threading.Event | None = None,
               eos_ids: set[int] | None = None, notify: threading.Condition | None = None,
               owner: Hashable | None = None) -> Request:
        """Queue a request. ``owner`` (default: :func:`~.turns.current_owner`) is who asked: a
        session's requests take turns with other sessions'."""
        ids = prompt.input_ids if isinstance(prompt, PreparedPrompt) else list(prompt)
        if isinstance(prompt, PreparedPrompt):
            handle.check_length(prompt, params.max_new_tokens)
        req = Request(handle, ids, params, seed=params.seed if seed is None else seed, top_probs=top_probs,
                      stop=stop, eos_ids=eos_ids, notify=notify)
        req.seq = next(self._seq)
        req.owner = owner if owner is not None else current_owner()
        req.hold_model()
        self._inbox.put(req)
        if self.background:
            self._ensure_thread()
        return req

    def wait(self, requests: Iterable[Request], notify: threading.Condition | None = None,
             timeout: float = 0.5) -> Iterator[None]:
        """Yield whenever any of ``requests`` changed, until all are done."""
        requests = list(requests)
        cond = notify or (requests[0].notify if len(requests) == 1 else None)
        seen = -1
        yielded_done = False
        while True:
            if not self.background:
                self._guarded_run_once()
                if not self._running() and not all(r.done for r in requests):
                    time.sleep(0.01)  # queued behind memory held elsewhere: do not spin
            version = sum(r.version for r in requests)
            done = all(r.done for r in requests)
            if version != seen or (done and not yielded_done):
                seen, yielded_done = version, done
                yield None
            if done:
                return
            if self.background:
                self._ensure_thread()  # a loop that died is started again
                if cond is not None:
                    with cond:
                        cond.wait_for(lambda: sum(r.version for r in requests) != seen, timeout=timeout)
                else:
                    time.sleep(0.002)

    def cancel(self, requests: Iterable[Request]) -> None:
        """The caller no longer waits for ``requests`` (Stop, a closed page, an exception in its
        code). A background loop ends them at its next iteration. An inline engine is driven by
        that caller only (ZeroGPU): nobody would step it again, so they end here, and their model
        leases and KV caches are given back at once (else they would stay held in the worker)."""
        requests = [r for r in requests if not r.done]
        for r in requests:
            r.cancel()
        if self.background or not requests:
            return
        for r in requests:
            r.finish("stopped")
            r._publish()
        self._intake()
        with self._lock:
            self._waiting = [r for r in self._waiting if not r.done]
            idle = [(k, b) for k, b in self._batches.items() if not len(b)]
            for key, _ in idle:
                del self._batches[key]
        for _, batch in idle:
            batch.release()

    def stats(self) -> dict:
        now = int(time.monotonic())
        with self._lock:
            recent = sum(n for second, n in self._tok_window if now - second < WINDOW_S)
            running = {}
            for b in self._batches.values():
                if len(b):
                    running[b.name] = running.get(b.name, 0) + len(b)
            waiting = len(self._waiting)
            total = self._tokens
        return {"waiting": self._inbox.qsize() + waiting, "running": running,
                "batch_size": sum(running.values()), "tokens_per_s": round(recent / WINDOW_S, 1),
                "max_batch_seen": self.max_batch_seen, "total_tokens": total,
                "batch_steps": self.batch_steps, "rows_stepped": self.rows_stepped,
                "kv_cache_mb": round(self.budget.held_bytes / 2**20, 1), "crashes": self.crashes,
                "admission_faults": self.admission_faults}

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background loop after its current step (scripts call it before exiting: a
        daemon thread killed inside a torch op at interpreter shutdown aborts the process)."""
        self._closed.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -------------------------------------------------------------------- loop
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            if self._thread is None or not self._thread.is_alive():
                if self._thread is not None:
                    log.error("the decode loop had stopped; starting it again")
                self._thread = threading.Thread(target=self._run_forever, name="decode-engine", daemon=True)
                self._thread.start()

    def _run_forever(self) -> None:
        while not self._closed.is_set():
            if not self._running():
                with self._lock:
                    waiting = bool(self._waiting)
                try:  # idle, or only requests waiting for memory: poll, do not spin
                    req = self._inbox.get(timeout=0.02 if waiting else 0.25)
                except queue.Empty:
                    req = None
                if req is not None:
                    self._take(req)
                elif not waiting:
                    continue
            self._guarded_run_once()

    def _guarded_run_once(self) -> None:
        try:
            self.run_once()
            self._crashes_in_a_row = 0
        except Exception as exc:  # noqa: BLE001 - the loop serves everyone: it must go on
            self.crashes += 1
            self._crashes_in_a_row += 1
            log.exception("decode loop iteration failed (%d in a row)", self._crashes_in_a_row)
            if self._crashes_in_a_row >= CRASHES_BEFORE_RESET:
                self._reset(exc)
                self._crashes_in_a_row = 0

    def _running(self) -> bool:
        with self._lock:
            return any(len(b) for b in self._batches.values())

    def run_once(self) -> None:
        """Admit what fits, then one decode step of every model that has rows."""
        self._intake()
        self._admit()
        with self._lock:
            batches = list(self._batches.items())
        for key, batch in batches:
            if len(batch):
                self._step(key, batch)
        self.steps += 1

    def _intake(self) -> None:
        while True:
            try:
                req = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._take(req)

    def _take(self, req: Request) -> None:
        with self._lock:
            self.turns.give(req)
            self._waiting.append(req)

    def _step(self, key: int, batch: ModelBatch) -> None:
        rows = batch.rows
        before = sum(len(r.generated) for r in rows)
        try:
            batch.step()
        except Exception as exc:  # noqa: BLE001 - beyond the batch's own isolation: this batch only
            self._fail(batch.rows, exc, batch.name)
            self._discard(key)
            return
        stepped = sum(len(r.generated) for r in rows) - before
        self._count(stepped)
        self.batch_steps += 1
        self.rows_stepped += stepped
        try:
            batch.drop_finished()
        except Exception:  # noqa: BLE001 - the finished rows are done; their slots stay taken
            log.exception("dropping finished rows failed on %s", batch.name)
        if not len(batch):
            self._discard(key)  # do not keep a released model alive

    # --------------------------------------------------------------- admission
    def _batch_for(self, handle: LLMHandle) -> ModelBatch:
        with self._lock:
            batch = self._batches.get(id(handle))
            if batch is None or batch.handle is not handle:
                batch = self._batches[id(handle)] = ModelBatch(handle, self.budget, f"kv:{id(self)}:{id(handle)}",
                                                               self.max_batch)
            return batch

    def _admit(self) -> None:
        """Admit the waiting requests that fit, in turn order. A request leaves ``_waiting`` only
        when it is in a batch or has ended: whatever raises in here, nobody is lost."""
        with self._lock:
            waiting = list(self._waiting)
        if not waiting:
            return
        joined: set[int] = set()  # id() of the requests now in a batch
        try:
            plans, free = self._plan(self.turns.order(waiting))
            joined = self._join(plans, free)
        finally:
            with self._lock:
                self._waiting = [r for r in self._waiting if not r.done and id(r) not in joined]
                still = self.turns.order(self._waiting)
                self.turns.forget_idle(still)
                for key, batch in list(self._batches.items()):
                    if not len(batch):
                        batch.release()
                        del self._batches[key]
            for i, r in enumerate(still):
                if r.queue_position != i:
                    r.queue_position = i
                    r._publish()

    def _plan(self, order: list[Request]) -> tuple[dict[int, Plan], dict[str, int]]:
        """Which requests join which batch this round, and the bytes left per device. Ends (with a
        message) the requests that were stopped, waited too long, or can never fit; stops at the
        first one that must wait."""
        plans: dict[int, Plan] = {}
        free: dict[str, int] = {}
        limit = self._queue_wait_s()
        now = time.perf_counter()
        blocked = False
        ahead = 0  # requests before this one that are still queued
        for r in order:
            if r.done:
                continue
            if r.stop.is_set():
                r.finish("stopped")
                r._publish()
                continue
            if not blocked:
                try:
                    batch = self._batch_for(r.handle)
                except Exception as exc:  # noqa: BLE001 - e.g. a model the batch cache does not support
                    self._fail([r], exc, getattr(r.handle.spec, "id", "?"))
                    continue
                try:
                    placed = self._plan_one(r, batch, plans, free)
                    r.admission_faults = 0
                except Exception as exc:  # noqa: BLE001 - e.g. the memory query raised: it stays waiting
                    placed = False
                    self._admission_fault(r, exc, batch.name)
                if placed:
                    continue
                blocked = True  # it waits, and so does everyone behind it: nobody overtakes
            if not r.done and now - r.submitted > limit:
                self._fail([r], UserError("engine.err_queue_timeout", model=getattr(r.handle.spec, "id", "?"),
                                          seconds=round(now - r.submitted), ahead=ahead), "queue")
                continue
            ahead += 1
        return plans, free

    def _plan_one(self, r: Request, batch: ModelBatch, plans: dict[int, Plan], free: dict[str, int]) -> bool:
        """Plan ``r`` into its batch if it fits (True), end it if it never can (True); False: it waits."""
        plan = plans.setdefault(id(batch), Plan(batch))
        device = str(batch.device)
        if device not in free:
            free[device] = self.budget.free(batch.device)
        extra = plan.extra_bytes(r)
        if plan.rows < self.max_batch and extra <= free[device]:
            plan.take(r)
            free[device] -= extra
            return True
        if not plan.rows and not plan.newcomers and self._can_never_fit(batch, r):
            most = self.budget.most(batch.device, batch.handle)
            self._fail([r], UserError("engine.err_kv_too_long", model=batch.name, tokens=r.need_tokens,
                                      need_mb=round(r.need_tokens * batch.kv.bytes_per_token / 2**20, 1),
                                      free_mb=round(most / 2**20, 1)), batch.name)
            return True
        return False

    def _join(self, plans: dict[int, Plan], free: dict[str, int]) -> set[int]:
        """Prefill the planned newcomers into their batches; the ids of those now in a batch (or
        ended). A batch whose cache cannot grow leaves its newcomers waiting."""
        joined: set[int] = set()
        for plan in plans.values():
            if not plan.newcomers:
                continue
            try:
                plan.batch.add(plan.newcomers, free.get(str(plan.batch.device), 0))
            except NoRoom:
                continue  # they stay waiting, in their turn
            except Exception as exc:  # noqa: BLE001 - growing the cache failed: the newcomers, not the others
                self._fail(plan.newcomers, exc, plan.batch.name)
                continue
            for r in plan.newcomers:
                r.queue_position = None
                self.turns.admitted(r)
                joined.add(id(r))
            self._count(sum(len(r.generated) for r in plan.newcomers))
            self.max_batch_seen = max(self.max_batch_seen, len(plan.batch))
        return joined

    def _admission_fault(self, r: Request, exc: BaseException, model: str) -> None:
        """Admitting ``r`` raised: it stays waiting, unless that keeps happening (then it ends with
        a message and its model lease is given back)."""
        self.admission_faults += 1
        r.admission_faults += 1
        log.warning("admitting a request on %s raised (%d in a row): %s", model, r.admission_faults, exc,
                    exc_info=r.admission_faults == 1)
        if r.admission_faults >= ADMISSION_TRIES:
            self._fail([r], UserError("engine.err_admission", model=model,
                                      detail=f"{type(exc).__name__}: {exc}"[:200]), model)

    def _queue_wait_s(self) -> float:
        if self.queue_wait_s is not None:
            return self.queue_wait_s
        from engine import limits

        return limits.current().queue_wait_s

    def _can_never_fit(self, batch: ModelBatch, r: Request) -> bool:
        """Even with every KV cache of this engine released and everything that comes and goes
        gone (other jobs, unused models), this request would not fit."""
        return r.need_tokens * batch.kv.bytes_per_token > self.budget.most(batch.device, batch.handle)

    # ---------------------------------------------------------------- failures
    def _fail(self, rows: list[Request], exc: BaseException, model: str) -> None:
        log.warning("failing %d request(s) on %s: %s", len(rows), model, exc)
        for r in rows:
            if not r.done:
                r.finish("error", row_error(exc, model))
                r._publish()

    def _discard(self, key: int) -> None:
        with self._lock:
            batch = self._batches.pop(key, None)
        if batch is not None:
            batch.release()

    def _reset(self, exc: BaseException) -> None:
        """A fault that keeps coming back: end every request, running or waiting, with a message
        (their leases go with them), free every batch, keep serving."""
        error = UserError("engine.err_loop", detail=f"{type(exc).__name__}: {exc}"[:200])
        try:
            self._intake()
        finally:
            with self._lock:
                batches = list(self._batches.items())
                waiting, self._waiting = self._waiting, []
            self._fail(waiting, error, "queue")
            for key, batch in batches:
                self._fail(batch.rows, error, batch.name)
                self._discard(key)

    def _count(self, n: int) -> None:
        second = int(time.monotonic())
        with self._lock:
            self._tokens += n
            if self._tok_window and self._tok_window[-1][0] == second:
                self._tok_window[-1][1] += n
            else:
                self._tok_window.append([second, n])
