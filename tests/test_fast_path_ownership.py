"""The fast path's static caches: one engine at a time per cache, prepared on the final (quantized)
layers so a click never compiles, and booked in the memory budget."""
from __future__ import annotations

import torch

from engine.models import memory
from engine.models.catalog import load_catalog
from engine.generation import DecodeEngine, SamplingParams
from engine.quantization.measure import run_greedy
from engine.quantization.variants import load_in_place
from tests.conftest import greedy_reference


def test_two_engines_on_one_model_never_share_a_static_cache(fast_handle):
    """The quantization tab's private engine and the app's engine decode the same handle at once."""
    handle, _ = fast_handle
    a, b = handle.prepare_raw("Il était une fois"), handle.prepare_raw("La recette des crêpes")
    params = SamplingParams(max_new_tokens=12, greedy=True)
    app_engine, private_engine = DecodeEngine(background=False), DecodeEngine(background=False)
    ra = app_engine.submit(handle, a, params)
    rb = private_engine.submit(handle, b, params)
    app_engine.run_once()
    private_engine.run_once()
    on_static = [e._batches[id(handle)].static is not None for e in (app_engine, private_engine)]
    assert on_static == [True, False]  # the second lone request did not get the busy static cache
    while not (ra.done and rb.done):
        app_engine.run_once()
        private_engine.run_once()
    assert ra.generated == greedy_reference(handle, a.input_ids, 12)
    assert rb.generated == greedy_reference(handle, b.input_ids, 12)
    assert not any(d.leased for d in handle.extra["fast_path"].decoders)  # handed back


def test_the_budget_counts_the_static_caches(fast_handle, monkeypatch):
    handle, manager = fast_handle
    cfg = handle.model.config
    per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 4
    fast = handle.extra["fast_path"]
    assert fast.nbytes == sum(d.bucket for d in fast.decoders) * per_token > 0
    weights = handle.footprint_bytes
    assert manager.used_bytes() == weights + memory.load_overhead(weights, "cpu") + fast.nbytes
    # booked before loading too: the estimate the budget was checked against counted these caches
    spec = manager.catalog.spec("instruct_llm")
    estimated = manager.weights_estimate(spec)
    assert manager.estimate_bytes(spec) == estimated + memory.load_overhead(estimated, "cpu") + fast.nbytes
    monkeypatch.setenv("GENAI_FAST_PATH", "eager")  # as when it loaded (the fixture's setting)
    assert manager.fast_path_estimate(spec) == fast.nbytes


def test_quantized_in_place_then_compiled_never_on_a_click(tiny_llms, monkeypatch):
    """HQQ swaps the linear layers: the fast path must be prepared (compiled) on the swapped ones,
    or the first decode recompiles. ``torch.compile`` is stood in for by a recorder that, like
    Dynamo's guards, compiles again when the layers it was traced with changed."""
    compiles: list[set[str]] = []

    def layer_types(model) -> set[str]:
        return {type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__}

    def fake_compile(fn, **_):
        traced: dict = {}

        def run(*args, **kwargs):
            types = layer_types(fn.__self__.model)
            if traced.get("types") != types:
                compiles.append(types)
                traced["types"] = types
            return fn(*args, **kwargs)
        return run

    monkeypatch.setenv("GENAI_FAST_PATH", "compile")
    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr("engine.models.fastpath.BUCKETS", (256,))
    spec = load_catalog("tiny", env={}).spec("quant_subject")
    handle = load_in_place(spec, "hqq-4", "cpu", bf16_ok=False)
    assert compiles == [{"HQQLinear", "Linear"}]  # once, at load, on the quantized layers (lm_head stays)
    ids, *_ = run_greedy(handle, "Bonjour", 6)  # the student's click
    assert len(compiles) == 1 and handle.extra["fast_path"].decoders[0].length > 0
    handle.extra.pop("fast_path")
    assert run_greedy(handle, "Bonjour", 6)[0] == ids  # same tokens as the plain batched path
