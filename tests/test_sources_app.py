"""“Give the model a source” through the running app (``python app.py --profile tiny``): the API as
a script calls it (gradio_client, and a raw client for a 10 MB source), links and the class wall, and
Chromium as a teacher uses it in French (which also takes the README's screenshot)."""
from __future__ import annotations

import re

import pytest
from gradio_client.exceptions import ValidationError

from bench.api_client import call
from engine.retrieval import preset
from tests.browser import DESKTOP, LONG, screenshot, validation_message
from tests.lang_check import find_foreign, visible_text
from tests.test_safety import compare_args
from ui.i18n import t

QUESTION_EN = "Who is the Prime Minister of France?"
QUESTION_FR = "Qui est le Premier ministre ?"
SETTINGS = {"max_new_tokens": 6, "greedy": True}
TEN_MB = "x" * 10_000_000


def with_without(client, question: str = QUESTION_EN, **changes):
    inputs = {"prompt": question, "source": preset("offices").text("en"), "source_mode": "with_without",
              "source_model": "instruct", "passages": 3, **SETTINGS, **changes}
    return inputs, client.predict(**inputs, api_name="/compare")


# ------------------------------------------------------------------ the API
def test_one_call_runs_the_same_question_without_then_with_the_source(client):
    _, out = with_without(client)
    raw = out[-1]
    assert out[0] == "### Without the source · `tiny/mistral-instruct`"
    assert out[5] == "### With the source · `tiny/mistral-instruct`"
    assert raw["base"]["model"] == raw["instruct"]["model"] == "tiny/mistral-instruct"
    assert raw["source"] == {"mode": "with_without", "model": "instruct", "chunks": 9, "language": "en", "k": 3,
                             "chars": len(preset("offices").text("en")),
                             "title": "Fact sheet: who holds which office (as of 1 January 2025)"}
    # the left pane got the question alone; the right one the passages, inside the real chat template
    assert raw["base"]["input"] == f"<s>[INST] {QUESTION_EN} [/INST]" and "passages" not in raw["base"]
    given = raw["instruct"]["input"]
    assert given.startswith("<s>[INST] Answer the question using only the extracts below.")
    assert "[1] Prime Minister of France: François Bayrou" in given
    assert given.endswith(f"Question: {QUESTION_EN} [/INST]")
    assert raw["instruct"]["passages"][0]["index"] == 3 and raw["instruct"]["passages"][0]["score"] > 0
    # each pane says what it was given: nothing, or the passages with their scores
    assert "No source" in out[10] and "François Bayrou" not in out[10]
    assert "Source given: 1 passage of 9" in out[11] and "[1] passage 3 · score " in out[11]
    assert "Prime Minister of France: François Bayrou" in out[11]
    # the pane without the source is the model on the question alone (same tokens as a plain comparison)
    plain = client.predict(prompt=QUESTION_EN, **SETTINGS, api_name="/compare")
    assert raw["base"]["output"] == plain[-1]["instruct"]["output"] and plain[10] == plain[11] == ""
    assert raw["base"]["tokens"] == raw["instruct"]["tokens"] == 6


def test_a_follow_up_keeps_each_panes_side_and_gives_the_passages_with_the_new_message(client):
    """Without then with the source, in a conversation: each pane continues its own side (the left
    one's answers are its own), and only the right one gets the passages, for the new message."""
    _, first = with_without(client)
    conversation = first[-1]["conversation"]
    follow = "And who presides over the Senate?"
    _, out = with_without(client, follow, history=conversation)
    raw = out[-1]
    assert [turn["user"] for turn in raw["conversation"]] == [QUESTION_EN, follow]
    left, right = raw["base"]["input"], raw["instruct"]["input"]
    assert left.count("[INST]") == right.count("[INST]") == 2
    assert conversation[0]["base"].strip() in left and QUESTION_EN in left and "extracts" not in left
    assert conversation[0]["instruct"].strip() in right
    # the passages go with the new message only: the first turn's question stays as it was asked
    assert right.index(f"[INST] {QUESTION_EN} [/INST]") < right.index("Answer the question using only the extracts")
    assert right.endswith(f"Question: {follow} [/INST]") and "Senate" in right
    assert raw["instruct"]["passages"] and "passages" not in raw["base"]


