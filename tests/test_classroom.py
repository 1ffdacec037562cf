"""In front of a class, in Chromium: presentation mode, token tooltips, the phone tab bar,
"New sample", the tokenizer tab with a long text."""
from __future__ import annotations

import colorsys
import json
import math
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
# every text a student must read from the back row (issue #24): selector → the least font size (px)
READ_FROM_THE_BACK = {
    "#bvi-base-output .gen-out": 28, "#bvi-instruct-output .gen-out": 28,     # outputs
    "#bvi-prompt textarea": 22,                                              # the prompt
    "#bvi-base-sees .cm-line": 22, "#bvi-base-sees-info": 22,                # what the model sees (chat template)
    "#bvi-legend .tok-legend-title": 22, "#bvi-legend .tok-legend-step": 22, "#bvi-legend .tok-legend-end": 22,
    "#bvi-base-stats p": 22,                                                 # stats
    "#tab-base_vs_instruct-button": 22, "#tab-techniques-button": 22,        # tab names
    "#share-compare-copy": 22, "#share-compare-send": 22,                    # share buttons
    "#bvi-prompt [data-testid='block-info']": 22, "#presentation-toggle label span, #presentation-toggle span": 22,
    "#bvi-panes .label-wrap span": 22,                                       # field and section labels
}
TECHNIQUE_TEXTS = {"#tech-result p": 28,                                    # the answer and the verdict
                   "#tech-calls summary": 22, "#tech-calls .tech-extract": 22,   # extracted answer
                   "#tech-calls .tech-label": 22, "#tech-calls pre": 28, "#tech-question textarea": 22}


def sizes(page, wanted: dict[str, int]) -> dict[str, float]:
    """The font size of the first visible element of each selector (None when none is visible)."""
    return page.evaluate("""(sels) => Object.fromEntries(sels.map((s) => {
        const e = [...document.querySelectorAll(s)].find((x) => x.checkVisibility());
        return [s, e ? parseFloat(getComputedStyle(e).fontSize) : null]; }))""", list(wanted))


def test_presentation_mode_is_readable_from_the_back_and_remembered(browser, app_url):
    page = open_page(browser, app_url, "lang=fr&present=1")
    try:
        page.wait_for_function("document.body.classList.contains('presentation')")
        assert page.locator("#presentation-toggle input").is_checked()
        generate(page, probs=True)
        page.mouse.move(1270, 2)                                   # no token tooltip over the outputs
        # after Generate at 1280×800 the outputs are on screen, whole
        for side in ("base", "instruct"):
            box = page.locator(f"#bvi-{side}-output .gen-out").bounding_box()
            assert box["y"] >= 0 and box["y"] + box["height"] <= DESKTOP["height"], (side, box)
        for accordion in page.locator("#bvi-panes .label-wrap").all():
            accordion.click()                                      # "what the model sees", opened
        page.wait_for_selector("#bvi-base-sees .cm-line", timeout=LONG)
        measured = sizes(page, READ_FROM_THE_BACK)
        small = {s: v for s, v in measured.items() if v is None or v < READ_FROM_THE_BACK[s]}
        assert not small, f"too small from the back row (px): {small}"
        assert px(page, "#bvi-run") >= 24 and px(page, "#bvi-stop") >= 24 and px(page, "#bvi-new-sample") >= 24
        assert px(page, ".tab-intro p") < px(page, "#bvi-base-output .gen-out")  # explanations grow less
        # contrast without heavy frames: black output text, no block border thicker than 1 px
        assert page.evaluate("getComputedStyle(document.querySelector('#bvi-base-output .gen-out')).color") \
            == "rgb(0, 0, 0)"
        borders = page.evaluate("[...document.querySelectorAll('#tab-base_vs_instruct .block')]"
                                ".map((b) => parseFloat(getComputedStyle(b).borderTopWidth))")
        assert borders and max(borders) <= 1
        # the secondary controls stay folded
        assert not page.get_by_label(t("common.temperature", "fr")).is_visible()
        screenshot(page, "presentation_mode", focus="#bvi-run")
        # the techniques tab: the answer, the verdict, the extracted answer, the prompt after the template
        page.click("#tab-techniques-button")
        page.click("#tech-run")
        page.wait_for_function("(n) => document.querySelector('#tech-result')?.innerText?.includes(n)",
                               arg=t("tech.name.zero_shot", "fr"), timeout=LONG)
        page.wait_for_selector("#tech-calls .tech-extract", timeout=LONG)
        measured = sizes(page, TECHNIQUE_TEXTS)
        small = {s: v for s, v in measured.items() if v is None or v < TECHNIQUE_TEXTS[s]}
        assert not small, f"too small from the back row (px): {small}"

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


