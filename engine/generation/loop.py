"""The decode loop: one queue for every request, one batch per model, stepped in turn.

Each iteration admits what fits, in submission order, then runs one decode step of every
model that has rows. Admission is by memory (:mod:`engine.generation.admission`): a request
that does not fit waits, and so does everyone behind it, whatever their model (strict FIFO:
a long request is never overtaken by short ones, so nobody waits forever). Every waiting
request knows how many are ahead of it (``queue_position``).

The loop does not die: each batch's steps and each model's admissions run under their own
guard (a failure ends only the requests it touched, see :mod:`engine.generation.batch`), the
background thread guards every iteration, and a dead thread is started again by the next
``submit`` or ``wait``.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from typing import Iterable, Iterator, Sequence

from engine.errors import UserError
from engine.generation.admission import KVBudget, MemoryLedger, Plan
from engine.generation.batch import ModelBatch, NoRoom
from engine.generation.faults import row_error
from engine.generation.types import Request, SamplingParams
from engine.llm import LLMHandle, PreparedPrompt

log = logging.getLogger(__name__)
MAX_BATCH = 32  # rows per model batch at most, whatever the memory
CRASHES_BEFORE_RESET = 3  # loop-level failures in a row before the running rows are failed


class DecodeEngine:
    """Owns the decode loop. ``background=True``: a daemon thread runs it for every user;
    ``background=False``: the caller's thread drives it (ZeroGPU, scripts).

    ``memory`` (the app's model manager) and ``kv_budget_bytes`` bound the KV caches the
    engine may allocate; see :class:`~engine.generation.admission.KVBudget`."""

    def __init__(self, background: bool = True, max_batch: int = MAX_BATCH, *,
                 memory: MemoryLedger | None = None, kv_budget_bytes: int | None = None) -> None:
        self.background = background
        self.max_batch = max_batch
        self.budget = KVBudget(memory, kv_budget_bytes)
        self._inbox: "queue.Queue[Request]" = queue.Queue()
        self._waiting: list[Request] = []
        self._batches: dict[int, ModelBatch] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count()
        self._tokens = 0
        self._tok_window: list[tuple[float, int]] = []
        self.max_batch_seen = 0
        self.steps = 0
        self.crashes = 0  # loop iterations that raised (and were survived)
        self._crashes_in_a_row = 0
        self._closed = threading.Event()

    # ------------------------------------------------------------------ public
    def submit(self, handle: LLMHandle, prompt: PreparedPrompt | Sequence[int], params: SamplingParams, *,
               seed: int | None = None, top_probs: int = 0, stop: threading.Event | None = None,
               eos_ids: set[int] | None = None, notify: threading.Condition | None = None) -> Request:
        ids = prompt.input_ids if isinstance(prompt, PreparedPrompt) else list(prompt)
        if isinstance(prompt, PreparedPrompt):
            handle.check_length(prompt, params.max_new_tokens)
        req = Request(handle, ids, params, seed=params.seed if seed is None else seed, top_probs=top_probs,
                      stop=stop, eos_ids=eos_ids, notify=notify)
        req.seq = next(self._seq)
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

    def stats(self) -> dict:
        now = time.perf_counter()
        with self._lock:
            recent = [(t, n) for t, n in self._tok_window if now - t < 5.0]
            self._tok_window = recent
            running = {}
            for b in self._batches.values():
                if len(b):
                    running[b.name] = running.get(b.name, 0) + len(b)
            waiting = len(self._waiting)
            total = self._tokens
        tps = sum(n for _, n in recent) / 5.0 if recent else 0.0
        return {"waiting": self._inbox.qsize() + waiting, "running": running,
                "batch_size": sum(running.values()), "tokens_per_s": round(tps, 1),
                "max_batch_seen": self.max_batch_seen, "total_tokens": total,
                "kv_cache_mb": round(self.budget.held_bytes / 2**20, 1), "crashes": self.crashes}

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
                    with self._lock:
                        self._waiting.append(req)
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
            with self._lock:
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
        self._count(sum(len(r.generated) for r in rows) - before)
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
        with self._lock:
            waiting, self._waiting = self._waiting, []
        plans: dict[int, Plan] = {}
        free: dict[str, int] = {}
        still: list[Request] = []
        for r in waiting:
            if r.stop.is_set():
                r.finish("stopped")
                r._publish()
                continue
            if still:  # someone ahead waits for memory: nobody overtakes
                still.append(r)
                continue
            try:
                batch = self._batch_for(r.handle)
            except Exception as exc:  # noqa: BLE001 - e.g. a model the batch cache does not support
                self._fail([r], exc, getattr(r.handle.spec, "id", "?"))
                continue
            plan = plans.setdefault(id(batch), Plan(batch))
            device = str(batch.device)
            if device not in free:
                free[device] = self.budget.free(batch.device)
            extra = plan.extra_bytes(r)
            if plan.rows < self.max_batch and extra <= free[device]:
                plan.take(r)
                free[device] -= extra
            elif not plan.rows and not plan.newcomers and self._can_never_fit(batch, r, free[device]):
                most = free[device] + self.budget.held_bytes
                self._fail([r], UserError("engine.err_kv_too_long", model=batch.name, tokens=r.need_tokens,
                                          need_mb=round(r.need_tokens * batch.kv.bytes_per_token / 2**20, 1),
                                          free_mb=round(most / 2**20, 1)), batch.name)
            else:
                still.append(r)
        requeue: list[Request] = []
        for plan in plans.values():
            if not plan.newcomers:
                continue
            for r in plan.newcomers:
                r.queue_position = None
            try:
                plan.batch.add(plan.newcomers, free.get(str(plan.batch.device), 0))
            except NoRoom:
                requeue += [r for r in plan.newcomers if not r.done]
                continue
            except Exception as exc:  # noqa: BLE001 - growing the cache failed: the newcomers, not the others
                self._fail(plan.newcomers, exc, plan.batch.name)
                continue
            self._count(sum(len(r.generated) for r in plan.newcomers))
            self.max_batch_seen = max(self.max_batch_seen, len(plan.batch))
        if requeue:
            still = sorted(requeue + still, key=lambda r: r.seq)
        with self._lock:
            self._waiting = still + self._waiting  # anything taken in meanwhile goes behind
            for key, batch in list(self._batches.items()):
                if not len(batch):
                    batch.release()
                    del self._batches[key]
        for i, r in enumerate(still):
            if r.queue_position != i:
                r.queue_position = i
                r._publish()

    def _can_never_fit(self, batch: ModelBatch, r: Request, free: int) -> bool:
        """Even with every KV cache of this engine released, this request would not fit."""
        return r.need_tokens * batch.kv.bytes_per_token > free + self.budget.held_bytes

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
        """A fault that keeps coming back: fail the running rows, free every batch, keep serving."""
        with self._lock:
            batches = list(self._batches.items())
        for key, batch in batches:
            self._fail(batch.rows, UserError("engine.err_loop", detail=f"{type(exc).__name__}: {exc}"[:200]),
                       batch.name)
            self._discard(key)

    def _count(self, n: int) -> None:
        with self._lock:
            self._tokens += n
            self._tok_window.append((time.perf_counter(), n))
