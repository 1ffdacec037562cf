"""Every tab driven in Debian's Chromium like a student would (in English; the README's screenshots are
taken in French by tests/test_languages.py and tests/test_classroom.py)."""
from __future__ import annotations

from tests.browser import (LONG, PHONE, new_page, no_horizontal_overflow, open_tab, toast_text,
                           wait_while_progressing)

TABS = ("base_vs_instruct", "tokenizers", "quantization", "techniques", "image_prompting", "wall", "about")


def test_base_vs_instruct_streams_both_panes(page):
    page.fill("#bvi-prompt textarea", "Qu'est-ce qu'un consultant ?")
    page.locator("#bvi-probs input").check()
    page.click("#bvi-run")
    for side in ("base", "instruct"):
        page.wait_for_function(f"document.querySelector('#bvi-{side}-stats')?.innerText?.includes('token limit')",
                               timeout=LONG)
        assert page.locator(f"#bvi-{side}-output .tok-p").count() > 5
    assert "tiny/mistral-instruct" in page.inner_text("#bvi-instruct-header")


def test_empty_prompt_shows_a_warning_toast(page):
    page.fill("#bvi-prompt textarea", "")
    page.click("#bvi-run")
    assert "prompt is empty" in toast_text(page)


def test_quantization_weights_planner_and_live(page):
    open_tab(page, "quantization")
    page.click("#quant-w-run")
    page.wait_for_function("document.querySelector('#quant-w-table') && document.querySelector('#quant-w-table')?.innerText?.includes('SNR')",
                           timeout=LONG)
    page.click("#quant-planner-button")
    page.click("#quant-p-run")
    page.wait_for_function("document.querySelector('#quant-p-summary')?.innerText?.includes('14.5 GB')", timeout=LONG)
    assert "14.48" in page.inner_text("#quant-p-table")  # Mistral 7B in 16 bits
    page.click("#quant-live-button")
    page.click("#quant-l-run")
    # done when the status says "measured"; a stall is when neither the status (one more precision
    # measured) nor the progress bar (load / generate / perplexity of the current one) moves
    wait_while_progressing(page, "#quant-l-status", "measured",
                           watch="#quant-l-status, #quant-live .progress-level-inner", stall_ms=LONG)
    table = page.inner_text("#quant-l-table")
    for precision in ("fp32", "int8", "nf4"):
        assert precision in table, precision
    assert page.locator("#quant-l-outputs .quant-card").count() == 6  # one card per default precision


def test_techniques_self_consistency_shows_every_path_and_the_vote(page):
    open_tab(page, "techniques")
    page.locator("#tech-technique label", has_text="Self-consistency").click()
    page.click("#tech-run")
    page.wait_for_selector("#tech-vote-chart", timeout=LONG)
    page.wait_for_function("document.querySelector('#tech-result')?.innerText?.includes('Self-consistency')",
                           timeout=LONG)
    result = page.inner_text("#tech-result")
    assert "5 calls in 1 batched generation" in result and "Expected: 62" in result
    assert page.locator("#tech-calls details").count() == 5
    page.locator("#tech-calls details summary").first.click()
    assert "[INST]" in page.inner_text("#tech-calls")  # the exact prompt after the chat template


def test_image_grid_is_labelled_per_model(page):
    open_tab(page, "image_prompting")
    page.fill("#img-prompt textarea", "a red fox in the snow, watercolor")
    page.click("#img-run")
    # done when the grid is there (the gallery streams: previews, then each image as it is done)
    page.wait_for_function("document.querySelectorAll('#img-grid img').length >= 1", timeout=LONG)
    gallery = page.inner_text("#img-gallery")
    assert "SDXL Turbo · 1 step" in gallery and "FLUX.1 schnell · 2 steps" in gallery
    assert page.locator("#img-grid img").count() == 1
    assert "10 / 77" in page.inner_text("#img-token-count")  # CLIP's window, counted live


def test_about_panel(page):
    open_tab(page, "about")
    page.wait_for_function("document.querySelector('#about-overview')?.innerText?.includes('tiny')", timeout=LONG)
    roles = page.inner_text("#about-roles")
    for role in ("base_llm", "instruct_llm", "quant_subject", "sdxl_turbo", "sdxl_base", "flux_schnell", "flux_dev"):
        assert role in roles, role


def test_french_browser_gets_french_labels(browser, app_url):
    pg = new_page(browser, app_url, locale="fr-FR")
    try:
        assert pg.locator("#tab-tokenizers-button").inner_text() == "Tokeniseurs"
        assert "Générer les deux" in pg.locator("#bvi-run").inner_text()
    finally:
        pg.context.close()
    pg = new_page(browser, app_url, locale="en-US")
    try:
        assert pg.locator("#tab-tokenizers-button").inner_text() == "Tokenizers"
    finally:
        pg.context.close()


def test_presentation_mode(page):
    before = page.evaluate("getComputedStyle(document.querySelector('#bvi-prompt textarea')).fontSize")
    page.locator("#presentation-toggle input").check()
    page.wait_for_function("document.body.classList.contains('presentation')")
    after = page.evaluate("getComputedStyle(document.querySelector('#bvi-prompt textarea')).fontSize")
    assert float(after.rstrip("px")) > float(before.rstrip("px"))


def test_phone_width_has_no_horizontal_overflow(browser, app_url):
    pg = new_page(browser, app_url, viewport=PHONE)
    try:
        for tab in TABS:
            open_tab(pg, tab)
            assert no_horizontal_overflow(pg), tab
    finally:
        pg.context.close()