def _lab(hex_colour: str) -> tuple[float, float, float]:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(int(hex_colour[i:i + 2], 16)) for i in (1, 3, 5))
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
    f = lambda v: v ** (1 / 3) if v > 0.008856 else 7.787 * v + 16 / 116  # noqa: E731
    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def washed_out(hex_colour: str, amount: float = 0.4) -> str:
    """A colour as a washed-out projector shows it: mixed with white (a lamp lifting every pixel)."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#%02x%02x%02x" % tuple(round((1 - amount) * c + amount * 255) for c in (r, g, b))


def _contrast(a: str, b: str) -> float:
    la, lb = _luminance(a), _luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def test_probability_scale_stays_distinct_on_a_washed_out_projector_and_readable():
    """Orange (improbable) to blue (certain), never red/green; on a projector that washes colours out
    by 40 %, neighbouring steps stay far apart (CIELAB distance ≥ 15, the old ten pale steps: 4–11) and
    every step stands out from the white page (≥ 1.45:1, the old middle steps: 1.1–1.3); each step's
    text colour reads on it at 4.5:1 or more."""
    from ui.token_probs import TEXT

    assert 3 <= len(STEPS) == N_STEPS == len(TEXT) <= 6
    assert 15 <= _hue(STEPS[0]) <= 40 and 195 <= _hue(STEPS[-1]) <= 230
    for colour in STEPS:
        r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
        if max(r, g, b) - min(r, g, b) > 30:                      # a hue, not a grey
            hue = _hue(colour)
            assert not (90 <= hue <= 160) and not (hue < 10 or hue > 345), colour  # no green, no red
    washed = [washed_out(c) for c in STEPS]
    for a, b in zip(washed, washed[1:]):
        assert math.dist(_lab(a), _lab(b)) >= 15, (a, b)
    assert min(_contrast(c, "#ffffff") for c in washed) >= 1.45
    for colour, text in zip(STEPS, TEXT):
        assert _contrast(colour, text) >= 4.5, (colour, text)


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
        # the legend draws the very colours the tokens use, step by step (and their text colours)
        legend = page.evaluate("[...document.querySelectorAll('#bvi-legend .tok-legend-step')]"
                               ".map((s) => [getComputedStyle(s).backgroundColor, getComputedStyle(s).color])")
        assert len(legend) == N_STEPS and len({bg for bg, _ in legend}) == N_STEPS
        coloured = page.evaluate("[...document.querySelectorAll('#bvi-base-output .tok-p, #bvi-instruct-output .tok-p')]"
                                 ".map((s) => [Number(s.dataset.p), getComputedStyle(s).backgroundColor,"
                                 " getComputedStyle(s).color])")
        for prob, colour, text in coloured:
            assert [colour, text] == legend[min(N_STEPS - 1, int(prob * N_STEPS))], (prob, colour)
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
# keys typed faster than the 300 ms pause, in one browser task: Playwright's own typing, on a loaded
# machine, can leave a pause between two keys, and then a second request is what the app should send
TYPE_BURST = """(keys) => { const b = document.querySelector('#tok-text textarea');
  for (const key of keys) { b.value += key;
    b.dispatchEvent(new InputEvent('input', {bubbles: true, inputType: 'insertText', data: key})); } }"""


# the views of a whole update: a live update shows the counts and the first tokens of each view, then
# the rest (tabs/tokenizers.py: refresh); until the second part, the update has not ended
WHOLE_VIEWS = """([chars, shown]) => { const s = [...document.querySelectorAll('#tok-views .tokstats')];
  const first = document.querySelector('#tok-views .tokview');
  return s.length === 4 && s.every((x) => x.dataset.chars === String(chars))
    && !!first && first.querySelectorAll('.tk').length === shown; }"""


def test_long_text_counts_without_redoing_work(browser, app_url):
    from engine.tokenization.tokenizers import MAX_CHARS
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
        page.wait_for_function(WHOLE_VIEWS, arg=[len(text), MAX_SHOWN], timeout=LONG)
        assert len(joins) == 1  # one request for the paste
        assert "30\u202f000" in page.inner_text("#tok-views")  # French counts
        # typing a few characters: one request once typing pauses, not one per key
        joins.clear()
        page.evaluate(TYPE_BURST, "abcde")
        page.wait_for_function(WHOLE_VIEWS, arg=[len(text) + 5, MAX_SHOWN], timeout=LONG)
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
        # (the class wall hears every tab change, to refresh itself only while it is shown)
        writers = writes_to(page, "tok-views-html")  # the views arrive in this hidden box (assets/tokenizer_input.js)
        assert writers and not [b for b in bodies if json.loads(b)["fn_index"] in writers], bodies
        assert page.get_attribute("#tok-views .tokgrid", "data-r") == render
        # over the limit: refused before it is queued, one message on the text box, no toast
        page.evaluate(PASTE, "a" * (MAX_CHARS + 1))
        message = validation_message(page, "#tok-text")
        shown = [m for m in page.locator(".validation-error").all_inner_texts() if m.strip()]
        assert len(shown) == 1 and page.locator(".toast-body").count() == 0
        assert message == \
            "Texte fait 100\u202f001 caractères ; la limite est de 100\u202f000. Raccourcissez-le."
    finally:
        page.context.close()


# ------------------------------------------------------------------ accessibility (issue #24)
FOCUS_RING = """() => {
  const e = document.activeElement;
  const shown = [e, e.closest('label')].filter(Boolean).map((x) => getComputedStyle(x));
  return shown.some((s) => (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2 && s.outlineColor !== 'rgba(0, 0, 0, 0)'
                            && e.checkVisibility({checkOpacity: true}))
                           || /inset/.test(s.boxShadow) && /0px 0px 0px [2-9]/.test(s.boxShadow));
}"""


def test_each_header_control_shows_its_keyboard_focus(browser, app_url):
    """FR, EN and presentation mode, reached with Tab: each shows a ring of at least 2 px (FR/EN inside
    the switch, where an outline would be clipped)."""
    page = open_page(browser, app_url)
    try:
        page.locator("#app-title").click()
        reached = []
        for _ in range(6):
            page.keyboard.press("Tab")
            page.wait_for_timeout(350)                        # the ring's transition
            where = page.evaluate("(() => { const e = document.activeElement; return [(e.closest('[id]') || {}).id,"
                                  " e.value || e.innerText]; })()")
            if where[0] in ("lang-switch", "presentation-toggle"):
                assert page.evaluate(FOCUS_RING), f"no visible focus on {where}"
                reached.append(tuple(where))
        assert {("lang-switch", "fr"), ("lang-switch", "en")} <= set(reached)
        assert any(w[0] == "presentation-toggle" for w in reached)
    finally:
        page.context.close()


CONTRAST = r"""() => {
  const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(',').map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    return layers.reverse().reduce((acc, c) => over(c, acc), [255, 255, 255, 1]);
  };
  const ratio = (fg, bg) => { const a = lum(over(fg, bg)), b = lum(bg); return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.nodeValue.trim() || !el || ['SCRIPT', 'STYLE'].includes(el.tagName)) continue;
    if (!el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
    // coloured on purpose and checked elsewhere: probability tokens, tokenizer pieces, charts, code, Gradio's progress
    if (el.closest('.tok-p, .tk, .tkg, .vega-embed, .cm-editor, [data-testid="status-tracker"], .genai-stale')) continue;
    const r = ratio(parse(getComputedStyle(el).color), background(el));
    if (r < 4.5) low.push([n.nodeValue.trim().slice(0, 40), (el.closest('[id]') || {}).id, Math.round(r * 100) / 100]);
  }
  document.querySelectorAll('input[placeholder], textarea[placeholder]').forEach((el) => {
    if (!el.checkVisibility()) return;
    const r = ratio(parse(getComputedStyle(el, '::placeholder').color), background(el));
    if (r < 4.5) low.push(['placeholder ' + el.placeholder.slice(0, 30), (el.closest('[id]') || {}).id, Math.round(r * 100) / 100]);
  });
  return low;
}"""


def test_every_text_on_every_tab_has_4_5_to_1_contrast(browser, app_url):
    from tests.browser import open_tab

    page = open_page(browser, app_url)
    try:
        generate(page)                                             # the footer's "Runs" link appears after a run
        for tab in TABS + ("wall",):
            open_tab(page, tab)
            page.wait_for_timeout(800)
            low = page.evaluate(CONTRAST)
            assert not low, f"{tab}: texts under 4.5:1 {low}"
    finally:
        page.context.close()


def test_no_image_without_alt_text(browser, app_url, client):
    """The comparison grid says which models, which prompt, which seed; so does each wall thumbnail."""
    from tests.browser import open_tab

    room = client.predict("", api_name="/wall_open_room")["room"]
    page = open_page(browser, app_url)
    try:
        open_tab(page, "wall")
        page.locator("#wall-room textarea, #wall-room input").first.fill(room)
        page.locator("#wall-name textarea, #wall-name input").first.fill("Zoé")
        page.click("#wall-join")
        page.wait_for_function(f"document.querySelector('#wall-join-status')?.innerText?.includes('{room}')", timeout=LONG)
        open_tab(page, "image_prompting")
        page.fill("#img-prompt textarea", "un renard roux dans la neige")
        page.click("#img-run")
        # the alt text is set by the event that follows the run (tabs/image_prompting.py: describe_grid)
        try:
            page.wait_for_function("(document.querySelector('#img-grid img') || {}).alt", timeout=LONG)
        except Exception as exc:  # what the page shows instead, for the report
            state = page.evaluate("""() => ({run: document.querySelector('#img-run')?.outerHTML?.slice(0, 200),
              toasts: [...document.querySelectorAll('.toast-body')].map((e) => e.innerText),
              grid: document.querySelector('#img-grid')?.innerHTML?.slice(0, 600),
              prompt: document.querySelector('#img-prompt textarea')?.value})""")
            raise AssertionError(f"the grid's alt text never came: {state}") from exc
        alt = page.get_attribute("#img-grid img", "alt")
        assert "renard roux" in alt and "SDXL Turbo" in alt and "42" in alt
        page.click("#share-generate_images-send")
        page.wait_for_function("document.querySelector('#share-generate_images-status')?.innerText?.includes('n°')",
                               timeout=LONG)
        open_tab(page, "wall")
        page.wait_for_selector("#wall-cards .wall-card img", timeout=LONG)
        wall_alt = page.get_attribute("#wall-cards .wall-card img", "alt")
        assert "renard roux" in wall_alt and "SDXL Turbo" in wall_alt and "Zoé" in wall_alt
        missing = page.evaluate("[...document.querySelectorAll('img')].filter((i) => !(i.getAttribute('alt') || '').trim())"
                                ".map((i) => ((i.closest('[id]') || {}).id || '') + ' ' + i.src.slice(0, 80))")
        assert missing == []
    finally:
        page.context.close()


# ------------------------------------------------------------------ one language from the first paint (issue #24)
RECORD_TEXTS = """(content) => {
  window.__shown = [];
  const note = (node) => {
    const el = node.nodeType === 3 ? node.parentElement : node;
    if (!el || !el.closest || !el.closest('gradio-app') || el.closest(content) || ['SCRIPT', 'STYLE'].includes(el.tagName)) return;
    const text = node.nodeType === 3 ? node.nodeValue : el.innerText;
    if (text && text.trim() && el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) window.__shown.push(text.trim());
  };
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'characterData') note(r.target);
      else r.addedNodes.forEach((n) => {
        if (n.nodeType === 3) note(n);
        else if (n.nodeType === 1) { const w = document.createTreeWalker(n, NodeFilter.SHOW_TEXT);
          for (let t = w.nextNode(); t; t = w.nextNode()) note(t); }
      });
    }
  }).observe(document, {subtree: true, childList: true, characterData: true});
  window.__titles = [];
  const title = () => window.__titles.push(document.title);
  new MutationObserver(title).observe(document.documentElement, {subtree: true, childList: true, characterData: true});
}"""


def test_each_language_from_the_first_paint_title_included(browser, app_url):
    """Every text shown while the page loads (recorded as it appears), and the browser tab's title,
    in the page's language: French in an English browser with ?lang=fr, English in a French one."""
    from tests.lang_check import CONTENT, find_foreign

    for lang, locale in (("fr", "en-US"), ("fr", "fr-FR"), ("en", "fr-FR")):
        context = browser.new_context(viewport=DESKTOP, locale=locale)
        page = context.new_page()
        joins = []
        page.on("request", lambda r: joins.append(r.post_data or "") if "queue/join" in r.url else None)
        page.add_init_script(f"({RECORD_TEXTS})({json.dumps(CONTENT)})")
        try:
            page.goto(f"{app_url}?lang={lang}")
            page.wait_for_function("(l) => document.body.dataset.langReady === l", arg=lang, timeout=LONG)
            page.wait_for_timeout(1000)
            shown = page.evaluate("window.__shown")
            assert shown and not find_foreign([(text, "all") for text in shown], lang), \
                (lang, locale, sorted(set(find_foreign([(text, "all") for text in shown], lang)))[:20])
            titles = set(page.evaluate("window.__titles")) | {page.title()}
            assert titles == {t("app.page_title", lang)}, titles
            assert page.evaluate("document.documentElement.lang") == lang
            legend = page.inner_text("#bvi-legend")
            assert t("ui.legend_title", lang) in legend
        finally:
            context.close()


