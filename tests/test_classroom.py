"""In front of a class, in Chromium: presentation mode, token tooltips, the phone tab bar,
"New sample", the tokenizer tab with a long text."""
from __future__ import annotations

import colorsys
import json
import re

from tests.browser import DESKTOP, PHONE, no_horizontal_overflow, screenshot, validation_message
from ui.i18n import t
from ui.token_probs import N_STEPS, STEPS

LONG = 120_000
TABS = ("base_vs_instruct", "tokenizers", "quantization", "techniques", "image_prompting", "about")


def open_page(browser, app_url, query: str = "lang=fr", viewport=DESKTOP, **context_args):
    context = browser.new_context(viewport=viewport, locale="fr-FR", **context_args)
    page = context.new_page()
    page.goto(f"{app_url}?{query}")
    page.wait_for_selector("#bvi-run", timeout=LONG)
    page.wait_for_function("document.body.dataset.langReady === 'fr'", timeout=LONG)
    return page


def px(page, selector: str, prop: str = "fontSize") -> float:
    value = page.evaluate("([s, p]) => getComputedStyle(document.querySelector(s))[p]", [selector, prop])
    return float(value.rstrip("px"))


def generate(page, prompt: str = "Qu'est-ce qu'un consultant ?", probs: bool = False, greedy: bool = False) -> None:
    page.fill("#bvi-prompt textarea", prompt)
    if probs:
        page.locator("#bvi-probs input").check()
    if greedy:
        page.get_by_text(t("common.sampling", "fr")).first.click()
        page.get_by_label(t("common.greedy", "fr")).check()
    page.click("#bvi-run")
    wait_done(page)


def wait_done(page) -> None:
    done = t("bvi.reason_length", "fr")
    page.wait_for_function("(d) => ['base', 'instruct'].every((s) => document.querySelector(`#bvi-${s}-stats`)"
                           ".innerText.includes(d))", arg=done, timeout=LONG)


# ------------------------------------------------------------------ presentation mode
def test_presentation_mode_is_readable_from_the_back_and_remembered(browser, app_url):
    page = open_page(browser, app_url, "lang=fr&present=1")
    try:
        page.wait_for_function("document.body.classList.contains('presentation')")
        assert page.locator("#presentation-toggle input").is_checked()
        generate(page)
        output = px(page, "#bvi-base-output .gen-out")
        assert px(page, "#bvi-prompt textarea") >= 28 and output >= 28
        assert px(page, "#bvi-run") >= 24 and px(page, "#bvi-stop") >= 24 and px(page, "#bvi-new-sample") >= 24
        assert px(page, ".tab-intro p") < output  # explanations do not grow as much as what students read
        # contrast without heavy frames: black output text, no block border thicker than 1 px
        assert page.evaluate("getComputedStyle(document.querySelector('#bvi-base-output .gen-out')).color") \
            == "rgb(0, 0, 0)"
        borders = page.evaluate("[...document.querySelectorAll('#tab-base_vs_instruct .block')]"
                                ".map((b) => parseFloat(getComputedStyle(b).borderTopWidth))")
        assert borders and max(borders) <= 1
        # the secondary controls stay folded
        assert not page.get_by_label(t("common.temperature", "fr")).is_visible()
        screenshot(page, "presentation_mode", focus="#bvi-run")
        page.goto(f"{app_url}?lang=fr&present=0")
        page.wait_for_selector("#bvi-run", timeout=LONG)
        page.wait_for_function("!document.body.classList.contains('presentation')", timeout=LONG)
        normal = px(page, "#bvi-prompt textarea")
        assert normal < 20
        # the toggle is remembered across a reload
        page.locator("#presentation-toggle input").check()
        page.wait_for_function("document.body.classList.contains('presentation')")
        page.goto(f"{app_url}?lang=fr")
        page.wait_for_selector("#bvi-run", timeout=LONG)
        page.wait_for_function("document.body.classList.contains('presentation')", timeout=LONG)
        assert px(page, "#bvi-prompt textarea") >= 28
    finally:
        page.context.close()


