"""Base vs Instruct: the engine's side-by-side stream, the tab's handler outputs, the card, the API."""
from __future__ import annotations

import threading

import pytest
from PIL import Image

from engine.share.cards import CARD_SIZE
from engine.chat.compare import compare_stream
from engine.errors import UserError
from engine.generation import SamplingParams, engine, generate_many, stream
from engine.models.llm import token_piece


@pytest.fixture(scope="module")
def specs(manager):
    return manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm")


def run(manager, specs, prompt="Qu'est-ce qu'un consultant ?", **kw):
    params = kw.pop("params", SamplingParams(max_new_tokens=12, greedy=True))
    return list(compare_stream(manager, *specs, prompt, params, **kw))


def test_both_panes_produce_text_with_the_right_inputs(manager, specs):
    states = run(manager, specs)
    base, instr = states[-1]
    assert base.update.text and instr.update.text
    assert "[INST]" in instr.prompt.text and instr.prompt.text.startswith("<s>")
    assert "[INST]" not in base.prompt.text
    base_t, _ = run(manager, specs, template_on_base=True)[-1]
    assert "[INST]" in base_t.prompt.text


def test_system_prompt_is_merged_for_mistral_v01(manager, specs):
    _, instr = run(manager, specs, system="Réponds en français.")[-1]
    assert instr.prompt.note == "system_merged"
    assert "[INST] Réponds en français.\n\nQu'est-ce" in instr.prompt.text


def test_stream_interleaves_both_panes(manager, specs):
    counts = [(b.update.n_tokens, i.update.n_tokens)  # panes are updated in place: snapshot each step
              for b, i in compare_stream(manager, *specs, "Bonjour", SamplingParams(max_new_tokens=10, greedy=True))][1:]
    assert len(counts) >= 10
    # after every loop step both panes have advanced: neither waits for the other to finish
    assert all(abs(b - i) <= 1 for b, i in counts)
    assert counts[-1] == (10, 10)
    assert len({c for c in counts if c != (0, 0)}) >= 10  # many partial updates, not one at the end


def test_same_seed_same_output_different_seed_different(manager, specs):
    def sample(seed):
        params = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=1.0, top_k=0, seed=seed)
        b, i = run(manager, specs, params=params)[-1]
        return b.update.text, i.update.text
    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_stop_reasons(manager, specs):
    handle = manager.llm(specs[1])
    prompt = handle.prepare_raw("Bonjour")
    last = list(stream(handle, prompt, SamplingParams(max_new_tokens=5, greedy=True)))[-1]
    assert last.stop_reason == "length" and last.n_tokens == 5
    eng = engine()
    probe = eng.submit(handle, prompt, SamplingParams(max_new_tokens=1, greedy=True))
    list(eng.wait([probe]))
    first = probe.generated[0]
    req = eng.submit(handle, prompt, SamplingParams(max_new_tokens=5, greedy=True), eos_ids={first})
    list(eng.wait([req]))  # the model's first greedy token now ends the sequence
    assert req.update().stop_reason == "eos" and req.update().n_tokens == 1


def test_stop_ends_both_panes(manager, specs):
    stop = threading.Event()
    states = []
    for panes in compare_stream(manager, *specs, "Il était une fois", SamplingParams(max_new_tokens=200, greedy=True), stop=stop):
        states.append(panes)
        if len(states) == 4:
            stop.set()
    base, instr = states[-1]
    assert base.update.stop_reason == instr.update.stop_reason == "stopped"
    assert base.update.n_tokens < 200 and instr.update.n_tokens < 200


def test_empty_and_too_long_prompts(manager, specs):
    with pytest.raises(UserError) as err:
        run(manager, specs, prompt="   ")
    assert err.value.key == "err.empty_prompt"
    with pytest.raises(UserError) as err:
        run(manager, specs, prompt="maison " * 2100)
    assert err.value.key == "err.prompt_too_long"
    assert err.value.params["tokens"] > 2000 and err.value.params["limit"] < 2048
    with pytest.raises(UserError) as err:
        run(manager, specs, prompt="x" * 200_000)
    assert err.value.key == "err.prompt_too_many_chars" and err.value.params["chars"] == 200_000
    from ui.i18n import t

    assert t(err.value.key, "en", **err.value.params).startswith("The prompt has 200,000 characters; the limit is 20,000")
    assert t(err.value.key, "fr", **err.value.params).startswith("Le prompt fait 200\u202f000 caractères ; la limite est de 20\u202f000")


def test_top_probabilities(manager, specs):
    handle = manager.llm(specs[1])
    last = list(stream(handle, handle.prepare_raw("Le ciel est"), SamplingParams(max_new_tokens=6, greedy=True), top_probs=5))[-1]
    assert len(last.tokens) == 6
    for tok in last.tokens:
        assert len(tok.top) == 5 and sum(p for _, p in tok.top) <= 1.0 + 1e-6
        assert tok.prob == pytest.approx(max(p for _, p in tok.top))  # greedy picks the top token
        assert tok.text in [text for text, _ in tok.top]
    # SentencePiece word pieces keep their leading space in the alternatives too
    assert any(text.startswith(" ") for tok in last.tokens for text, _ in tok.top)


def test_token_piece_keeps_the_leading_space(manager, specs):
    tok = manager.llm(specs[1]).tokenizer
    assert token_piece(tok, 16038) == " conservative"  # '▁conservative'
    assert token_piece(tok, 13) == "\n"  # the byte token <0x0A>
    assert token_piece(tok, tok.convert_tokens_to_ids("a")) == "a"


