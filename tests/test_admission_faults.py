"""Admission cannot lose a request (issue #23): whatever raises while the engine admits, each
waiting request is served or ends with a message, its model lease is given back, and the loop
serves on; a deadline bounds every wait; "never fits" is judged against the most memory the
model could get, not what a passing job leaves free."""
from __future__ import annotations

import threading

import pytest
import torch

from engine.models import leases
from engine.runtime.fairness import FairGate
from engine.generation import DecodeEngine, SamplingParams
from engine.generation import admission
from engine.generation.admission import KVBudget
from engine.generation.kv import kv_spec
from engine.serving.manager import ModelManager

PARAMS = SamplingParams(max_new_tokens=8, greedy=True)
WORDS = ["Bonjour", "Salut", "Merci", "Pomme"]


@pytest.fixture(scope="module")
def handle(manager):
    return manager.llm(manager.catalog.spec("instruct_llm"))


@pytest.fixture(scope="module")
def base(manager):
    return manager.llm(manager.catalog.spec("base_llm"))


def ids_of(handle, word: str, length: int = 6) -> list[int]:
    return handle.prepare_raw(f"{word} " * 8).input_ids[:length]


def solo(handle, ids) -> list[int]:
    eng = DecodeEngine(background=False)
    req = eng.submit(handle, ids, PARAMS)
    list(eng.wait([req]))
    return req.generated


def one_row_engine(handle, **kw) -> DecodeEngine:
    """Room for one of these requests at a time: the others wait, so admission runs many times."""
    return DecodeEngine(background=False, kv_budget_bytes=(6 + PARAMS.max_new_tokens) * kv_spec(handle.model).bytes_per_token,
                        **kw)


def submit_all(eng, handle, first=None) -> list:
    """``first`` (another model, default the same) takes the only row; the others wait. With
    another model their own batch is empty, so admission also asks whether they could ever fit."""
    first = first or handle
    return [eng.submit(first, ids_of(first, WORDS[0]), PARAMS)] + [eng.submit(handle, ids_of(handle, w), PARAMS)
                                                                  for w in WORDS[1:]]


def expected(handle, base=None) -> list[list[int]]:
    return [solo(base or handle, ids_of(base or handle, WORDS[0]))] + [solo(handle, ids_of(handle, w))
                                                                      for w in WORDS[1:]]


def run_to_end(eng, reqs, most: int = 400) -> None:
    """Drive the loop as the serving thread does (each iteration guarded) until all ended."""
    for _ in range(most):
        if all(r.done for r in reqs):
            return
        eng._guarded_run_once()
    raise AssertionError(f"requests never ended: {[(r.reason, r.queue_position) for r in reqs]}")