# ------------------------------------------------------------------ French numbers (issue #24)
SHOWN_NUMBERS = """(sel) => [...document.querySelectorAll(sel)].filter((e) => e.checkVisibility())
    .map((e) => e.innerText || e.textContent)"""


def english_numbers(texts: list[str]) -> list[str]:
    from tests.lang_check import find_foreign

    return find_foreign([(text, "numbers") for text in texts], "fr")


def test_french_numbers_in_boxes_charts_messages_links_and_the_wall(browser, app_url, client):
    """Slider and number boxes, a chart's axes, the max-tokens message, a table restored from a link, a
    wall card and a comparison of two cards: numbers the French way ("0,95", "131 072")."""
    from tests.browser import open_tab

    from gradio_client import Client

    client = Client(app_url, verbose=False)                 # its own session: its own sends to the wall
    headers = ["tokenizer", "chars/token", "vocabulary"]
    rows = [["Tekken", 2.65, 131072], ["Mistral v1", 2.22, 32000]]
    shared = client.predict("tokenize", {"text": "Bonjour à tous"}, {"stats": {"type": "table", "headers": headers,
                                                                            "data": rows}}, api_name="/share_experiment")
    room = client.predict("", api_name="/wall_open_room")["room"]
    for name in ("Zoé", "Ben"):
        client.predict(room, name, shared["id"], api_name="/wall_post")
    page = open_page(browser, app_url)
    try:
        # slider boxes (the sampling settings) and their bounds
        page.get_by_text(t("common.sampling", "fr")).first.click()
        numbers = ("#tab-base_vs_instruct .genai-number, #tab-base_vs_instruct .min_value,"
                   " #tab-base_vs_instruct .max_value")
        # the accordion's boxes show once it has opened and their twins are in the page (assets/header.js)
        page.wait_for_function(f"(sel) => ({SHOWN_NUMBERS})(sel).includes('0,95')", arg=numbers, timeout=LONG)
        boxes = page.evaluate(SHOWN_NUMBERS, numbers)
        assert "0,95" in boxes and "0,7" in boxes and not english_numbers(boxes), boxes
        # the max-tokens message, after a run whose output it must not leave looking new
        generate(page)
        box = page.locator("#tab-base_vs_instruct input[type=number]").first
        assert int(box.get_attribute("max")) == 2048 - 2           # the tiny models' context, less the shortest prompt
        box.fill("2046")
        box.press("Enter")
        page.fill("#bvi-prompt textarea", "Bonjour " * 40)
        page.click("#bvi-run")
        page.wait_for_selector(".toast-body", timeout=LONG)
        message = page.inner_text(".toast-body")
        assert "2\u202f048" in message and not english_numbers([message]), message
        page.wait_for_function("document.querySelector('#bvi-base-output').classList.contains('genai-stale')",
                               timeout=LONG)
        assert t("client.stale", "fr") == page.get_attribute("#bvi-base-output", "data-stale")
        # a chart's axes (the weights' error chart: bits per weight 1,0 … 9,0)
        open_tab(page, "quantization")
        page.wait_for_selector("#quant-error-chart svg text", timeout=LONG)
        ticks = page.evaluate(SHOWN_NUMBERS, "#quant-error-chart svg text")
        assert any(re.fullmatch(r"\d+,\d", x) for x in ticks) and not english_numbers(ticks), ticks
        # a link's restored table
        page.goto(f"{app_url}?lang=fr&x={shared['id']}")
        page.wait_for_selector("#share-banner", state="visible", timeout=LONG)
        page.wait_for_function("document.querySelector('#tok-stats')?.innerText?.includes('Tekken')", timeout=LONG)
        cells = page.evaluate(SHOWN_NUMBERS, "#tok-stats td")
        assert "2,65" in " ".join(cells) and "131\u202f072" in " ".join(cells) and not english_numbers(cells), cells
        # the wall's cards, and two of them compared side by side
        page.goto(f"{app_url}?lang=fr&room={room}")
        page.wait_for_selector("#wall-cards .wall-card td.num", timeout=LONG)
        cells = page.evaluate(SHOWN_NUMBERS, "#wall-cards td")
        assert "131\u202f072" in cells and "2,65" in cells and not english_numbers(cells), cells
        page.click("#wall-compare .label-wrap")
        for side, num in (("left", 1), ("right", 2)):
            page.locator(f"#wall-{side} input").click()
            page.locator("[role=option]:visible", has_text=f"#{num} ·").first.click()
        page.click("#wall-compare-run")
        page.wait_for_selector("#wall-compare-out td.num", timeout=LONG)
        cells = page.evaluate(SHOWN_NUMBERS, "#wall-compare-out td")
        assert "32\u202f000" in cells and not english_numbers(cells), cells
    finally:
        page.context.close()


