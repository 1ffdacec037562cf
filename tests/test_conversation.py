"""Base vs Instruct follow-up turns: the conversation's inputs, the API, links, the wall, the card and
the page (Chromium, French and English). ZeroGPU: tests/test_zerogpu.py."""
from __future__ import annotations

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from engine.chat.conversation import Turn, messages, parse_history, transcript
from engine.errors import UserError
from engine.generation import SamplingParams, stream
from engine.limits import HISTORY_TURNS, limits_for
from engine.models.llm import PreparedPrompt
from tests.browser import (DESKTOP, LONG, PHONE, new_page, no_horizontal_overflow, open_tab, screenshot,
                           toast_text)
from ui.i18n import t

Q1, Q2, Q3 = "Qu'est-ce qu'un consultant ?", "Donne un exemple concret.", "Et en anglais ?"
# Mistral-7B-Instruct-v0.1's template on the Hub, and what it renders for a two-message chat (its own test data)
HUB_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")


def compare(client: Client, prompt: str, history=None, tokens: int = 8, **kw):
    return client.predict(prompt, greedy=True, max_new_tokens=tokens, history=history, api_name="/compare", **kw)


# ============================================================================ what each model receives
def test_each_side_gets_its_own_conversation():
    history = (Turn(Q1, " Un consultant conseille.", " Un consultant est un expert.\n"),)
    assert messages(history, Q2) == [{"role": "user", "content": Q1},
                                     {"role": "assistant", "content": "Un consultant est un expert."},
                                     {"role": "user", "content": Q2}]
    assert messages(history, Q2, "base")[1]["content"] == "Un consultant conseille."
    # the base model's document: what it wrote right after the message, a blank line, the next message
    assert transcript(history, Q2) == f"{Q1} Un consultant conseille.\n\n{Q2}"
    assert transcript((), Q1) == Q1  # turn 1: the raw prompt, as before follow-ups existed
    longer = history + (Turn(Q2, " Par exemple…\n\n", "Exemple"),)
    assert transcript(longer, Q3).startswith(transcript(history, Q2))  # each turn extends the document


def test_histories_are_checked_with_translated_messages():
    limits = limits_for("tiny")
    assert parse_history(None) == parse_history([]) == parse_history("") == ()
    assert parse_history('[{"user": "a", "base": "b"}]') == (Turn("a", "b", ""),)
    cases = [("pas du JSON", "bvi.err.history_format"), ({"user": "a"}, "bvi.err.history_format"),
             ([{"user": "  "}], "bvi.err.history_turn"), ([{"user": "a", "base": 3}], "bvi.err.history_turn"),
             ([{"user": "a"}] * (HISTORY_TURNS + 1), "bvi.err.history_turns"),
             ([{"user": "x" * (limits.prompt_chars + 1)}], "bvi.err.history_message"),
             ([{"user": "a", "instruct": "y" * limits.card_chars}], "bvi.err.history_chars")]
    for value, key in cases:
        with pytest.raises(UserError) as err:
            parse_history(value, limits)
        assert err.value.key == key, value
        for lang in ("en", "fr"):
            assert "{" not in t(key, lang, **err.value.params), (key, lang)
    assert t("bvi.err.history_turns", "fr", n=101, limit=100) == \
        "L'historique compte 101 tours ; la limite est de 100. Commencez une nouvelle conversation."


def test_the_tiny_instruct_model_has_the_real_mistral_v01_template(manager):
    tok = manager.llm(manager.catalog.spec("instruct_llm")).tokenizer
    assert tok.chat_template == HUB_TEMPLATE
    chat = [{"role": "user", "content": "Hello, how are you?"},
            {"role": "assistant", "content": "I'm doing great. How can I help you today?"},
            {"role": "user", "content": "I'd like to show off how chat templating works!"}]
    assert tok.apply_chat_template(chat, tokenize=False) == (
        "<s>[INST] Hello, how are you? [/INST]I'm doing great. How can I help you today?</s> "
        "[INST] I'd like to show off how chat templating works! [/INST]")
    with pytest.raises(Exception, match="alternate"):
        tok.apply_chat_template(chat[:1] + chat[:1], tokenize=False)


