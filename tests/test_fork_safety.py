"""What a forked ZeroGPU worker inherits (issue #23): every lock of the engine that another thread
held at the fork is free in the child, and the state of the parent's threads (leases, reserved
memory, image turns, queued comparisons, unfinished warm-ups) is not there to block it.

The child is made with ``fork`` while a parent thread holds every lock, as ``spaces`` forks its
worker while Gradio's and the engine's threads run."""
from __future__ import annotations

import multiprocessing
import threading

from engine.runtime import forksafe
from engine.models import leases
from engine.runtime.build_lock import BUILD_LOCK
from engine.runtime.fairness import FairGate
from engine.models.fastpath import FastPath
from engine.generation import DecodeEngine
from engine.generation.admission import KVBudget
from engine.serving.manager import ModelManager
from engine.quantization import live_runs, warmup
from engine.runtime.stopping import BOARD


def _child(report, objects) -> None:
    """In the forked child: can each lock be taken (within 5 s: a deadlock never ends)?"""
    mm, budget, eng, fast, gate, quant_gate, model = objects
    checks = {
        "leases": lambda: leases._lock, "kv budget": lambda: budget._lock, "engine": lambda: eng._lock,
        "engine inbox": lambda: eng._inbox.mutex, "fast path": lambda: fast._lock, "image turns": lambda: gate._cond,
        "model cache": lambda: mm._lock, "stop board": lambda: BOARD._lock, "build": lambda: BUILD_LOCK,
        "quantization queue": lambda: quant_gate._cond, "quantization gates": lambda: live_runs._gates_lock,
        "warm-up": lambda: warmup._lock,
    }
    stuck = []
    for name, lock in checks.items():
        if lock().acquire(timeout=5):
            lock().release()
        else:
            stuck.append(name)
    state = {"leases": leases.total(), "reserved": dict(mm._reserved), "waiting loads": len(mm._waiting_loads),
             "image turns busy": gate._busy, "quantization running": quant_gate.running(),
             "fast path leased": [d.leased for d in fast.decoders], "engine waiting": len(eng._waiting),
             "unfinished warm-ups": [k for k, s in warmup._steps.items() if not s.done.is_set()]}
    try:
        with gate.turn("child", deadline_s=5):  # the parent's turn is not held here
            state["turn taken"] = True
    except Exception as exc:  # noqa: BLE001
        state["turn taken"] = repr(exc)
    report.send((stuck, state))


def test_a_forked_child_inherits_no_held_lock_and_none_of_the_parents_work(manager):
    spec = manager.catalog.spec("instruct_llm")
    handle = manager.llm(spec)
    mm = ModelManager(manager.catalog, manager.hardware, budget_bytes=10**10)
    budget, eng, gate = KVBudget(), DecodeEngine(background=False), FairGate(1)
    fast = FastPath(handle.model, compiled=False)
    quant_gate = live_runs.gate_for(mm)
    locks = [leases._lock, budget._lock, eng._lock, eng._inbox.mutex, fast._lock, gate._cond, mm._lock,
             BOARD._lock, BUILD_LOCK, quant_gate._cond, live_runs._gates_lock, warmup._lock]
    held, done = threading.Event(), threading.Event()

    def parent_thread() -> None:  # holds a lease, a turn, memory, a decoder, a queued run… and every lock
        leases.acquire(handle, "parent-request")
        mm.set_reserved("kv:parent", 10**6)
        fast.acquire(16)
        quant_gate.enter(1)
        warmup._steps[("parent-step", "cpu")] = warmup.Step("parent-step", "cpu")
        with gate.turn("parent"):
            for lock in locks:
                lock.acquire()
            held.set()
            done.wait(60)
            for lock in reversed(locks):
                lock.release()

    thread = threading.Thread(target=parent_thread, daemon=True)
    thread.start()
    try:
        assert held.wait(60)
        ctx = multiprocessing.get_context("fork")
        mine, theirs = ctx.Pipe()
        child = ctx.Process(target=_child, args=(theirs, (mm, budget, eng, fast, gate, quant_gate, handle)))
        child.start()
        assert mine.poll(120), "the child never answered"
        stuck, state = mine.recv()
        child.join(30)
    finally:
        done.set()
        thread.join(30)
        leases.release(handle, "parent-request")
        warmup._steps.pop(("parent-step", "cpu"), None)
    assert stuck == [], f"locks still held in the child: {stuck}"
    assert state == {"leases": 0, "reserved": {}, "waiting loads": 0, "image turns busy": 0, "quantization running": 0,
                     "fast path leased": [False] * len(fast.decoders), "engine waiting": 0,
                     "unfinished warm-ups": [], "turn taken": True}


def test_renewals_are_held_weakly():
    """Registering costs nothing once the object is gone (an inline engine per ZeroGPU call)."""
    import gc

    before = len(forksafe._objects)
    engines = [DecodeEngine(background=False) for _ in range(50)]
    assert len(forksafe._objects) >= before + 50
    del engines
    gc.collect()
    assert len(forksafe._objects) <= before + 1
