"""Faults stay local: whatever fails in the decode loop fails only the requests it touches; the
other users get exactly the tokens they get alone, and the engine keeps serving."""
from __future__ import annotations

import threading

import pytest
import torch

from engine.generation import DecodeEngine, ModelBatch, SamplingParams, stream
from engine.generation.kv import SlotCache

PROMPTS = ["Bonjour", "Quelle est la capitale de l'Italie ?", "1, 2, 3,", "Il était une fois un dragon",
           "Explique la photosynthèse.", "Le chat"]
PARAMS = SamplingParams(max_new_tokens=8, greedy=True)


@pytest.fixture(scope="module")
def handle(manager):
    return manager.llm(manager.catalog.spec("instruct_llm"))


@pytest.fixture(scope="module")
def expected(handle):
    return [solo(handle, p) for p in PROMPTS]


def solo(handle, text: str, params: SamplingParams = PARAMS) -> list[int]:
    eng = DecodeEngine(background=False)
    req = eng.submit(handle, handle.prepare_raw(text), params)
    list(eng.wait([req]))
    assert req.error is None
    return req.generated


def run_all(handle, texts=PROMPTS, eng: DecodeEngine | None = None, warm_steps: int = 0, late: int = 0):
    """Submit ``texts`` (the last ``late`` ones after ``warm_steps`` steps); run to the end."""
    eng = eng or DecodeEngine(background=False)
    first = [eng.submit(handle, handle.prepare_raw(t), PARAMS) for t in texts[:len(texts) - late]]
    for _ in range(warm_steps):
        eng.run_once()
    later = [eng.submit(handle, handle.prepare_raw(t), PARAMS) for t in texts[len(texts) - late:]]
    reqs = first + later
    list(eng.wait(reqs))
    return eng, reqs


def still_serving(eng: DecodeEngine, handle, expected) -> None:
    req = eng.submit(handle, handle.prepare_raw(PROMPTS[0]), PARAMS)
    list(eng.wait([req]))
    assert req.generated == expected[0] and req.error is None


def check(reqs, expected, failed: set[int], key: str | None = None) -> None:
    for i, r in enumerate(reqs):
        if i in failed:
            assert r.reason == "error", (i, r.reason)
            if key:
                assert getattr(r.error, "key", None) == key, r.error
        else:
            assert r.error is None and r.generated == expected[i], (i, r.error)


def test_prefill_failure_fails_only_that_prompt(handle, expected, monkeypatch):
    original = ModelBatch._prefill_forward

    def prefill(self, group):
        if any(r.input_ids == handle.prepare_raw(PROMPTS[2]).input_ids for r in group):
            raise RuntimeError("injected prefill failure")
        return original(self, group)

    monkeypatch.setattr(ModelBatch, "_prefill_forward", prefill)
    eng, reqs = run_all(handle)
    check(reqs, expected, {2}, "engine.err_row_failed")
    assert "injected prefill failure" in str(reqs[2].error.params["detail"])
    monkeypatch.undo()
    still_serving(eng, handle, expected)


def test_merge_failures_fail_only_the_newcomers(handle, expected, monkeypatch):
    # a newcomer that cannot be placed in its row
    original = ModelBatch._place

    def place(self, r, layers, width, token):
        if r.input_ids == handle.prepare_raw(PROMPTS[4]).input_ids:
            raise RuntimeError("injected merge failure")
        return original(self, r, layers, width, token)

    monkeypatch.setattr(ModelBatch, "_place", place)
    eng, reqs = run_all(handle, warm_steps=2, late=3)
    check(reqs, expected, {4}, "engine.err_row_failed")
    monkeypatch.undo()
    # the cache cannot grow for the late joiners: they fail, the running rows go on
    calls = {"n": 0}
    original_grown = SlotCache.grown

    def grown(self, rows, length):
        calls["n"] += 1
        raise RuntimeError("injected growth failure")

    monkeypatch.setattr(SlotCache, "grown", grown)
    eng, reqs = run_all(handle, eng=eng, warm_steps=2, late=3)
    assert calls["n"] >= 1
    check(reqs, expected, {3, 4, 5})
    monkeypatch.setattr(SlotCache, "grown", original_grown)
    still_serving(eng, handle, expected)


def test_step_failure_fails_only_the_row_that_fails(handle, expected, monkeypatch):
    original = ModelBatch._forward
    poison = handle.prepare_raw(PROMPTS[1]).input_ids

    def forward(self, lo, hi):
        if any(self.slots[s] is not None and self.slots[s].input_ids == poison and len(self.slots[s].generated) >= 3
               for s in range(lo, hi)):
            raise RuntimeError("injected step failure")
        return original(self, lo, hi)

    monkeypatch.setattr(ModelBatch, "_forward", forward)
    eng, reqs = run_all(handle)
    check(reqs, expected, {1}, "engine.err_row_failed")
    assert len(reqs[1].generated) == 3 and reqs[1].generated == expected[1][:3]
    monkeypatch.undo()
    still_serving(eng, handle, expected)