def test_base_with_the_template_gets_its_own_answers(manager):
    from engine.chat.compare import compare_stream

    specs = manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm")
    history = (Turn(Q1, "BASE-ANSWER", "INSTRUCT-ANSWER"),)
    params = SamplingParams(max_new_tokens=4, greedy=True)
    base, instr = list(compare_stream(manager, *specs, Q2, params, history=history, template_on_base=True))[-1]
    assert f"[INST] {Q1} [/INST]BASE-ANSWER</s> [INST] {Q2} [/INST]" in base.prompt.text
    assert f"[INST] {Q1} [/INST]INSTRUCT-ANSWER</s> [INST] {Q2} [/INST]" in instr.prompt.text
    assert base.prompt.templated and base.update.n_tokens == instr.update.n_tokens == 4


# ============================================================================ the API
def alone(manager, role: str, shown: str, params: SamplingParams):
    """The engine alone (no app, no batch partner) on the input text the app showed for a pane."""
    handle = manager.llm(manager.catalog.spec(role))
    ids = list(handle.tokenizer(shown, add_special_tokens=False)["input_ids"])
    return list(stream(handle, PreparedPrompt(text=shown, input_ids=ids), params))[-1], ids


def test_two_turns_through_the_api_give_the_engine_alones_tokens(client, manager):
    first = compare(client, Q1, tokens=10)[-1]
    assert [turn["user"] for turn in first["conversation"]] == [Q1]
    out = compare(client, Q2, first["conversation"], tokens=10)
    raw = out[-1]
    assert [turn["user"] for turn in raw["conversation"]] == [Q1, Q2] and raw["prompt"] == Q2
    b1, i1 = first["base"]["output"], first["instruct"]["output"]
    assert raw["conversation"][0] == {"user": Q1, "base": b1, "instruct": i1}
    # what each model was given: the instruct model's real template over the whole chat, the base its document
    tok = manager.llm(manager.catalog.spec("instruct_llm")).tokenizer
    chat = [{"role": "user", "content": Q1}, {"role": "assistant", "content": i1.strip()},
            {"role": "user", "content": Q2}]
    assert raw["instruct"]["input"] == tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert raw["instruct"]["input"].count("[INST]") == 2 and "</s> [INST] " + Q2 in raw["instruct"]["input"]
    assert raw["base"]["input"] == f"<s> {Q1}{b1}".rstrip() + f"\n\n{Q2}" and "[INST]" not in raw["base"]["input"]
    params = SamplingParams(max_new_tokens=10, greedy=True, seed=42)
    for side, role in (("base", "base_llm"), ("instruct", "instruct_llm")):
        update, ids = alone(manager, role, raw[side]["input"], params)
        assert len(ids) == raw[side]["input_tokens"], side  # the same rendered input, token for token
        assert (update.text, update.n_tokens) == (raw[side]["output"], raw[side]["tokens"]), side
    # the panes show the turns, and which input each model got
    base_html, base_stats, instr_stats = out[3], out[4], out[9]
    assert base_html.count('class="bvi-user"') == 2 and base_html.index(Q1.replace("'", "&#x27;")) < base_html.index(
        "gen-out")
    assert "Turn 2" in base_stats and t("bvi.how_plain", "en") in base_stats
    assert t("bvi.how_template", "en") in instr_stats and f"{raw['instruct']['input_tokens']} tokens" in instr_stats
    assert out[-3] == t("bvi.conversation_info", "en", turn=2)  # outputs end: follow-up box, info, history, raw
    png, md = client.predict(raw, api_name="/comparison_card")  # the card of a conversation
    assert png.endswith(".png") and "**Turn 2:** " + Q2 in md and md.count("> › " + Q1) == 2