def test_an_empty_prompt_leaves_the_run_buttons_readable_and_says_why(browser, app_url):
    """Techniques and Images with an empty prompt: the run button is not greyed (its text at 4.5:1 on
    it) and pressing it says what is missing (Images), or runs the chosen problem (Techniques)."""
    from tests.browser import open_tab

    page = open_page(browser, app_url)
    try:
        for tab, box, button in (("techniques", "#tech-question", "#tech-run"), ("image_prompting", "#img-prompt", "#img-run")):
            open_tab(page, tab)
            page.fill(f"{box} textarea", "")
            page.wait_for_timeout(300)
            assert page.locator(button).is_enabled()
            colours = page.evaluate("(s) => { const c = getComputedStyle(document.querySelector(s));"
                                    " return [c.color, c.backgroundColor, c.opacity]; }", button)
            rgb = [tuple(int(v) for v in re.findall(r"\d+", c)[:3]) for c in colours[:2]]
            hexes = ["#%02x%02x%02x" % c for c in rgb]
            assert _contrast(*hexes) >= 4.5 and float(colours[2]) == 1, (tab, colours)
        page.click("#img-run")
        page.wait_for_selector(".toast-body", timeout=LONG)
        assert t("err.empty_prompt", "fr") in page.inner_text(".toast-body")
    finally:
        page.context.close()