def test_both_models_get_the_source_in_french(app_url):
    data = compare_args(prompt=QUESTION_FR, max_new_tokens=6, greedy=True)
    data[-4:] = [preset("offices").text("fr"), "both", "instruct", 2]
    answer = call(app_url, "compare", data, lang="fr-FR,fr;q=0.9", timeout=300)
    assert answer.ok, answer.messages
    out = answer.data[2:]  # the REST API gives the Run and New sample buttons' states first (ui.widgets.on_run)
    raw = out[-1]
    assert out[0].startswith("### Modèle de base") and out[5].startswith("### Modèle instruct")
    assert raw["base"]["model"] == "tiny/mistral-base" and raw["instruct"]["model"] == "tiny/mistral-instruct"
    assert "[INST]" not in raw["base"]["input"] and raw["base"]["input"].endswith(f"\n\n{QUESTION_FR}")
    assert raw["base"]["input"].startswith("<s> Extraits de la source « Fiche : qui occupe quelle fonction")
    assert raw["instruct"]["input"].startswith("<s>[INST] Réponds à la question en t'appuyant uniquement")
    for block in out[10:12]:
        assert "Source donnée : 2 passages sur 9" in block and re.search(r"score \d+,\d\d", block)
    assert raw["base"]["passages"] == raw["instruct"]["passages"]


@pytest.mark.parametrize("lang,expected", [
    ("en-US", "Source has 10,000,000 characters; the limit is 100,000. Shorten it."),
    ("fr-FR,fr;q=0.9",
     "Source fait 10\u202f000\u202f000 caractères ; la limite est de 100\u202f000. Raccourcissez-le."),
])
def test_a_10_mb_source_is_refused_before_anything_runs(app_url, lang, expected):
    for mode in ("with_without", "off"):  # bounded whatever the mode
        data = compare_args()
        data[-4:] = [TEN_MB, mode, "instruct", 3]
        answer = call(app_url, "compare", data, lang=lang, timeout=120)
        assert answer.status == 422 and answer.messages == [expected], answer.messages  # refused before queueing


def test_an_empty_source_is_refused_with_a_message(client):
    for empty in ("", "  \n  "):
        with pytest.raises(ValidationError, match="The source is empty: paste a document or pick an example"):
            client.predict(prompt=QUESTION_EN, source=empty, source_mode="both", api_name="/compare")
    out = client.predict(prompt=QUESTION_EN, source="", source_mode="off", **SETTINGS, api_name="/compare")
    assert out[-1]["instruct"]["tokens"] == 6 and "source" not in out[-1]  # no source asked for: runs as before


def test_a_question_the_source_does_not_answer_still_runs_and_says_so(client):
    _, out = with_without(client, "How do I bake an apple pie?")
    raw = out[-1]
    assert raw["instruct"]["passages"] == [] and raw["instruct"]["input"] == raw["base"]["input"]
    assert "No passage of the source matches the question" in out[11]
    assert raw["base"]["tokens"] == raw["instruct"]["tokens"] == 6


def test_a_link_and_the_wall_keep_the_source_and_its_passages(client):
    inputs, out = with_without(client, passages=2, greedy=False, temperature=1.0, seed=5)
    outputs = {"base_output": {"type": "html", "value": out[3]}, "instruct_output": {"type": "html", "value": out[8]},
               "instruct_passages": {"type": "html", "value": out[11]}, "raw": {"type": "json", "value": out[-1]}}
    shared = client.predict("compare", inputs, outputs, api_name="/share_experiment")
    opened = client.predict(shared["id"], api_name="/open_experiment")
    assert opened["inputs"] == inputs and "François Bayrou" in opened["outputs"]["instruct_passages"]["value"]
    again = client.predict(**opened["inputs"], api_name=opened["api"])  # same seed, same source → same result
    assert again[11] == out[11] and again[-1]["instruct"]["output"] == out[-1]["instruct"]["output"]
    room = client.predict("", api_name="/wall_open_room")["room"]
    entry = client.predict(room, "Zoé", shared["id"], api_name="/wall_post")
    parts = entry["card"]["parts"]
    assert [p["label"] for p in parts] == ["src.card.without", "src.card.with", "src.card.passages"]
    assert "François Bayrou" in parts[2]["text"] and "score" in parts[2]["text"]
    assert t("src.card.with", "fr") == "Avec la source"  # the wall shows the labels in its viewer's language


