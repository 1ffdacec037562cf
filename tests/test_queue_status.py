"""A request waiting for memory shows how many requests are ahead of it, in the user's language."""
from __future__ import annotations

from engine.chat.compare import PaneState
from engine.generation import DecodeEngine, SamplingParams, StreamUpdate, generate_many
from engine.generation.kv import kv_spec
from engine.models.llm import PreparedPrompt
from tabs.base_vs_instruct import pane_stats
from ui.queue_status import queue_text


def test_the_pane_shows_its_place_in_the_queue():
    def stats(position, lang, **kw):
        pane = PaneState("base", "m", PreparedPrompt(text="", input_ids=[1]))
        pane.update = StreamUpdate(queue_position=position, **kw)
        return pane_stats(pane, lang)

    assert stats(3, "en") == "⏳ 3 requests ahead of you."
    assert stats(3, "fr") == "⏳ 3 demandes avant la vôtre."
    assert stats(1, "fr") == "⏳ 1 demande avant la vôtre."
    assert "prochain" in stats(0, "fr") and "next" in stats(0, "en")
    assert "⏳" not in stats(None, "en", n_tokens=2, ttft_s=0.1, elapsed_s=0.2)  # running: the usual stats
    assert queue_text(None, "en") == ""


def test_a_batched_call_reports_its_place_then_runs(manager):
    handle = manager.llm(manager.catalog.spec("instruct_llm"))
    bpt = kv_spec(handle.model).bytes_per_token
    eng = DecodeEngine(background=False, kv_budget_bytes=40 * bpt)  # room for one of these at a time
    params = SamplingParams(max_new_tokens=24, greedy=True)
    first = eng.submit(handle, handle.prepare_raw("Il était une fois").input_ids, params)
    eng.run_once()
    places: list[int] = []
    prompt = handle.prepare_raw("La recette des crêpes")
    outs = generate_many(handle, [prompt], params, eng=eng, on_wait=places.append)
    assert places == [0] and first.done
    assert outs[0].token_ids == generate_many(handle, [prompt], params, eng=DecodeEngine(background=False))[0].token_ids
