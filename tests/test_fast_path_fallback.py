"""The compiled fast path on first contact with a GPU: compiled, captured and replayed in one
thread, and every way it can fail leaves the eager static path, the request served, the reason
in About.

``torch.compile`` is the one place the compiled step comes from (``StaticDecoder.compile``), so
it is what these tests replace to inject each failure on CPU, the way it happens on CUDA: the
compile raises on the step's first call (Dynamo/Inductor), the CUDA-graph capture raises on its
second call (cudagraph trees record on the second call), or the graph gives other logits than
the eager step (a wrong capture).
"""
from __future__ import annotations

import threading

import pytest
import torch

from engine.models import fastpath
from engine.models.catalog import load_catalog
from engine.generation import DecodeEngine, SamplingParams
from engine.models.hardware import detect
from engine.serving.manager import ModelManager
from tests.conftest import greedy_reference


class Injected(RuntimeError):
    pass


def fake_compile(calls: list[int], *, raise_at: int | None = None, wrong: bool = False, at_wrap: bool = False):
    """A ``torch.compile`` stand-in: the eager step itself, that records the thread of every call,
    raises on call ``raise_at`` (1: the compile, 2: the capture), or returns other logits."""
    def compile_(fn=None, **_):
        if not isinstance(getattr(fn, "__self__", None), fastpath.StaticDecoder):
            return fn if fn is not None else (lambda f: f)  # another library's own use (hqq decorates at import)
        if at_wrap:
            raise Injected("torch.compile is not supported here (injected)")

        def step(*args, **kwargs):
            calls.append(threading.get_ident())
            if raise_at is not None and len(calls) == raise_at:
                raise Injected(f"failure injected on call {raise_at}")
            out = fn(*args, **kwargs)
            return out.roll(1, dims=-1) if wrong else out
        return step
    return compile_


def load(monkeypatch, compile_fn):
    monkeypatch.setenv("GENAI_FAST_PATH", "compile")
    monkeypatch.setattr(torch, "compile", compile_fn)
    monkeypatch.setattr(fastpath, "BUCKETS", (256,))
    manager = ModelManager(load_catalog("tiny", env={}), detect())
    return manager, manager.llm(manager.catalog.spec("instruct_llm"))


def served(handle, text: str = "Les tramways reviennent", n: int = 12) -> list[int]:
    """One request through a background engine (the app's loop runs in its own thread)."""
    eng = DecodeEngine(background=True)
    try:
        prompt = handle.prepare_raw(text)
        req = eng.submit(handle, prompt, SamplingParams(max_new_tokens=n, greedy=True))
        list(eng.wait([req]))
        assert req.error is None and req.reason in ("length", "eos"), (req.reason, req.error)
        assert req.generated == greedy_reference(handle, prompt.input_ids, n)
        return req.generated
    finally:
        eng.close()


def about(manager, lang: str) -> str:
    from tabs.about import overview_markdown
    from ui.context import AppContext

    return overview_markdown(AppContext(manager=manager, catalog=manager.catalog, hardware=manager.hardware), lang)


def test_compiled_in_one_thread_and_replayed_there(tiny_llms, monkeypatch):
    """Compile, capture and every replay run in the fast path's own thread: not the loading thread,
    not the engine's loop thread that asks for the steps."""
    calls: list[int] = []
    _, handle = load(monkeypatch, fake_compile(calls))
    at_load = len(calls)
    assert at_load >= 2  # compiled and captured at load time, before the model was handed out
    served(handle)
    assert len(calls) > at_load  # the request decoded on the compiled step
    assert len(set(calls)) == 1 and threading.get_ident() not in calls  # one thread, not the loader's
    fast = handle.extra["fast_path"]
    assert fast.compiled and fast.fallback is None and set(calls) == {fast.replayer.ident}


INJECTED = {
    "compile": dict(raise_at=1),
    "capture": dict(raise_at=2),
    "check": dict(wrong=True),
}


@pytest.mark.parametrize("stage", list(INJECTED))
def test_a_failing_compiled_step_falls_back_to_the_eager_static_path(tiny_llms, monkeypatch, stage):
    calls: list[int] = []
    manager, handle = load(monkeypatch, fake_compile(calls, **INJECTED[stage]))
    fast = handle.extra["fast_path"]
    assert fast.fallback_stage == stage and not fast.compiled and fast.replayer is None, fast.fallback
    assert "injected" in fast.fallback or stage == "check"
    assert not any(d.compiled for d in fast.decoders)
    done = len(calls)
    served(handle)  # the same tokens as plain generate(), on the eager static cache
    assert len(calls) == done  # the compiled step is never called again
    state = manager.status()[0]
    assert state["decoding"]["fallback_stage"] == stage
    english, french = about(manager, "en"), about(manager, "fr")
    words = {"compile": ("compiling it failed", "la compilation a échoué"),
             "capture": ("capturing its CUDA graph failed", "la capture du graphe CUDA a échoué"),
             "check": ("other tokens than the eager step", "d'autres tokens que l'étape directe")}[stage]
    assert "the compiled decode step was not used" in english and words[0] in english
    assert "l'étape de décodage compilée n'est pas utilisée" in french and f"{words[1]} : " in french


@pytest.mark.parametrize("stage", list(INJECTED))
def test_the_documented_fault_hook_fails_each_stage_in_a_running_app(tiny_llms, monkeypatch, stage):
    """GENAI_FAST_PATH_FAULT injects the same failures around the real compiled step (Inductor here)."""
    monkeypatch.setenv(fastpath.FAULT_ENV, stage)
    calls: list[int] = []
    manager, handle = load(monkeypatch, fake_compile(calls))  # the stand-in records; the hook fails
    assert handle.extra["fast_path"].fallback_stage == stage
    assert len(calls) == {"compile": 0, "capture": 1, "check": 2 * fastpath.CHECK_STEPS}[stage]
    served(handle)


def test_torch_compile_refusing_at_once_falls_back_too(tiny_llms, monkeypatch):
    manager, handle = load(monkeypatch, fake_compile([], at_wrap=True))
    assert handle.extra["fast_path"].fallback_stage == "compile"
    served(handle)


def test_a_tie_within_rounding_is_not_a_different_token():
    """bf16 kernels may order a near-tie differently: that is not a wrong graph."""
    ref = torch.tensor([[0.0, 4.0, 4.0 - 1e-3, 1.0]])
    other = torch.tensor([[0.0, 4.0 - 1e-3, 4.0, 1.0]])
    assert fastpath.differing_step([ref], [other], torch.bfloat16) is None
    assert fastpath.differing_step([ref], [other], torch.float32) == 0  # fp32 rounding is far finer
    far = torch.tensor([[0.0, 1.0, 2.0, 5.0]])
    assert fastpath.differing_step([ref, ref], [ref, far], torch.bfloat16) == 1