# ------------------------------------------------------------------ in the browser
def test_a_teacher_shows_the_hallucination_and_its_fix_in_french(browser, app_url):
    """Pick the fact sheet, one click, both panes; presentation mode; a link; the bad inputs."""
    context = browser.new_context(viewport=DESKTOP, locale="fr-FR")
    page = context.new_page()
    try:
        page.goto(f"{app_url}?lang=fr")
        page.wait_for_selector("#bvi-run", timeout=LONG)
        page.wait_for_function("document.body.dataset.langReady === 'fr'", timeout=LONG)
        page.locator("#src-panel").get_by_text(t("src.panel", "fr")).click()
        page.locator("#src-preset input").click()
        page.locator("ul[role=listbox] li", has_text=preset("offices").title["fr"]).click()
        page.wait_for_function("document.querySelector('#src-text textarea')?.value?.startsWith('# Fiche')",
                               timeout=LONG)
        assert page.input_value("#bvi-prompt textarea") == QUESTION_FR  # the example's first question
        assert page.locator("#src-mode input[value='with_without']").is_checked()  # picking a source uses it
        page.locator("#src-passages input[type=number]").fill("1")     # one passage: the screenshot shows it whole
        page.locator("#src-passages input[type=number]").press("Enter")
        page.click("#src-run")                                            # one click: without, then with
        for side in ("base", "instruct"):
            page.wait_for_function("([s, d]) => document.querySelector(s).innerText.includes(d)",
                                   arg=[f"#bvi-{side}-stats", t("bvi.reason_length", "fr")], timeout=LONG)
        assert page.locator("#src-mode input[value='with_without']").is_checked()
        assert page.inner_text("#bvi-base-header").startswith("Sans la source")
        assert page.inner_text("#bvi-instruct-header").startswith("Avec la source")
        assert "Pas de source" in page.inner_text("#bvi-base-passages")
        given = page.inner_text("#bvi-instruct-passages")
        assert "Premier ministre : François Bayrou" in given and re.search(r"score \d+,\d\d", given)
        assert "1 passage sur 9" in given and "Assemblée" not in given  # k = 1: the best passage only
        hits = find_foreign(visible_text(page), "fr")
        assert not hits, "English words on the French page:\n" + "\n".join(sorted(set(hits)))
        panel = page.locator("#src-panel").get_by_text(t("src.panel", "fr"))
        panel.click()                                                    # folded: the question and both panes in view
        page.wait_for_selector("#src-text", state="hidden")
        screenshot(page, "sources", focus="#bvi-prompt")
        panel.click()
        page.wait_for_selector("#src-text textarea", state="visible")

        # on a projector: the passages as large as the stats line
        page.locator("#presentation-toggle input").check()
        page.wait_for_function("document.body.classList.contains('presentation')")
        size = "getComputedStyle(document.querySelector('#bvi-instruct-passages .src-passages')).fontSize"
        assert page.evaluate(size) == "22px"
        page.locator("#presentation-toggle input").uncheck()

        # a link restores the source, the mode and the passages shown, without running anything
        page.click("#share-compare-copy")
        page.wait_for_function("(document.querySelector('#share-compare-link textarea, #share-compare-link input')"
                               " || {}).value?.includes('?x=')", timeout=LONG)
        link = page.locator("#share-compare-link textarea, #share-compare-link input").first.input_value()
        other = context.new_page()
        other.goto(link)
        other.wait_for_selector("#share-banner", state="visible", timeout=LONG)
        other.wait_for_function("(document.querySelector('#bvi-instruct-passages') || {}).innerText?.includes("
                                "'François Bayrou')", timeout=LONG)
        assert other.input_value("#src-text textarea").startswith("# Fiche")
        assert other.locator("#src-mode input[value='with_without']").is_checked()
        other.close()

        # a question the source does not answer: it still runs, and says so (in the pane and in a toast,
        # recorded as it appears: it closes by itself)
        page.evaluate("""() => { window.seenToasts = []; new MutationObserver(() => document.querySelectorAll(
            '.toast-body').forEach((e) => window.seenToasts.push(e.innerText))).observe(document.body,
            {childList: true, subtree: true, characterData: true}); }""")
        page.fill("#bvi-prompt textarea", "Comment réussir une tarte aux pommes ?")
        page.click("#bvi-run")
        page.wait_for_function("(t) => document.querySelector('#bvi-instruct-passages')?.innerText?.includes(t)",
                               arg="Aucun passage de la source", timeout=LONG)
        page.wait_for_function("(x) => window.seenToasts.some((text) => text.includes(x))",
                               arg=t("src.no_match", "fr"), timeout=LONG)
        page.wait_for_function("(d) => document.querySelector('#bvi-instruct-stats')?.innerText?.includes(d)",
                               arg=t("bvi.reason_length", "fr"), timeout=LONG)

        # an empty source, then one over the limit: refused before anything runs, the message on the source
        # box (the 10 MB paste goes through the API above: laying out 10 MB in a text box is the browser's
        # own cost, tens of seconds on a loaded machine, and the check is the same)
        page.fill("#src-text textarea", "")
        page.click("#bvi-run")
        assert validation_message(page, "#src-text") == t("src.err.empty", "fr")
        page.evaluate("""(n) => { const b = document.querySelector('#src-text textarea'); b.value = 'x'.repeat(n);
            b.dispatchEvent(new InputEvent('input', {bubbles: true, inputType: 'insertFromPaste'})); }""", 100_001)
        page.click("#src-run", timeout=LONG)
        page.wait_for_function("[...document.querySelectorAll('#src-text .validation-error')]"
                               ".some(e => e.innerText.includes('001'))", timeout=LONG)
        assert validation_message(page, "#src-text") == \
            "Source fait 100\u202f001 caractères ; la limite est de 100\u202f000. Raccourcissez-le."
    finally:
        context.close()