def faulty(monkeypatch, cls, name: str, times: int | None, exc: Exception):
    """Make ``cls.name`` raise ``exc`` its first ``times`` calls (None: always)."""
    original = getattr(cls, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if times is None or calls["n"] <= times:
            raise exc
        return original(*args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)
    return calls


def still_serving(eng, handle) -> None:
    """Called once the fault is gone."""
    req = eng.submit(handle, ids_of(handle, "Soleil"), PARAMS)
    run_to_end(eng, [req])
    assert req.error is None and req.generated == solo(handle, ids_of(handle, "Soleil"))


@pytest.mark.parametrize("where", ["free", "mem_get_info", "can_never_fit"])
def test_a_passing_fault_in_admission_loses_nobody(handle, base, monkeypatch, where):
    """It raises once: every waiting request is still served, with its own tokens (before, the
    waiting list was taken out for the round and lost: neither done nor waiting, lease held)."""
    first = base if where == "can_never_fit" else handle  # never-fit is asked only of an empty batch
    want = expected(handle, first)
    eng = one_row_engine(handle)
    reqs = submit_all(eng, handle, first=first)
    eng.run_once()  # the first one runs, the others wait
    if where == "free":
        calls = faulty(monkeypatch, KVBudget, "free", 1, RuntimeError("injected: free failed"))
    elif where == "mem_get_info":
        calls = cuda_memory_query_raises(monkeypatch, times=1)
    else:
        calls = faulty(monkeypatch, DecodeEngine, "_can_never_fit", 1, RuntimeError("injected: never-fit failed"))
    run_to_end(eng, reqs)
    assert calls["n"] >= 1
    assert [r.error for r in reqs] == [None] * 4
    assert [r.generated for r in reqs] == want
    assert leases.count(handle) == leases.count(base) == 0 and eng.admission_faults >= 1 and not eng._waiting
    monkeypatch.undo()
    still_serving(eng, handle)


@pytest.mark.parametrize("where", ["free", "mem_get_info", "can_never_fit"])
def test_a_fault_that_stays_fails_the_waiting_with_a_message_and_frees_their_leases(handle, base, monkeypatch,
                                                                                    where):
    want = expected(handle, base)
    eng = one_row_engine(handle)
    reqs = submit_all(eng, handle, first=base)
    eng.run_once()
    if where == "free":
        faulty(monkeypatch, KVBudget, "free", None, RuntimeError("injected: free failed"))
    elif where == "mem_get_info":
        cuda_memory_query_raises(monkeypatch, times=None)
    else:
        faulty(monkeypatch, DecodeEngine, "_can_never_fit", None, RuntimeError("injected: never-fit failed"))
    run_to_end(eng, reqs)
    first, waiting = reqs[0], reqs[1:]
    assert first.error is None and first.generated == want[0]  # running: untouched
    for r, tokens in zip(waiting, want[1:]):  # each one: served, or ended with the message
        if r.reason == "error":
            assert r.error.key == "engine.err_admission" and "injected" in r.error.params["detail"], r.error
        else:  # never-fit is only asked while the other model holds the memory: later ones fit
            assert where == "can_never_fit" and r.error is None and r.generated == tokens
    assert waiting[0].reason == "error"
    assert leases.count(handle) == leases.count(base) == 0 and not eng._waiting
    monkeypatch.undo()
    still_serving(eng, handle)


def cuda_memory_query_raises(monkeypatch, times: int | None):
    """The engine reads the device's free memory (``torch.cuda.mem_get_info``) and it raises: on CPU,
    make the budget ask the CUDA query too, as on a GPU."""
    calls = {"n": 0}

    def mem_get_info(device=None):
        calls["n"] += 1
        if times is None or calls["n"] <= times:
            raise RuntimeError("injected: CUDA error: mem_get_info failed")
        return 2**40, 2**40

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    original = KVBudget.free
    monkeypatch.setattr(KVBudget, "free",
                        lambda self, device: min(original(self, device),
                                                 admission.device_free_bytes(torch.device("cuda"))))
    return calls


def test_a_loop_that_keeps_failing_ends_waiting_requests_too(handle, monkeypatch):
    """Three loop-level failures in a row: every request, running or waiting, ends with a message
    and gives its lease back (``_reset``); then the loop serves again."""
    eng = one_row_engine(handle)
    reqs = submit_all(eng, handle)
    eng.run_once()
    faulty(monkeypatch, DecodeEngine, "_admit", None, RuntimeError("injected: admission broken"))
    run_to_end(eng, reqs, most=10)
    assert all(r.reason == "error" and r.error.key == "engine.err_loop" for r in reqs), [r.error for r in reqs]
    assert leases.count(handle) == 0 and not eng._waiting and not eng._batches
    monkeypatch.undo()
    still_serving(eng, handle)


def test_every_wait_has_a_deadline_that_says_why(handle):
    """A request that cannot be admitted within ``queue_wait_s`` ends with a message saying how
    long it waited and how many were ahead; its lease is given back (no clock: a deadline of 0)."""
    eng = one_row_engine(handle, queue_wait_s=0)
    reqs = submit_all(eng, handle)
    run_to_end(eng, reqs)
    assert reqs[0].error is None  # it fitted: no wait
    for r in reqs[1:]:
        assert r.reason == "error" and r.error.key == "engine.err_queue_timeout"
        assert r.error.params["model"] == handle.spec.id and r.error.params["seconds"] >= 0
        assert r.error.params["ahead"] == 0  # those before it were ended too
    assert leases.count(handle) == 0


def test_an_image_turn_has_a_deadline_too():
    from engine.runtime.fairness import WaitedTooLong

    gate = FairGate(1)
    held = threading.Event()
    release = threading.Event()

    def holder():
        with gate.turn("student-a"):
            held.set()
            release.wait(30)

    th = threading.Thread(target=holder)
    th.start()
    held.wait(30)
    with pytest.raises(WaitedTooLong) as err:
        with gate.turn("student-b", deadline_s=0):
            pass
    assert err.value.key == "engine.err_turn_timeout" and err.value.params["ahead"] == 1
    release.set()
    th.join(30)
    with gate.turn("student-b", deadline_s=0):  # free now: no wait, no timeout
        pass


def test_never_fits_is_judged_against_the_most_the_model_could_get(manager, handle):
    """An image job holds most of the budget for a moment (a reservation): a request that needs
    more than what is free *now* waits for it, instead of being told it can never fit."""
    spec = manager.catalog.spec("instruct_llm")
    ledger = ModelManager(manager.catalog, manager.hardware, budget_bytes=manager.estimate_bytes(spec) * 2, wait_s=5)
    local = ledger.llm(spec)
    bpt = kv_spec(local.model).bytes_per_token
    need = (6 + PARAMS.max_new_tokens) * bpt
    room = ledger.budget - ledger.used_bytes()
    eng = DecodeEngine(background=False, memory=ledger)
    image_job = threading.Event()
    done = threading.Event()

    def passing_image():
        with ledger.reservation("image-job", room - need // 2, "tiny/sdxl"):
            image_job.set()
            done.wait(30)

    th = threading.Thread(target=passing_image)
    th.start()
    image_job.wait(30)
    req = eng.submit(local, ids_of(local, "Bonjour"), PARAMS)
    for _ in range(5):
        eng.run_once()
    assert not req.done and req.queue_position == 0  # waiting for the image job, not refused
    done.set()
    th.join(30)
    list(eng.wait([req]))
    assert req.error is None and req.generated == solo(local, ids_of(local, "Bonjour"))
    too_long = eng.submit(local, ids_of(local, "Salut"), SamplingParams(max_new_tokens=10**7, greedy=True))
    list(eng.wait([too_long]))
    assert too_long.error.key == "engine.err_kv_too_long"
    assert too_long.error.params["free_mb"] == round(ledger.most_bytes(local) / 2**20, 1)
