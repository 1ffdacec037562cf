"""The fast single-user path (static cache; compiled on CUDA) gives the same tokens."""
from __future__ import annotations

from engine.models.catalog import load_catalog
from engine.generation import DecodeEngine, SamplingParams
from engine.models.hardware import detect
from engine.serving.manager import ModelManager
from tests.conftest import greedy_reference
from tests.test_fast_path_fallback import about


def test_fast_path_matches_generate(fast_handle):
    handle, _ = fast_handle
    prompt = handle.prepare_chat([{"role": "user", "content": "Quelle heure est-il ?"}])
    eng = DecodeEngine(background=False)
    req = eng.submit(handle, prompt, SamplingParams(max_new_tokens=20, greedy=True))
    list(eng.wait([req]))
    assert req.generated == greedy_reference(handle, prompt.input_ids, 20)


def test_leaving_the_fast_path_when_a_second_request_joins(fast_handle):
    handle, _ = fast_handle
    a = handle.prepare_raw("Il était une fois")
    b = handle.prepare_raw("La recette des crêpes")
    eng = DecodeEngine(background=False)
    ra = eng.submit(handle, a, SamplingParams(max_new_tokens=16, greedy=True))
    for _ in range(4):
        eng.run_once()
    assert eng._batches[id(handle)].static is not None  # alone: static cache
    rb = eng.submit(handle, b, SamplingParams(max_new_tokens=8, greedy=True))
    list(eng.wait([ra, rb]))
    assert ra.generated == greedy_reference(handle, a.input_ids, 16)
    assert rb.generated == greedy_reference(handle, b.input_ids, 8)


def test_about_reports_the_fast_path(fast_handle):
    _, manager = fast_handle
    assert manager.status()[0]["decoding"]["kind"] == "static"
    english, french = about(manager, "en"), about(manager, "fr")
    assert "static cache, eager, buckets" in english and "prepared at load" in english
    assert "cache statique, exécution directe" in french


def test_compiled_decode_step_matches_generate(tiny_llms, monkeypatch):
    """torch.compile of the static-cache step (CUDA graphs on a GPU; inductor on CPU here)."""
    monkeypatch.setenv("GENAI_FAST_PATH", "compile")
    monkeypatch.setattr("engine.models.fastpath.BUCKETS", (256,))
    manager = ModelManager(load_catalog("tiny", env={}), detect())
    handle = manager.llm(manager.catalog.spec("base_llm"))
    assert handle.extra["fast_path"].compiled
    prompt = handle.prepare_raw("Les tramways reviennent")
    eng = DecodeEngine(background=False)
    req = eng.submit(handle, prompt, SamplingParams(max_new_tokens=12, greedy=True))
    list(eng.wait([req]))
    assert req.generated == greedy_reference(handle, prompt.input_ids, 12)
