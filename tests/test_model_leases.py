"""The model cache never evicts a model in use, books loads before they run, waits (bounded) when
nothing can be evicted, and lets the LLMs and the image pipelines take turns on a small budget."""
from __future__ import annotations

import threading
import time

import pytest

from engine.images import imagegen
from engine.chat.compare import compare_stream
from engine.errors import UserError
from engine.generation import DecodeEngine, SamplingParams, stream
from engine.serving.manager import ModelManager

PARAMS = SamplingParams(max_new_tokens=6, greedy=True)


@pytest.fixture(scope="module")
def specs(manager):
    return manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm")


def one_model_budget(manager, spec) -> ModelManager:
    """A cache with room for one tiny LLM (and its KV caches), not two."""
    return ModelManager(manager.catalog, manager.hardware, budget_bytes=int(manager.estimate_bytes(spec) * 1.5),
                        wait_s=20)


def solo(manager, spec, text: str) -> list[int]:
    handle = manager.llm(spec)
    return list(stream(handle, handle.prepare_raw(text), PARAMS, eng=DecodeEngine(background=False)))[-1].token_ids


def test_a_model_in_use_is_not_evicted_the_newcomer_waits(manager, specs):
    base, instruct = specs
    small = one_model_budget(manager, base)
    small.wait_s = 0.5
    with small.using(base) as handle:
        assert small.in_use(base)
        outcome = {}

        def other_user():  # another student asks for the other model while the first one decodes
            try:
                small.llm(instruct)
            except UserError as err:
                outcome["error"] = err

        th = threading.Thread(target=other_user)
        th.start()
        th.join(timeout=30)
        assert outcome["error"].key == "engine.err_memory_busy" and base.id in outcome["error"].params["busy"]
        assert small.is_loaded(base) and not small.is_loaded(instruct)
        assert list(stream(handle, handle.prepare_raw("Bonjour"), PARAMS, eng=DecodeEngine(background=False)))
    small.wait_s = 20
    small.llm(instruct)  # released: now the old one makes room
    assert small.is_loaded(instruct) and not small.is_loaded(base)
    assert small.peak_bytes <= small.budget


def test_a_caller_blocking_itself_is_told_at_once(manager, specs):
    base, instruct = specs
    small = one_model_budget(manager, base)
    started = time.monotonic()
    with small.using(base):
        with pytest.raises(UserError) as err:
            small.llm(instruct)  # only this caller's own model stands in the way: waiting is futile
    assert err.value.key == "engine.err_memory_pinned" and time.monotonic() - started < small.wait_s


def test_a_comparison_resumed_in_another_thread_releases_its_models(manager, specs):
    """Gradio may resume a streaming handler in another worker thread: the leases still go."""
    stream_ = compare_stream(manager, *specs, "Bonjour", PARAMS)
    next(stream_)
    assert manager.in_use(specs[0]) and manager.in_use(specs[1])
    th = threading.Thread(target=lambda: list(stream_))
    th.start()
    th.join(timeout=60)
    assert not manager.in_use(specs[0]) and not manager.in_use(specs[1])


def test_loads_book_their_memory_before_they_run(manager, specs, monkeypatch):
    """Two users loading different models at once on a budget for one: never both in flight."""
    import engine.models.llm

    small = one_model_budget(manager, specs[0])
    original = engine.models.llm.load_causal_lm
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def slow_load(*args, **kwargs):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            time.sleep(0.3)
            return original(*args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(engine.models.llm, "load_causal_lm", slow_load)
    threads = [threading.Thread(target=small.llm, args=(spec,)) for spec in specs]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert most[0] == 1 and small.peak_bytes <= small.budget
    assert small.loads == 2 and small.evictions == 1


def test_the_engine_books_its_kv_cache_with_the_model_cache(manager, specs):
    small = ModelManager(manager.catalog, manager.hardware, budget_bytes=manager.estimate_bytes(specs[1]) * 3)
    eng = DecodeEngine(background=False, memory=small)
    handle = small.llm(specs[1])
    loaded = small.used_bytes()
    reqs = [eng.submit(handle, handle.prepare_raw(t), PARAMS) for t in ("Bonjour", "Salut à tous")]
    eng.run_once()
    assert small.used_bytes() > loaded  # the batch's cache is reserved
    assert small.used_bytes() - loaded == eng.budget.held_bytes
    list(eng.wait(reqs))
    assert small.used_bytes() == loaded  # and given back with the last row


def test_ten_users_under_eviction_pressure(manager, specs):
    """Ten students on two models with room for one: each model is used, released, evicted and
    loaded again in turn; everybody gets the tokens they get alone."""
    prompts = [f"Question {i} :" for i in range(10)]
    expected = [solo(manager, specs[i % 2], p) for i, p in enumerate(prompts)]
    small = one_model_budget(manager, specs[0])
    eng = DecodeEngine(background=True, memory=small)
    results: dict[int, object] = {}

    def student(i):
        try:
            with small.using(specs[i % 2]) as handle:
                results[i] = list(stream(handle, handle.prepare_raw(prompts[i]), PARAMS, eng=eng))[-1].token_ids
        except Exception as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=student, args=(i,)) for i in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    eng.close()
    assert [results.get(i) for i in range(10)] == expected
    assert small.peak_bytes <= small.budget
    assert small.evictions >= 1
    followup = small.llm(specs[0])  # and it keeps serving
    assert list(stream(followup, followup.prepare_raw(prompts[0]), PARAMS, eng=DecodeEngine(background=False)))