# ------------------------------------------------------------------ token probabilities
def _hue(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hls(r, g, b)[0] * 360


def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(int(hex_colour[i:i + 2], 16)) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_probability_scale_is_colour_blind_safe_and_readable():
    """Orange (improbable) to blue (certain), never red/green; dark text readable on every step."""
    assert len(STEPS) == N_STEPS == 10
    assert 15 <= _hue(STEPS[0]) <= 40 and 195 <= _hue(STEPS[-1]) <= 230
    for colour in STEPS:
        hue = _hue(colour)
        assert not (90 <= hue <= 160) and not (hue < 10 or hue > 345), colour  # no green, no red
        assert (_luminance(colour) + 0.05) / (_luminance("#111111") + 0.05) >= 4.5, colour


TIP_VISIBLE = "() => { const t = document.getElementById('token-tip'); return !!t && !t.hidden; }"


def test_token_tooltip_on_hover_keyboard_and_legend(browser, app_url):
    page = open_page(browser, app_url)
    try:
        generate(page, probs=True, greedy=True)
        tokens = page.locator("#bvi-base-output .tok-p")
        assert tokens.count() > 5
        # hover: shown at once (no browser title delay), top 5 with percentages, the chosen one marked
        tokens.nth(2).hover()
        assert page.evaluate(TIP_VISIBLE)
        tip = page.locator("#token-tip")
        assert tip.locator(".tt-alt").count() == 5 and "%" in tip.inner_text()
        assert t("ui.tip_alternatives", "fr") in tip.inner_text()
        chosen = tip.locator(".tt-alt.chosen")
        assert chosen.count() == 1 and t("ui.tip_chosen", "fr") in chosen.inner_text()  # greedy: the top token
        assert re.search(r"\d[\u00a0\u202f]%", tip.inner_text())  # French percentages: "0,3 %"
        assert tokens.nth(2).get_attribute("title") is None  # no second, slower tooltip
        # keyboard: tokens are focusable, arrows move between them, Escape hides
        page.mouse.move(0, 0)
        tokens.nth(0).focus()
        assert page.evaluate(TIP_VISIBLE)
        first = tip.locator(".tt-head code").inner_text()
        page.keyboard.press("ArrowRight")
        assert page.evaluate("document.activeElement === document.querySelectorAll('#bvi-base-output .tok-p')[1]")
        assert page.evaluate(TIP_VISIBLE) and tip.locator(".tt-head code").inner_text() != first or \
            tokens.nth(0).inner_text() == tokens.nth(1).inner_text()
        assert tokens.nth(1).get_attribute("tabindex") == "0" and tokens.nth(0).get_attribute("tabindex") == "-1"
        page.keyboard.press("Escape")
        assert not page.evaluate(TIP_VISIBLE)
        # the legend draws the very colours the tokens use, step by step
        legend = page.evaluate("[...document.querySelectorAll('#bvi-legend .tok-legend-step')]"
                               ".map((s) => getComputedStyle(s).backgroundColor)")
        assert len(legend) == N_STEPS and len(set(legend)) == N_STEPS
        coloured = page.evaluate("[...document.querySelectorAll('#bvi-base-output .tok-p, #bvi-instruct-output .tok-p')]"
                                 ".map((s) => [Number(s.dataset.p), getComputedStyle(s).backgroundColor])")
        for prob, colour in coloured:
            assert colour == legend[min(N_STEPS - 1, int(prob * N_STEPS))], (prob, colour)
    finally:
        page.context.close()


def test_token_tooltip_on_tap(browser, app_url):
    page = open_page(browser, app_url, viewport=PHONE, has_touch=True, is_mobile=True)
    try:
        generate(page, probs=True)
        token = page.locator("#bvi-instruct-output .tok-p").nth(1)
        token.scroll_into_view_if_needed()
        token.tap()
        assert page.evaluate(TIP_VISIBLE)
        box = page.locator("#token-tip").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]  # fits the phone's screen
        page.locator("#bvi-prompt textarea").tap()  # a tap elsewhere closes it
        assert not page.evaluate(TIP_VISIBLE)
    finally:
        page.context.close()


# ------------------------------------------------------------------ phone
def test_every_tab_one_tap_away_on_a_phone(browser, app_url):
    page = open_page(browser, app_url, viewport=PHONE, has_touch=True)
    try:
        assert not page.locator("button[aria-label='More tabs']").is_visible()
        for tab in TABS:
            button = page.locator(f"#tab-{tab}-button")
            assert button.is_visible(), tab
            button.tap()
            page.wait_for_selector(f"#tab-{tab}", state="visible", timeout=LONG)
            assert no_horizontal_overflow(page), tab
    finally:
        page.context.close()


