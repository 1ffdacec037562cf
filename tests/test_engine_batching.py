"""The decode engine batches concurrent requests without changing what each one gets."""
from __future__ import annotations

import threading

import pytest

from engine.generation import DecodeEngine, SamplingParams, generate_many, stream

PROMPTS = ["Bonjour", "Quelle est la capitale de l'Italie ?", "1, 2, 3,", "Il était une fois un dragon",
           "Explique la photosynthèse.", "def add(a, b):", "Le chat", "Pourquoi le ciel est-il bleu ?",
           "Liste de courses :", "Once upon a time"]


@pytest.fixture(scope="module")
def handle(manager):
    return manager.llm(manager.catalog.spec("instruct_llm"))


def alone(handle, text, params):
    eng = DecodeEngine(background=False)
    req = eng.submit(handle, handle.prepare_raw(text), params)
    list(eng.wait([req]))
    return req.generated


def test_concurrent_requests_are_batched_and_exact(handle):
    params = SamplingParams(max_new_tokens=12, greedy=True)
    expected = [alone(handle, p, params) for p in PROMPTS]
    eng = DecodeEngine(background=True)
    results: dict[int, list[int]] = {}

    def worker(i):
        last = list(stream(handle, handle.prepare_raw(PROMPTS[i]), params, eng=eng))[-1]
        results[i] = last.token_ids

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(PROMPTS))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert [results[i] for i in range(len(PROMPTS))] == expected
    assert eng.stats()["max_batch_seen"] > 1


def test_request_joining_mid_flight_gets_its_own_output(handle):
    params_long = SamplingParams(max_new_tokens=30, greedy=True)
    params_short = SamplingParams(max_new_tokens=8, greedy=True)
    eng = DecodeEngine(background=False)
    first = eng.submit(handle, handle.prepare_raw(PROMPTS[3]), params_long)
    for _ in range(5):
        eng.run_once()
    second = eng.submit(handle, handle.prepare_raw(PROMPTS[1]), params_short)
    list(eng.wait([first, second]))
    assert first.generated == alone(handle, PROMPTS[3], params_long)
    assert second.generated == alone(handle, PROMPTS[1], params_short)
    assert eng.max_batch_seen == 2


def test_cancel_stops_only_that_request(handle):
    params = SamplingParams(max_new_tokens=40, greedy=True)
    eng = DecodeEngine(background=False)
    a = eng.submit(handle, handle.prepare_raw(PROMPTS[0]), params)
    b = eng.submit(handle, handle.prepare_raw(PROMPTS[2]), params)
    for _ in range(3):
        eng.run_once()
    a.cancel()
    list(eng.wait([a, b]))
    assert a.reason == "stopped" and len(a.generated) < 40
    assert b.reason == "length" and b.generated == alone(handle, PROMPTS[2], params)


def test_per_request_seeds_and_settings_are_honoured_in_a_batch(handle):
    hot = SamplingParams(max_new_tokens=10, temperature=1.2, top_k=0, top_p=1.0, seed=5)
    greedy = SamplingParams(max_new_tokens=10, greedy=True)
    eng = DecodeEngine(background=False)
    r1 = eng.submit(handle, handle.prepare_raw(PROMPTS[0]), hot)
    r2 = eng.submit(handle, handle.prepare_raw(PROMPTS[0]), greedy)
    list(eng.wait([r1, r2]))
    assert r1.generated == alone(handle, PROMPTS[0], hot)
    assert r2.generated == alone(handle, PROMPTS[0], greedy)


def test_self_consistency_samples_are_one_batch(handle):
    eng = DecodeEngine(background=False)
    prompt = handle.prepare_chat([{"role": "user", "content": "Combien font 3 + 4 ?"}])
    outs = generate_many(handle, [prompt], SamplingParams(max_new_tokens=6, temperature=1.0, seed=1),
                         n_per_prompt=5, eng=eng)
    assert len(outs) == 5 and eng.max_batch_seen == 5
    assert len({tuple(o.token_ids) for o in outs}) > 1  # different seeds, different samples