def test_drop_failure_does_not_stop_the_loop(handle, expected, monkeypatch):
    original = ModelBatch.drop_finished
    calls = {"n": 0}

    def drop(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected drop failure")
        return original(self)

    monkeypatch.setattr(ModelBatch, "drop_finished", drop)
    eng, reqs = run_all(handle, PROMPTS[:3] + ["Court"], late=1, warm_steps=1)
    check(reqs, expected[:3] + [solo(handle, "Court")], set())
    assert calls["n"] > 2
    still_serving(eng, handle, expected)


def test_out_of_memory_splits_the_batch(handle, expected, monkeypatch):
    original = ModelBatch._forward
    sizes = []

    def forward(self, lo, hi):
        live = sum(self._live(s) for s in range(lo, hi))
        sizes.append(live)
        if live > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return original(self, lo, hi)

    monkeypatch.setattr(ModelBatch, "_forward", forward)
    eng, reqs = run_all(handle)
    check(reqs, expected, set())
    assert max(sizes) == len(PROMPTS) and any(0 < s <= 2 for s in sizes)  # tried whole, then in parts


def test_out_of_memory_on_one_row_fails_the_newest(handle, expected, monkeypatch):
    original = ModelBatch._forward
    newest = handle.prepare_raw(PROMPTS[-1]).input_ids

    def forward(self, lo, hi):
        if any(self._live(s) and self.slots[s].input_ids == newest for s in range(lo, hi)):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return original(self, lo, hi)

    monkeypatch.setattr(ModelBatch, "_forward", forward)
    eng, reqs = run_all(handle, late=1, warm_steps=2)
    check(reqs, expected, {len(PROMPTS) - 1}, "engine.err_oom_row")
    monkeypatch.undo()
    still_serving(eng, handle, expected)


def test_a_nan_row_fails_alone(handle, expected, monkeypatch):
    original = ModelBatch._forward
    poison = handle.prepare_raw(PROMPTS[3]).input_ids

    def forward(self, lo, hi):
        logits = original(self, lo, hi)
        for s in range(lo, hi):
            if self._live(s) and self.slots[s].input_ids == poison and len(self.slots[s].generated) == 2:
                logits[s - lo] = float("nan")
        return logits

    monkeypatch.setattr(ModelBatch, "_forward", forward)
    eng, reqs = run_all(handle)
    check(reqs, expected, {3}, "engine.err_nan")
    assert reqs[3].generated == expected[3][:2]
    monkeypatch.undo()
    still_serving(eng, handle, expected)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread death is injected
def test_the_loop_survives_and_restarts(handle, expected, monkeypatch):
    eng = DecodeEngine(background=True)
    original = DecodeEngine.run_once
    calls = {"n": 0}

    def run_once(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected loop failure")  # guarded: the loop goes on
        if calls["n"] == 4:
            raise SystemExit("injected thread death")  # kills the thread: the next wait starts it again
        return original(self)

    monkeypatch.setattr(DecodeEngine, "run_once", run_once)
    results: dict[int, list[int]] = {}

    def user(i):
        results[i] = list(stream(handle, handle.prepare_raw(PROMPTS[i]), PARAMS, eng=eng))[-1].token_ids

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(PROMPTS))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert [results.get(i) for i in range(len(PROMPTS))] == expected
    assert eng.crashes == 1 and calls["n"] > 4
    assert eng.stats()["waiting"] == 0
    eng.close()


def test_a_reused_row_never_sees_what_the_previous_request_left(handle, expected):
    """A row is reused by the next request: whatever the previous one wrote (here NaN, as after an
    overflow) must not reach it, even in the columns its attention mask hides."""
    eng = DecodeEngine(background=False)
    first = eng.submit(handle, handle.prepare_raw(PROMPTS[3]), SamplingParams(max_new_tokens=12, greedy=True))
    other = eng.submit(handle, handle.prepare_raw(PROMPTS[1]), SamplingParams(max_new_tokens=40, greedy=True))
    eng.run_once()
    batch = eng._batches[id(handle)]
    slot = batch.slots.index(first)
    while not first.done:
        eng.run_once()
    assert batch.slots[slot] is None and batch.cache.written[slot] > len(first.input_ids)
    with torch.inference_mode():  # the cache is made of inference tensors
        for t in batch.cache.keys + batch.cache.values:
            t[slot, :, : batch.cache.written[slot]] = float("nan")
    short = eng.submit(handle, handle.prepare_raw(PROMPTS[0]), PARAMS)  # a shorter prompt takes the row
    eng.run_once()
    assert batch.slots[slot] is short
    list(eng.wait([other, short]))
    assert short.error is None and short.generated == expected[0]