def test_no_deprecation_warning_from_our_decode_calls(manager, specs):
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()  # a warning already given once would not show again
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    handle = manager.llm(specs[1])
    prompts = [handle.prepare_raw("Un"), handle.prepare_raw("Deux trois")]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            generate_many(handle, prompts, SamplingParams(max_new_tokens=4, greedy=True))
    finally:
        hf_logger.removeHandler(handler)
    messages = [str(w.message) for w in caught] + records
    assert not [m for m in messages if "deprecated" in m.lower()], messages


def test_batched_rows_match_single_greedy_runs(manager, specs):
    handle = manager.llm(specs[1])
    prompts = [handle.prepare_raw("Un"), handle.prepare_chat([{"role": "user", "content": "Deux plus deux ?"}])]
    params = SamplingParams(max_new_tokens=8, greedy=True)
    together = generate_many(handle, prompts, params)
    alone = [generate_many(handle, [p], params)[0] for p in prompts]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    ref = handle.model.generate(__import__("torch").tensor([prompts[1].input_ids]), max_new_tokens=8, do_sample=False)
    assert ref[0, len(prompts[1].input_ids):].tolist() == together[1].token_ids


def _card_result(base_output: str, prompt: str = "Qui est le président ? 🎉") -> dict:
    return {
        "prompt": prompt,
        "sampling": {"max_new_tokens": 20, "temperature": 0.7, "top_p": 0.95, "top_k": 50,
                     "repetition_penalty": 1.0, "greedy": False, "seed": 1234},
        "base": {"model": "tiny/mistral-base", "output": base_output, "tokens": 3, "tokens_per_s": 9.5,
                 "stop_reason": "length", "input": "Qui est le président ?"},
        "instruct": {"model": "tiny/mistral-instruct", "output": "INSTRUCT ANSWER", "tokens": 2, "tokens_per_s": 8.0,
                     "stop_reason": "eos", "input": "<s>[INST] Qui est le président ? [/INST]"},
    }


def test_comparison_card_png_and_markdown(tmp_path):
    from engine.share.cards import render_markdown, render_png, text_size
    from tabs.base_vs_instruct import card_content

    card = card_content(_card_result("BASE OUTPUT TEXT"), "en")
    md = render_markdown(card)
    assert "BASE OUTPUT TEXT" in md and "INSTRUCT ANSWER" in md and "tiny/mistral-instruct" in md
    assert "What the model sees" in md and "<s>[INST] Qui est le président ? [/INST]" in md  # the lesson's key point
    assert "seed 1234" in md and "repetition penalty 1" in md
    path = render_png(card, tmp_path / "card.png")
    with Image.open(path) as img:
        assert img.size == CARD_SIZE
    # short answers get large text in boxes as tall as their content; a long one gets smaller text
    short_size, short_box = text_size(card)
    long_size, long_box = text_size(card_content(_card_result("mot " * 900), "en"))
    assert short_size >= 40 and long_size < short_size and short_box < long_box <= CARD_SIZE[1]


def test_french_card_is_french():
    from engine.share.cards import render_markdown
    from tabs.base_vs_instruct import card_content

    md = render_markdown(card_content(_card_result("SORTIE"), "fr"))
    for words in ("Ce que voit le modèle", "Sortie", "Modèle de base", "pénalité de répétition 1", "graine 1234",
                  "T = 0,7, top-p = 0,95", "9,5 tok/s", "arrêt : fin de séquence", "**Prompt :**"):
        assert words in md, words
    for english in ("seed", "repetition penalty", "stopped", "What the model sees", "Output"):
        assert english not in md, english


def test_card_draws_emoji_in_colour(tmp_path):
    from engine.share.cards import EMOJI_FONT, FONT_ROOT, render_png
    from tabs.base_vs_instruct import card_content

    if not (FONT_ROOT / EMOJI_FONT).exists():
        pytest.skip("fonts-noto-color-emoji is not installed (.ci/run installs it)")

    def colourful_pixels(prompt: str) -> int:
        path = render_png(card_content(_card_result("x", prompt=prompt), "en"), tmp_path / "card.png")
        with Image.open(path) as img:
            pixels = img.convert("RGB").getdata()
            return sum(1 for r, g, b in pixels if max(r, g, b) - min(r, g, b) > 120 and r > 180 and g > 120)

    # the party popper's yellow and orange: none without it (the frames are red and blue)
    assert colourful_pixels("Une fête 🎉 ce soir") > 50 > colourful_pixels("Une fête ce soir")


def test_compare_through_gradio_client(client):
    result = client.predict("Explique la photosynthèse.", "", "tiny/mistral-base", "tiny/mistral-instruct",
                            False, True, 8, 0.7, 0.95, 50, 1.0, True, 3, api_name="/compare")
    raw = result[-1]
    assert raw["base"]["tokens"] == 8 and raw["instruct"]["tokens"] == 8
    assert "[INST]" in raw["instruct"]["input"] and "[INST]" not in raw["base"]["input"]
    assert "tok-p" in result[3]  # probability-coloured spans in the base pane
    png, md = client.predict(raw, api_name="/comparison_card")
    assert png.endswith(".png") and raw["instruct"]["output"].strip()[:10] in md