def test_stop_ends_a_follow_up_and_the_conversation_keeps_what_was_written(app_url):
    import time

    client = Client(app_url, verbose=False)  # its own session: the Stop is this caller's
    first = compare(client, Q1)[-1]
    job = client.submit("Raconte une longue histoire.", greedy=True, max_new_tokens=1900,
                        history=first["conversation"], api_name="/compare")
    deadline = time.monotonic() + 120
    while len(job.outputs()) < 2 and not job.done() and time.monotonic() < deadline:
        time.sleep(0.02)  # until tokens stream
    client.predict(api_name="/stop_compare")
    raw = job.result()[-1]
    assert raw["base"]["stop_reason"] == raw["instruct"]["stop_reason"] == "stopped"
    assert 0 < raw["instruct"]["tokens"] < 1900
    assert raw["conversation"][0] == first["conversation"][0]
    assert raw["conversation"][-1]["instruct"] == raw["instruct"]["output"]  # what was written stays in it


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_bad_follow_ups_get_a_message_not_a_traceback(app_url, lang):
    client = Client(app_url, verbose=False, headers={"Accept-Language": lang})
    history = [{"user": Q1, "base": "suite", "instruct": "réponse"}]
    with pytest.raises(AppError) as err:
        compare(client, "   ", history)
    assert str(err.value) == t("bvi.err.empty_follow_up", lang)
    long = [{"user": "maison " * 800, "base": "", "instruct": ""}] * 3  # 2,400+ tokens: past the tiny 2,048
    with pytest.raises(AppError) as err:
        compare(client, Q2, long, tokens=48)
    text = str(err.value)
    assert text.startswith(t("bvi.err.conversation_too_long", lang, tokens=0, model="", limit=0, new=0)[:18])
    assert "tiny/mistral-base" in text and ("2,000" if lang == "en" else "2\u202f000") in text
    assert "Traceback" not in text and "Error" not in text.split(":")[0]
    from gradio_client.exceptions import ValidationError  # refused at the boundary, before the queue

    with pytest.raises((AppError, ValidationError)) as err:
        compare(client, Q2, [{"user": Q1, "base": 7}])
    assert t("bvi.err.history_turn", lang, n=1) in str(err.value)


def test_a_link_to_a_conversation_replays_its_last_turn(client):
    first = compare(client, Q1, tokens=6, temperature=0.9)
    out = compare(client, Q2, first[-1]["conversation"], tokens=6)
    inputs = {"prompt": Q2, "history": first[-1]["conversation"], "greedy": True, "max_new_tokens": 6}
    shared = client.predict("compare", inputs, {"raw": {"type": "json", "value": out[-1]}},
                            api_name="/share_experiment")
    opened = client.predict(shared["id"], api_name="/open_experiment")
    assert opened["inputs"]["history"] == first[-1]["conversation"]
    again = client.predict(**opened["inputs"], api_name=opened["api"])
    assert again[-1]["conversation"] == out[-1]["conversation"]
    with pytest.raises(AppError, match="history"):  # a history that is not one is refused when shared
        client.predict("compare", {"prompt": Q2, "history": [{"user": ""}]}, None, api_name="/share_experiment")


# ============================================================================ the card
def test_the_card_shows_the_conversation(tmp_path):
    from PIL import Image

    from engine.share.cards import CARD_SIZE, render_markdown, render_png
    from tabs.base_vs_instruct import card_content

    def pane(output: str, sees: str) -> dict:
        return {"model": "tiny/m", "output": output, "tokens": 3, "tokens_per_s": 9.5, "stop_reason": "length",
                "input": sees}

    sees = "<s>[INST] " + "mot " * 200 + "[/INST]réponse</s> [INST] Et en anglais ? [/INST]"
    result = {"prompt": Q3, "sampling": {"max_new_tokens": 3, "temperature": 0.7, "top_p": 0.95, "top_k": 50,
                                         "repetition_penalty": 1.0, "greedy": True, "seed": 1},
              "conversation": [{"user": Q1, "base": "B1", "instruct": "I1"},
                               {"user": Q2, "base": "B2", "instruct": "I2"},
                               {"user": Q3, "base": "B3", "instruct": "I3"}],
              "base": pane("B3", sees), "instruct": pane("I3", sees)}
    md = render_markdown(card_content(result, "fr"))
    assert "**Tour 3 :** Et en anglais ?" in md and "**Tours précédents**" in md
    assert md.index("> › " + Q1) < md.index("> B1") < md.index("> › " + Q2) < md.index("**Sortie**\n\nB3")
    assert "I2" in md.split("Modèle instruct")[1] and "B2" not in md.split("Modèle instruct")[1]
    path = render_png(card_content(result, "en"), tmp_path / "card.png")
    with Image.open(path) as img:
        assert img.size == CARD_SIZE
    from engine.share.cards import _clip_tail  # a long multi-turn input keeps its end: the new message

    assert _clip_tail([str(i) for i in range(10)], 5) == ["0", "…", "7", "8", "9"]


