"""Ask-me-anything and the fragility experiment in Chromium: what a student sees and clicks (the French page
takes the README's screenshot of the fragility chart)."""
from __future__ import annotations

from tests.browser import LONG, open_tab, screenshot, toast_text
from tests.test_languages import assert_in_language, open_page, text_of, wait_text
from ui.i18n import t


def open_fragility(page) -> None:
    open_tab(page, "techniques")
    if not page.locator("#tech-frag-run").is_visible():
        page.locator("#tech-frag > button.label-wrap").click()
    page.wait_for_selector("#tech-frag-run", state="visible", timeout=LONG)


def set_number(page, selector: str, value: int) -> None:
    """Type ``value`` in a slider's number box and leave it, as a student does (the box shows a
    localized twin once left: wait until the slider itself holds the value)."""
    box = page.locator(f"{selector} input[type=number]")
    box.fill(str(value))
    page.keyboard.press("Enter")
    box.blur()
    page.wait_for_function("([s, v]) => document.querySelector(s + ' input[type=range]')?.value === v",
                           arg=[selector, str(value)], timeout=LONG)


def test_ama_shows_each_chain_its_calls_and_the_vote(page):
    open_tab(page, "techniques")
    page.locator("#tech-technique label", has_text="Ask-me-anything").click()
    page.wait_for_selector("#tech-ama-chains", state="visible")
    assert not page.locator("#tech-n-samples").is_visible() and not page.locator("#tech-k-examples").is_visible()
    assert "2 × N calls" in page.inner_text("#tech-card")
    page.click("#tech-run")
    wait_text(page, "#tech-vote-md", "Vote of the chains")  # the vote comes with the last batch of calls
    vote = page.inner_text("#tech-vote-md")
    assert "Vote of the chains" in vote and "open question" in vote and "list of the facts" in vote
    summaries = page.locator("#tech-calls details summary").all_inner_texts()
    assert len(summaries) == 6  # 3 chains × (reformulation, answer) on the default arithmetic problem
    assert summaries[0].startswith("#1 · Chain 1/3 · reformulation · open question")
    assert summaries[5].startswith("#6 · Chain 3/3 · answer · list of the facts")
    page.locator("#tech-calls details summary").nth(1).click()  # the cloze chain's reformulation prompt
    page.locator("#tech-calls details summary").nth(4).click()  # and its answer prompt
    prompts = page.locator("#tech-calls pre.tech-prompt").all_inner_texts()
    assert "[INST] Rewrite the task as one sentence with a blank ___" in prompts[1]
    assert "Fill in the blank ___" in prompts[4] and "Context: Léa has 12 bananas." in prompts[4]


def test_fragility_chart_prompts_link_and_stop_in_french(browser, app_url):
    page = open_page(browser, app_url, "fr")
    try:
        open_fragility(page)
        set_number(page, "#tech-frag-variants", 6)
        page.click("#tech-frag-run")
        wait_text(page, "#tech-frag-status", t("tech.frag_done", "fr").split(":")[0])  # "✅ Terminé"
        status = text_of(page, "#tech-frag-status")
        assert "18 lignes (6 variantes × 3 problèmes)" in status and "\u202f%" in status  # French percents
        page.wait_for_selector("#tech-frag-chart .vega-embed", timeout=LONG)
        table = text_of(page, "#tech-frag-table")
        assert "V6" in table and "ordre des exemples" in table and "étiquettes « Q » / « R »" in table
        details = page.locator("#tech-frag-prompts details")
        assert details.count() == 6
        for i in (0, 2):
            details.nth(i).locator("summary").click()
        reference, spaced = (details.nth(i).locator("pre").inner_text() for i in (0, 2))
        assert reference.startswith("<s>[INST] Question : ") and "\n\nQuestion : " in reference
        assert "\n\nQuestion : " not in spaced and " ".join(spaced.split()) == " ".join(reference.split())
        assert_in_language(page, "fr", "fragility experiment")
        screenshot(page, "fragility", focus="#tech-frag-status")

        # a link to the experiment opens it elsewhere, the section open, the saved result shown without running
        # (the link is also written to the clipboard: headless Chromium would otherwise keep that request
        # pending and stall later clicks)
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        page.click("#share-fragility_experiment-copy")
        page.wait_for_function("(document.querySelector('#share-fragility_experiment-link textarea, "
                               "#share-fragility_experiment-link input') || {}).value?.includes('?x=')", timeout=LONG)
        link = page.locator("#share-fragility_experiment-link textarea, #share-fragility_experiment-link input"
                            ).first.input_value()
        other = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR").new_page()
        other.goto(link)
        other.wait_for_selector("#share-banner", state="visible", timeout=LONG)
        other.wait_for_selector("#tech-frag-prompts details", state="visible", timeout=LONG)
        assert other.locator("#tech-frag-prompts details").count() == 6
        # the restored status, once the restore's own progress text has gone
        other.wait_for_function("([s, x]) => (document.querySelector(s) || {}).innerText === x",
                                arg=["#tech-frag-status", status], timeout=LONG)
        assert other.locator("#tech-frag-variants input[type=number]").input_value() == "6"
        other.context.close()
        # a long experiment: Stop ends it and keeps the problems that ran with every variant
        set_number(page, "#tech-frag-n", 30)
        set_number(page, "#tech-frag-tokens", 400)
        page.click("#tech-frag-run")
        wait_text(page, "#tech-frag-status", "prompts traités")  # the progress is shown
        page.click("#tech-frag-stop")
        wait_text(page, "#tech-frag-status", "⏹ Arrêté après")
        assert "sur 180" in text_of(page, "#tech-frag-status")

        # bad input: no problem at all
        for box in page.locator("#tech-frag-kinds input[type=checkbox]").all():
            box.uncheck()
        page.click("#tech-frag-run")
        assert t("tech.err_no_tasks", "fr") in toast_text(page)
    finally:
        page.context.close()
