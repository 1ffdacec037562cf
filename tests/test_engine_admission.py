"""Admission by memory: requests join a batch while their KV cache fits, the others wait in order
and know their place; joining and leaving never copies the batch's cache."""
from __future__ import annotations

import pytest

from engine.generation import DecodeEngine, SamplingParams
from engine.generation.kv import kv_spec

PARAMS = SamplingParams(max_new_tokens=8, greedy=True)
WORDS = ["Bonjour", "Salut", "Merci", "Pomme", "Soleil", "Fleur"]


@pytest.fixture(scope="module")
def handles(manager):
    return (manager.llm(manager.catalog.spec("instruct_llm")), manager.llm(manager.catalog.spec("base_llm")))


def ids_of(handle, word: str, length: int = 6) -> list[int]:
    """A prompt of exactly ``length`` tokens (equal needs make the arithmetic of the budget exact)."""
    ids = handle.prepare_raw(f"{word} " * 8).input_ids[:length]
    assert len(ids) == length
    return ids


def solo(handle, ids, params=PARAMS) -> list[int]:
    eng = DecodeEngine(background=False)
    req = eng.submit(handle, ids, params)
    list(eng.wait([req]))
    return req.generated


def test_requests_wait_for_memory_in_order_and_know_their_place(handles):
    handle = handles[0]
    bpt = kv_spec(handle.model).bytes_per_token
    need = 6 + PARAMS.max_new_tokens
    prompts = [ids_of(handle, w) for w in WORDS[:5]]
    eng = DecodeEngine(background=False, kv_budget_bytes=2 * need * bpt + need * bpt // 2)  # 2.5 rows
    reqs = [eng.submit(handle, p, PARAMS) for p in prompts]
    eng.run_once()
    assert [r.queue_position for r in reqs] == [None, None, 0, 1, 2]
    assert [r.update().queue_position for r in reqs] == [None, None, 0, 1, 2]
    assert eng.stats()["waiting"] == 3 and eng.stats()["batch_size"] == 2
    list(eng.wait(reqs))
    assert [r.generated for r in reqs] == [solo(handle, p) for p in prompts]
    assert eng.max_batch_seen == 2 and eng.budget.peak_bytes <= 2.5 * need * bpt
    assert all(r.queue_position is None for r in reqs)
    first_tokens = [r.first_token_at for r in reqs]
    assert first_tokens == sorted(first_tokens)  # served in the order they came


def test_a_long_request_is_not_overtaken_by_short_ones(handles):
    """Strict FIFO across models: the short request for another model fits in memory, but it
    came after the long one, so it waits for it."""
    instruct, base = handles
    bpt = kv_spec(instruct.model).bytes_per_token
    long_params = SamplingParams(max_new_tokens=24, greedy=True)
    short_params = SamplingParams(max_new_tokens=4, greedy=True)
    budget = 40 * bpt  # one 30-token row fits, two do not; 30 + 10 does
    eng = DecodeEngine(background=False, kv_budget_bytes=budget)
    first = eng.submit(instruct, ids_of(instruct, "Bonjour"), long_params)
    eng.run_once()
    second = eng.submit(instruct, ids_of(instruct, "Salut"), long_params)
    short = eng.submit(base, ids_of(base, "Merci"), short_params)
    eng.run_once()
    assert (second.queue_position, short.queue_position) == (0, 1)
    list(eng.wait([first, second, short]))
    assert short.first_token_at > second.first_token_at > first.first_token_at
    assert second.generated == solo(instruct, ids_of(instruct, "Salut"), long_params)
    assert short.generated == solo(base, ids_of(base, "Merci"), short_params)
    assert eng.budget.peak_bytes <= budget


def test_a_request_that_can_never_fit_says_so(handles):
    handle = handles[0]
    bpt = kv_spec(handle.model).bytes_per_token
    eng = DecodeEngine(background=False, kv_budget_bytes=10 * bpt)
    req = eng.submit(handle, ids_of(handle, "Bonjour"), PARAMS)  # needs 14 positions
    list(eng.wait([req]))
    assert req.reason == "error" and req.error.key == "engine.err_kv_too_long"
    assert req.error.params["tokens"] == 14
    ok = eng.submit(handle, ids_of(handle, "Salut", 2), SamplingParams(max_new_tokens=4, greedy=True))
    list(eng.wait([ok]))
    assert ok.error is None and len(ok.generated) == 4


def test_joining_and_leaving_reuse_the_rows_in_place(handles):
    handle = handles[0]
    short = SamplingParams(max_new_tokens=3, greedy=True)
    eng = DecodeEngine(background=False)
    first = [eng.submit(handle, ids_of(handle, w), p) for w, p in zip(WORDS[:4], [PARAMS, short, PARAMS, short])]
    eng.run_once()
    batch = eng._batches[id(handle)]
    storage = [t.data_ptr() for t in batch.cache.keys + batch.cache.values]
    rows = batch.cache.rows
    for _ in range(3):
        eng.run_once()  # the two short ones finish and leave
    assert len(batch) == 2
    late = [eng.submit(handle, ids_of(handle, w), PARAMS) for w in WORDS[4:6]]
    eng.run_once()  # they join the two free rows: nothing else is allocated or moved
    assert len(batch) == 4 and batch.cache.rows == rows == 4
    assert [t.data_ptr() for t in batch.cache.keys + batch.cache.values] == storage
    list(eng.wait(first + late))
    assert eng._batches.get(id(handle)) is None and batch.cache is None  # the cache went with the last row
    for r, w in zip(first + late, WORDS):
        assert r.generated == solo(handle, ids_of(handle, w), r.params)


# ------------------------------------------------------------------ fair turns (issue #23)
def admitted_order(eng: DecodeEngine, reqs) -> list:
    """Run the engine to the end; the requests in the order they got their first token."""
    list(eng.wait(reqs))
    return sorted(reqs, key=lambda r: r.first_token_at)


def test_a_student_with_one_request_never_waits_behind_another_students_backlog(handles):
    """Room for one row at a time. Student A clicks six times, then B and C ask once each: B and C
    are served right after A's first request, not after A's six; A's backlog keeps its order."""
    handle = handles[0]
    bpt = kv_spec(handle.model).bytes_per_token
    eng = DecodeEngine(background=False, kv_budget_bytes=(6 + PARAMS.max_new_tokens) * bpt)  # one row
    spam = [eng.submit(handle, ids_of(handle, WORDS[i % len(WORDS)]), PARAMS, owner="A") for i in range(6)]
    eng.run_once()  # A's first request runs, its five others wait
    b = eng.submit(handle, ids_of(handle, "Salut"), PARAMS, owner="B")
    c = eng.submit(handle, ids_of(handle, "Merci"), PARAMS, owner="C")
    eng.run_once()
    assert (b.queue_position, c.queue_position) == (0, 1)  # ahead of A's backlog, in their arrival order
    assert [r.queue_position for r in spam[1:]] == [2, 3, 4, 5, 6]
    order = admitted_order(eng, spam + [b, c])
    assert order == [spam[0], b, c] + spam[1:]
    assert [r.generated for r in (b, c)] == [solo(handle, ids_of(handle, w)) for w in ("Salut", "Merci")]


def test_the_place_shown_is_the_place_served(handles):
    """Three students, several requests each, one row at a time: at every step, the places shown
    (0, 1, 2 …) list the waiting requests in exactly the order they are then served, round-robin."""
    handle = handles[0]
    bpt = kv_spec(handle.model).bytes_per_token
    eng = DecodeEngine(background=False, kv_budget_bytes=(6 + PARAMS.max_new_tokens) * bpt)
    reqs = [eng.submit(handle, ids_of(handle, WORDS[i % len(WORDS)]), PARAMS, owner=f"S{s}")
            for i, s in enumerate((0, 0, 0, 0, 1, 2, 1))]
    shown: list[list] = []
    while not all(r.done for r in reqs):
        eng.run_once()
        waiting = sorted((r for r in reqs if r.queue_position is not None), key=lambda r: r.queue_position)
        assert [r.queue_position for r in waiting] == list(range(len(waiting)))
        shown.append(waiting)
    served = sorted(reqs, key=lambda r: r.first_token_at)
    assert [r.owner for r in served] == ["S0", "S1", "S2", "S0", "S1", "S0", "S0"]
    for waiting in shown:
        assert waiting == [r for r in served if r in waiting]


def test_turns_forget_owners_who_left(handles):
    """A thousand sessions, one request each: nothing per session stays behind in the engine."""
    from engine.models import leases

    handle = handles[0]
    eng = DecodeEngine(background=False)
    reqs = [eng.submit(handle, ids_of(handle, "Bonjour", 2), SamplingParams(max_new_tokens=1, greedy=True),
                       owner=f"session-{i}") for i in range(1000)]
    list(eng.wait(reqs))
    assert all(r.reason == "length" for r in reqs)
    assert eng.turns.owners() == 0 and eng.stats()["waiting"] == 0 and not eng._waiting
    assert leases.count(handle) == 0
    assert len(eng._tok_window) <= 7  # per-second buckets of the last seconds, not one entry per token
