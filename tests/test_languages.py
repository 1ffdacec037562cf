"""The whole app in each language, in Chromium: one action per tab, then no visible word of the other
language (tests/lang_check.py). The French walk also takes the README's screenshots."""
from __future__ import annotations

import pytest

from tests.browser import DESKTOP, PHONE, open_tab, screenshot, wait_while_progressing
from tests.lang_check import find_foreign, visible_text
from ui.i18n import t

LONG = 120_000  # ms: the first click of a tab may load a tiny model
OTHER_LOCALE = {"fr": "en-US", "en": "fr-FR"}  # the browser prefers the other language: ?lang= must win


def open_page(browser, app_url: str, lang: str, viewport=DESKTOP, query: str = ""):
    context = browser.new_context(viewport=viewport, locale=OTHER_LOCALE[lang])
    page = context.new_page()
    page.goto(f"{app_url}?lang={lang}{query}")
    page.wait_for_selector("#bvi-run", timeout=LONG)
    page.wait_for_function("(l) => document.body.dataset.langReady === l", arg=lang, timeout=LONG)
    return page


def assert_in_language(page, lang: str, where: str) -> None:
    hits = find_foreign(visible_text(page), lang)
    assert not hits, f"{where}: words of the other language on the {lang} page:\n" + "\n".join(sorted(set(hits)))


def wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function("([s, x]) => ((document.querySelector(s) || {}).innerText || '').includes(x)",
                           arg=[selector, text], timeout=LONG)


def text_of(page, selector: str) -> str:
    return page.evaluate("(s) => (document.querySelector(s) || {}).innerText || ''", selector)


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_every_tab_speaks_one_language(browser, app_url, lang):
    shots = lang == "fr"  # the README's screenshots are the French UI's
    page = open_page(browser, app_url, lang)
    try:
        # a warning toast: its title is Gradio's, translated by assets/header.js
        page.fill("#bvi-prompt textarea", "")
        page.click("#bvi-run")
        page.wait_for_selector(".toast-body", timeout=LONG)
        assert t("err.empty_prompt", lang) in text_of(page, ".toast-body")
        assert_in_language(page, lang, "toast")
        page.locator(".toast-close").first.click()

        # Base vs Instruct: both panes, tokens coloured by probability
        page.fill("#bvi-prompt textarea", "Qu'est-ce qu'un consultant ? 🎉" if lang == "fr"
                  else "What does a consultant do? 🎉")
        page.locator("#bvi-probs input").check()
        page.click("#bvi-run")
        done = t("bvi.reason_length", lang)
        for side in ("base", "instruct"):
            page.wait_for_function("([s, d]) => document.querySelector(s).innerText.includes(d)",
                                   arg=[f"#bvi-{side}-stats", done], timeout=LONG)
        assert_in_language(page, lang, "Base vs Instruct")
        if shots:
            screenshot(page, "base_vs_instruct")

        # Tokenizers: the default text's views are there from the start
        open_tab(page, "tokenizers")
        page.wait_for_selector("#tok-views .tokstats", timeout=LONG)
        page.locator("#tok-lang summary, #tok-lang button").first.click()
        page.click("#tok-lang-run")
        wait_text(page, "#tok-lang-table", "(×")
        assert_in_language(page, lang, "Tokenizers")
        if shots:
            screenshot(page, "tokenizers", focus="#tok-text")

        # Quantization: the weights, the memory plan, a live comparison of two precisions
        open_tab(page, "quantization")
        page.click("#quant-w-run")
        wait_text(page, "#quant-w-summary", "σ")
        assert_in_language(page, lang, "Quantization · weights")
        if shots:
            screenshot(page, "quantization")
        page.click("#quant-planner-button")
        page.click("#quant-p-run")
        wait_text(page, "#quant-p-table", "T4")
        assert_in_language(page, lang, "Quantization · planner")
        page.click("#quant-live-button")
        assert_in_language(page, lang, "Quantization · live, before a run")
        if shots:  # a run (two quick precisions) is checked once, in French, where its screenshot is taken
            for label in page.locator("#quant-l-precisions label").all():
                label.locator("input").set_checked(label.inner_text().strip() in ("fp32", "LLM.int8"))
            page.click("#quant-l-run")
            wait_while_progressing(page, "#quant-l-status", t("quant.l_done", lang).split(":")[0].strip(),
                                   watch="#quant-l-status, #quant-live .progress-level-inner", stall_ms=LONG)
            assert_in_language(page, lang, "Quantization · live")
            screenshot(page, "quantization_live", focus="#quant-l-status")

        # Prompt techniques: self-consistency's five paths and the vote (in French, for the screenshot)
        open_tab(page, "techniques")
        technique = "self_consistency" if shots else "zero_shot"  # zero-shot is the default choice
        if shots:
            page.locator("#tech-technique label", has_text=t(f"tech.name.{technique}", lang)).click()
        page.click("#tech-run")
        if shots:
            page.wait_for_selector("#tech-vote-chart", timeout=LONG)
        page.wait_for_function("(n) => document.querySelector('#tech-result')?.innerText?.includes(n)",
                               arg=t(f"tech.name.{technique}", lang), timeout=LONG)
        assert_in_language(page, lang, "Prompt techniques")
        if shots:
            screenshot(page, "techniques", focus="#tech-run")

        # Image prompting: one image per model, labelled
        open_tab(page, "image_prompting")
        page.click("#img-run")
        page.wait_for_function("document.querySelectorAll('#img-gallery img').length >= 2", timeout=LONG)
        assert_in_language(page, lang, "Image prompting")
        if shots:
            screenshot(page, "image_prompting", focus="#img-run")

        # About this machine
        open_tab(page, "about")
        page.wait_for_function("document.querySelector('#about-overview')?.innerText?.includes('tiny')", timeout=LONG)
        assert_in_language(page, lang, "About")
        if shots:
            screenshot(page, "about")
    finally:
        page.context.close()