# ------------------------------------------------------------------ new sample
def test_new_sample_draws_a_seed_and_generates(browser, app_url):
    page = open_page(browser, app_url)
    try:
        generate(page, prompt="Il était une fois")
        stats = page.inner_text("#bvi-base-stats")
        assert t("ui.seed_shown", "fr", seed=42) in stats
        first = page.inner_text("#bvi-base-output")
        assert page.locator("#bvi-new-sample").is_visible()  # next to Generate, not in an accordion
        page.click("#bvi-new-sample")
        # done when both panes show a finished run with another seed
        page.wait_for_function("(d) => ['base', 'instruct'].every((s) => { const x = document.querySelector("
                               "`#bvi-${s}-stats`).innerText; const m = x.match(/graine (\\d+)/);"
                               " return x.includes(d) && m && m[1] !== '42'; })",
                               arg=t("bvi.reason_length", "fr"), timeout=LONG)
        assert page.inner_text("#bvi-base-output") != first
    finally:
        page.context.close()


# ------------------------------------------------------------------ tokenizer tab, long text
WRITES_TO = """(elemId) => {
  const cfg = window.gradio_config;
  const target = cfg.components.find((c) => c.props && c.props.elem_id === elemId).id;
  return cfg.dependencies.filter((d) => d.outputs.includes(target)).map((d) => d.id);
}"""


def writes_to(page, elem_id: str) -> list[int]:
    """The events (fn_index) whose outputs include the component ``elem_id``."""
    return page.evaluate(WRITES_TO, elem_id)


PASTE = """(text) => { const b = document.querySelector('#tok-text textarea'); b.value = text;
  b.dispatchEvent(new InputEvent('input', {bubbles: true, inputType: 'insertFromPaste'})); }"""


def test_long_text_counts_without_redoing_work(browser, app_url):
    from engine.tokenizers import MAX_CHARS
    from ui.token_view import MAX_SHOWN

    page = open_page(browser, app_url)
    joins: list[str] = []
    bodies: list[str] = []

    def on_request(r) -> None:
        if r.method == "POST" and "queue/join" in r.url:
            joins.append(r.url)
            bodies.append(r.post_data or "")

    page.on("request", on_request)
    try:
        page.click("#tab-tokenizers-button")
        page.wait_for_selector("#tok-views .tokstats", timeout=LONG)
        text = ("Les tokeniseurs découpent le texte, même très long : 12 345 caractères ! " * 500)[:30_000]
        joins.clear()
        page.evaluate(PASTE, text)
        page.wait_for_function("(n) => { const s = [...document.querySelectorAll('#tok-views .tokstats')];"
                               " return s.length === 4 && s.every((x) => x.dataset.chars === n); }",
                               arg=str(len(text)), timeout=LONG)
        assert len(joins) == 1  # one request for the paste
        page.wait_for_function("(n) => document.querySelectorAll('#tok-views .tokview')[0]"
                               ".querySelectorAll('.tk').length === n", arg=MAX_SHOWN, timeout=LONG)
        assert "30\u202f000" in page.inner_text("#tok-views")  # French counts
        # typing a few characters: one request once typing pauses, not one per key
        page.locator("#tok-text textarea").focus()
        page.keyboard.press("End")
        joins.clear()
        page.keyboard.type("abcde", delay=40)
        page.wait_for_function("(n) => [...document.querySelectorAll('#tok-views .tokstats')]"
                               ".every((x) => x.dataset.chars === n)", arg=str(len(text) + 5), timeout=LONG)
        assert len(joins) == 1, joins
        # coming back to the tab does not tokenize again
        render = page.get_attribute("#tok-views .tokgrid", "data-r")
        page.click("#tab-about-button")
        page.wait_for_selector("#tab-about", state="visible")
        page.wait_for_timeout(1000)  # the About tab refreshes itself when shown
        bodies.clear()
        page.click("#tab-tokenizers-button")
        page.wait_for_selector("#tok-views .tokstats", state="visible")
        page.wait_for_timeout(1000)
        assert page.get_attribute("#tok-views .tokgrid", "data-r") == render
        # (the class wall hears every tab change, to refresh itself only while it is shown)
        assert not [b for b in bodies if json.loads(b)["fn_index"] in writes_to(page, "tok-views")], bodies
        # over the limit: refused before it is queued, one message on the text box, no toast
        page.evaluate(PASTE, "a" * (MAX_CHARS + 1))
        message = validation_message(page, "#tok-text")
        shown = [m for m in page.locator(".validation-error").all_inner_texts() if m.strip()]
        assert len(shown) == 1 and page.locator(".toast-body").count() == 0
        assert message == \
            "Texte fait 100\u202f001 caractères ; la limite est de 100\u202f000. Raccourcissez-le."
    finally:
        page.context.close()