def test_images_and_llms_take_turns_on_a_small_budget(manager, specs, monkeypatch):
    """A simulated small GPU (GENAI_MEMORY_BUDGET_GB, as for a T4): both LLMs fit, an LLM and the
    image pipeline fit, all three do not. Base vs Instruct users and an image user come at once:
    the image waits for the LLMs in use, evicts one, and the next comparison waits for the image."""
    import app
    from engine import generation

    both = manager.estimate_bytes(specs[0]) + manager.estimate_bytes(specs[1])
    image_spec = manager.catalog.spec("sdxl_turbo")
    assert both + manager.estimate_bytes(image_spec) > both * 1.15 > both  # all three cannot fit
    monkeypatch.setenv("GENAI_MEMORY_BUDGET_GB", f"{both * 1.15 / 1e9:.6f}")
    monkeypatch.setenv("GENAI_LOAD_WAIT_S", "60")
    generation.engine()  # the process-wide engine exists already in the app: it keeps its own ledger
    ctx = app.make_context("tiny")
    small = ctx.manager
    try:
        expected = compare_outputs(manager, specs)
        outcomes: dict[str, object] = {}

        def compare_user(i):
            try:
                outcomes[f"llm{i}"] = compare_outputs(small, specs)
            except Exception as exc:  # noqa: BLE001
                outcomes[f"llm{i}"] = exc

        image_queue = threading.Lock()  # the image tab runs one generation at a time (concurrency_limit=1)

        def image_user(i):
            try:
                with image_queue:
                    pipe = small.pipeline(image_spec)  # as the image tab does
                    settings = imagegen.settings_for(image_spec, "un phare", seed=i, tiny=True)
                    outcomes[f"img{i}"] = imagegen.generate(pipe, settings).image.size
            except Exception as exc:  # noqa: BLE001
                outcomes[f"img{i}"] = exc

        threads = [threading.Thread(target=compare_user, args=(0,)), threading.Thread(target=image_user, args=(0,)),
                   threading.Thread(target=compare_user, args=(1,))]
        for th in threads:
            th.start()
            time.sleep(0.05)
        for th in threads:
            th.join(timeout=180)
        assert outcomes == {"llm0": expected, "llm1": expected, "img0": (64, 64)}
        assert small.peak_bytes <= small.budget
        assert small.evictions >= 1
    finally:
        generation.set_memory(None)


def compare_outputs(manager, specs) -> tuple[list[int], list[int]]:
    last = list(compare_stream(manager, *specs, "Bonjour", PARAMS))[-1]
    return last[0].update.token_ids, last[1].update.token_ids


def test_models_built_at_once_never_leave_the_process_building_on_meta(manager, monkeypatch):
    """diffusers builds inside accelerate's init_empty_weights, which swaps nn.Module.register_parameter
    for the whole process and puts back what it found: two builds overlapping in two threads left the
    swap in place, and every later model got meta parameters ("Cannot copy out of meta tensor").
    Two pipelines and an LLM loaded at once: their builds never overlap and nothing is left swapped."""
    import contextlib

    import accelerate
    import diffusers  # noqa: F401 - imported first: this test is about the builds, not the imports
    import torch

    from engine.models.llm import load_causal_lm

    original = torch.nn.Module.register_parameter
    real, active, most = accelerate.init_empty_weights, [0], [0]
    guard = threading.Lock()

    @contextlib.contextmanager
    def watched(*args, **kwargs):
        with real(*args, **kwargs):
            with guard:
                active[0] += 1
                most[0] = max(most[0], active[0])
            time.sleep(0.05)  # widens the window two unserialized builds would overlap in
            try:
                yield
            finally:
                with guard:
                    active[0] -= 1

    monkeypatch.setattr(accelerate, "init_empty_weights", watched)
    jobs = [lambda: imagegen.load_pipeline(manager.catalog.spec("sdxl_turbo"), "cpu"),
            lambda: imagegen.load_pipeline(manager.catalog.spec("flux_schnell"), "cpu"),
            lambda: load_causal_lm(manager.catalog.spec("base_llm"), "cpu", fast_path=False)]
    errors: list[BaseException] = []

    def run(job) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert most[0] == 1  # one build at a time (diffusers builds several models per pipeline, in turn)
    assert torch.nn.Module.register_parameter is original
    assert torch.nn.Linear(2, 2).weight.device.type == "cpu"


def test_an_inline_stream_that_stops_early_gives_its_leases_and_caches_back(manager, specs):
    """On ZeroGPU the request's own thread drives the engine: when it stops waiting (a closed page,
    an exception in its code), nobody will step the engine again, so the requests end there and
    then, giving back their model leases and their KV cache reservations (issue #23)."""
    from engine.models import leases
    from engine.generation import stream_many

    ledger = ModelManager(manager.catalog, manager.hardware, budget_bytes=manager.estimate_bytes(specs[0]) * 4)
    handles = [ledger.llm(spec) for spec in specs]
    loaded = ledger.used_bytes()
    prompts = [(h, h.prepare_raw("Raconte une longue histoire.")) for h in handles]
    eng = DecodeEngine(background=False, memory=ledger)
    updates = stream_many(prompts, SamplingParams(max_new_tokens=400, greedy=True), eng=eng)
    for seen, _ in enumerate(updates):
        if seen == 3:
            break  # what an exception or a closed page does to the generator
    updates.close()
    assert [leases.count(h) for h in handles] == [0, 0]
    assert ledger.used_bytes() == loaded and eng.budget.held_bytes == 0 and not eng._batches
    with pytest.raises(RuntimeError):  # the same through an exception in the consumer
        for seen, _ in enumerate(stream(handles[0], prompts[0][1], PARAMS, eng=eng)):
            raise RuntimeError("the consumer failed")
    assert leases.count(handles[0]) == 0 and ledger.used_bytes() == loaded