# ============================================================================ the page
def _box(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def _wait_done(page, lang: str, turn: int) -> None:
    done = t("bvi.reason_length", lang)
    marker = t("bvi.turn_stats", lang, turn=turn, how="", tokens=0, context=0).split("·")[0].strip()
    for side in ("base", "instruct"):
        page.wait_for_function("([s, d, m]) => { const x = document.querySelector(s).innerText;"
                               " return x.includes(d) && (!m || x.includes(m)); }",
                               arg=[f"#bvi-{side}-stats", done, marker if turn > 1 else ""], timeout=LONG)


def _turns_shown(page, side: str) -> list[str]:
    return page.locator(f"#bvi-{side}-output .bvi-user-text").all_inner_texts()


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_a_conversation_in_the_page(browser, app_url, client, lang):
    from tests.test_languages import assert_in_language, open_page

    page = open_page(browser, app_url, lang)
    try:
        _box(page, "bvi-follow-up").fill(Q2)  # before any comparison: nothing to follow up
        page.click("#bvi-followup-run")
        assert t("bvi.err.no_conversation", lang) in toast_text(page)
        page.locator(".toast-close").first.click()
        _box(page, "bvi-prompt").fill(Q1)
        page.locator("#bvi-probs input").check()
        page.click("#bvi-run")
        _wait_done(page, lang, 1)
        first_answer = page.locator("#bvi-instruct-output .gen-out").inner_text()
        _box(page, "bvi-follow-up").fill(Q2)
        _box(page, "bvi-follow-up").press("Enter")
        _wait_done(page, lang, 2)
        for side in ("base", "instruct"):
            assert _turns_shown(page, side) == [Q1, Q2]
            assert page.locator(f"#bvi-{side}-output .tok-p").count() > 3  # the new answer coloured
        assert page.locator("#bvi-instruct-output .bvi-answer").inner_text() == first_answer
        second_answer = page.locator("#bvi-instruct-output .gen-out").inner_text()
        assert _box(page, "bvi-follow-up").input_value() == ""
        assert _box(page, "bvi-prompt").input_value() == Q1
        assert t("bvi.how_plain", lang) in page.inner_text("#bvi-base-stats")
        assert_in_language(page, lang, "Base vs Instruct, turn 2")
        if lang == "fr":
            page.mouse.move(0, 0)
            screenshot(page, "base_vs_instruct_follow_up", focus="#bvi-panes")
        page.locator("#bvi-instruct-sees-acc summary, #bvi-instruct-sees-acc button").first.click()
        page.wait_for_selector("#bvi-instruct-sees .cm-content", timeout=LONG)
        sees = page.locator("#bvi-instruct-sees .cm-content").inner_text()
        assert sees.count("[INST]") == 2 and "</s> [INST] " + Q2 in sees

        _box(page, "bvi-follow-up").fill("   ")  # an empty follow-up: a message, the conversation stays
        page.click("#bvi-followup-run")
        assert t("bvi.err.empty_follow_up", lang) in toast_text(page)
        page.locator(".toast-close").first.click()
        assert _turns_shown(page, "base") == [Q1, Q2]
        assert not page.locator("#bvi-panes .error").count()  # a warning: no error badge over the panes

        # the link: the conversation restored elsewhere, ready for the next follow-up
        page.click("#share-compare-copy")
        page.wait_for_function("(document.querySelector('#share-compare-link textarea, #share-compare-link input')"
                               " || {}).value?.includes('?x=')", timeout=LONG)
        link = _box(page, "share-compare-link").input_value()
        other = new_page(browser, link.replace("?x=", f"?lang={lang}&x="), locale="en-US")
        try:
            other.wait_for_selector("#share-banner", state="visible", timeout=LONG)
            other.wait_for_function("document.querySelectorAll('#bvi-instruct-output .bvi-user-text').length === 2",
                                    timeout=LONG)
            assert _turns_shown(other, "instruct") == [Q1, Q2]
            assert _box(other, "bvi-prompt").input_value() == Q2  # the link replays the last turn
            assert other.locator("#bvi-instruct-output .gen-out").inner_text() == second_answer  # shown as saved
            _box(other, "bvi-follow-up").fill(Q3)
            other.click("#bvi-followup-run")
            _wait_done(other, lang, 3)
            assert _turns_shown(other, "base") == [Q1, Q2, Q3]
        finally:
            other.context.close()

        # the wall: the card shows the conversation (the room's code and a name typed, then "Send to the wall")
        room = client.predict("", api_name="/wall_open_room")["room"]
        open_tab(page, "wall")
        for elem_id, value in (("wall-room", room), ("wall-name", "Zoé")):
            _box(page, elem_id).fill(value)
        open_tab(page, "base_vs_instruct")
        page.click("#share-compare-send")
        page.wait_for_function(f"document.querySelector('#share-compare-status')?.innerText?.includes('{room}')",
                               timeout=LONG)
        card = client.predict(room, api_name="/wall")["entries"][0]
        assert card["title"] == f"{Q1} → {Q2}"
        base_part, instruct_part = [p["text"] for p in card["card"]["parts"]]
        assert base_part.startswith(f"🧑 {Q1}\n🤖 ") and f"\n\n🧑 {Q2}\n🤖 " in instruct_part
        open_tab(page, "wall")
        page.wait_for_function("(q) => document.querySelector('#wall-cards')?.innerText?.includes(q)", arg=Q2,
                               timeout=LONG)
        open_tab(page, "base_vs_instruct")

        # another system prompt: the follow-up asks for a new conversation; New conversation clears it
        page.locator("#bvi-options summary, #bvi-options button").first.click()
        _box(page, "bvi-system").fill("Réponds en une phrase.")
        _box(page, "bvi-follow-up").fill(Q3)
        page.click("#bvi-followup-run")
        assert t("bvi.err.settings_changed", lang) in toast_text(page)
        page.click("#bvi-new-conversation")
        page.wait_for_function("!document.querySelector('#bvi-base-output .bvi-chat, #bvi-base-output .gen-out')",
                               timeout=LONG)
        assert _box(page, "bvi-follow-up").input_value() == "" and _box(page, "bvi-prompt").input_value() == Q1
    finally:
        page.context.close()


def test_a_hand_written_link_with_a_history_and_a_fresh_prompt(browser, app_url):
    import json
    from urllib.parse import quote

    history = [{"user": Q1, "base": " BASE-UN", "instruct": "INSTRUCT-UN"}]
    page = new_page(browser, f"{app_url}?lang=fr&tab=base_vs_instruct&prompt={quote(Q2)}&greedy=true"
                             f"&history={quote(json.dumps(history))}")
    try:
        page.wait_for_selector("#share-banner", state="visible", timeout=LONG)
        assert _box(page, "bvi-prompt").input_value() == Q2
        page.click("#share-run-again")  # the link's turn: Q2 after the history it carries
        _wait_done(page, "fr", 2)
        assert _turns_shown(page, "instruct") == [Q1, Q2]
        assert page.locator("#bvi-instruct-output .bvi-answer").inner_text() == "INSTRUCT-UN"
        assert page.locator("#bvi-base-output .bvi-answer").inner_text() == "BASE-UN"
        # typing a new prompt drops the link's history: Generate both starts a new conversation
        _box(page, "bvi-prompt").click()
        page.keyboard.press("Control+A")
        page.keyboard.type("Bonjour")  # keystrokes: what fires the box's input event (fill() does not)
        page.click("#bvi-run")
        page.wait_for_function("() => !document.querySelector('#bvi-instruct-output .bvi-chat') && "
                               "document.querySelector('#bvi-instruct-stats').innerText.includes('limite')",
                               timeout=LONG)
        assert "Tour" not in page.inner_text("#bvi-instruct-stats")
    finally:
        page.context.close()


def test_a_conversation_reads_on_a_projector_and_a_phone(browser, app_url):
    for viewport, query in ((DESKTOP, "?present=1"), (PHONE, "")):
        page = new_page(browser, app_url + query, viewport=viewport)
        try:
            _box(page, "bvi-prompt").fill(Q1)
            page.click("#bvi-run")
            _wait_done(page, "en", 1)
            _box(page, "bvi-follow-up").fill(Q2)
            page.click("#bvi-followup-run")
            _wait_done(page, "en", 2)
            px = {sel: page.evaluate("(s) => parseFloat(getComputedStyle(document.querySelector(s)).fontSize)", sel)
                  for sel in ("#bvi-base-output .bvi-user-text", "#bvi-base-output .bvi-answer",
                              "#bvi-base-output .gen-out", "#bvi-follow-up textarea")}
            if query:  # presentation mode: the messages and the answers are read from the back of the room
                assert px["#bvi-base-output .gen-out"] >= 28 and px["#bvi-follow-up textarea"] >= 28, px
                assert px["#bvi-base-output .bvi-user-text"] >= 22 and px["#bvi-base-output .bvi-answer"] >= 20, px
            else:  # a phone: the panes stack, nothing scrolls sideways, the follow-up box is full width
                assert no_horizontal_overflow(page)
                box = page.locator("#bvi-follow-up").bounding_box()
                assert box["width"] > 0.8 * PHONE["width"]
                assert page.locator("#bvi-followup-run").is_visible()
        finally:
            page.context.close()