def test_the_switch_changes_everything_at_once_and_is_remembered(browser, app_url):
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    page = context.new_page()
    try:
        page.goto(app_url)
        page.wait_for_selector("#tab-about-button", timeout=LONG)
        page.wait_for_function("document.querySelector('#tab-about-button')?.innerText?.includes('About')")
        page.locator("#lang-switch label", has_text="FR").click()
        # Gradio's labels, the tab labels (server-sent) and the server's texts all follow
        page.wait_for_function("(l) => document.querySelector('#tab-about-button')?.innerText?.trim() === l",
                               arg=t("tab.about", "fr"), timeout=LONG)
        assert t("bvi.generate", "fr") in text_of(page, "#bvi-run")
        assert "genai_lang=fr" in page.evaluate("document.cookie")
        # Gradio's untranslatable texts are rewritten as they appear (here a status line like its own)
        page.evaluate("() => { const d = document.createElement('div'); d.className = 'progress-text';"
                      " d.id = 'fake-status'; d.textContent = 'processing |'; document.body.appendChild(d); }")
        page.wait_for_function("document.getElementById('fake-status').textContent === 'traitement |'")
        page.fill("#bvi-prompt textarea", "Bonjour")
        page.click("#bvi-run")
        page.wait_for_function("(d) => document.querySelector('#bvi-base-stats')?.innerText?.includes(d)",
                               arg=t("bvi.reason_length", "fr"), timeout=LONG)
        assert t("ui.seed_shown", "fr", seed=42) in text_of(page, "#bvi-base-stats")
        # remembered across a reload, in an English browser, without ?lang=
        page.reload()
        page.wait_for_selector("#tab-about-button", timeout=LONG)
        page.wait_for_function("(l) => document.querySelector('#tab-about-button')?.innerText?.trim() === l",
                               arg=t("tab.about", "fr"), timeout=LONG)
        assert page.locator("#lang-switch input[value=fr]").is_checked()
        # and the URL wins over the memory
        page.goto(f"{app_url}?lang=en")
        page.wait_for_selector("#tab-about-button", timeout=LONG)
        page.wait_for_function("(l) => document.querySelector('#tab-about-button')?.innerText?.trim() === l",
                               arg=t("tab.about", "en"), timeout=LONG)
    finally:
        context.close()


def test_phone_screenshot_in_french(browser, app_url):
    page = open_page(browser, app_url, "fr", viewport=PHONE)
    try:
        assert_in_language(page, "fr", "phone")
        screenshot(page, "phone")
    finally:
        page.context.close()
