"""Issue #17 per tab, in Chromium: what a student sees (filled views, a histogram that never blanks,
settings per technique, headers, previews, Stop, grids, TD targets)."""
from __future__ import annotations

from tests.browser import LONG, PHONE, new_page, open_tab, validation_message


def pick(page, dropdown: str, label: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.locator(f"[role=option][aria-label='{label}']").click()


COVERED = """[...el.querySelectorAll('.wrap')].some(w => {
    const cs = getComputedStyle(w), bg = cs.backgroundColor.match(/[\\d.]+/g) || [];
    const alpha = bg.length === 4 ? +bg[3] : (bg.length === 3 ? 1 : 0);
    return !w.classList.contains('hide') && +cs.opacity > 0.3 && alpha > 0.3 && w.getBoundingClientRect().height > 50;
})"""  # a status overlay (spinner, progress) hiding the component's content


def record(page, selector: str, script: str) -> None:
    """Start recording ``script`` (a JS expression over ``el``) on every change under ``selector``."""
    page.evaluate("""([sel, script]) => {
        const el = document.querySelector(sel);
        const probe = new Function('el', 'return ' + script);
        window.__seen = [probe(el)];
        new MutationObserver(() => window.__seen.push(probe(el)))
            .observe(el, {subtree: true, childList: true, attributes: true, characterData: true});
    }""", [selector, script])


# ============================================================================ quantization
def test_quantization_opens_filled_in_french_and_the_histogram_never_blanks(browser, app_url):
    page = new_page(browser, app_url, locale="fr-FR")
    try:
        open_tab(page, "quantization")
        # filled without a click: histogram, metrics table with its real headers, planner
        from ui.i18n import t

        snr = t("quant.col_snr", "fr")
        page.wait_for_function("document.querySelector('#quant-w-table')?.innerText?.includes(%r)" % snr, timeout=LONG)
        page.wait_for_selector("#quant-hist img", timeout=LONG)
        assert "Matrice" in page.inner_text("#quant-w-summary")
        assert not page.locator("#quant-bits input[type=range]").is_disabled()  # the default method uses bits
        # a bits move: the plot stays on screen (no opaque cover) until the new one replaces it
        record(page, "#quant-hist", "[!!el.querySelector('img'), " + COVERED + ", [...el.querySelectorAll('.wrap')]"
               ".some(w => !w.classList.contains('hide')), el.querySelector('img') ? el.querySelector('img').src.length : 0]")
        before = page.evaluate("window.__seen[0][3]")
        page.locator("#quant-bits input[type=range]").focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("window.__seen.some(s => s[3] && s[3] !== %d)" % before, timeout=LONG)
        seen = page.evaluate("window.__seen")
        assert any(s[2] for s in seen), "the computation was never seen pending"
        assert all(s[0] for s in seen), "the histogram disappeared"
        assert not any(s[1] for s in seen), "the histogram was covered while computing"
        # NF4: the bits slider shows its fixed width, disabled, with the reason
        pick(page, "#quant-method", "NF4 (bitsandbytes)")
        page.wait_for_function("document.querySelector('#quant-bits')?.innerText?.includes('4 bits')", timeout=LONG)
        assert page.locator("#quant-bits input[type=range]").is_disabled()
        assert page.input_value("#quant-bits input[type=number]") == "4"
        # the planner follows the model's config: Llama-2 13B reads 4,096 tokens
        page.click("#quant-planner-button")
        page.wait_for_function("document.querySelector('#quant-p-summary')?.innerText?.includes('32768')", timeout=LONG)
        assert page.get_attribute("#quant-p-context input[type=range]", "max") == "32768"
        pick(page, "#quant-p-model", "13B (Llama-2 13B shapes)")
        page.wait_for_function("document.querySelector('#quant-p-context input[type=range]').max === '4096'",
                               timeout=LONG)
        # the live comparison: French headers, the French example prompt
        page.click("#quant-live-button")
        headers = page.locator("#quant-l-table").inner_text()
        assert "Mémoire (Mo)" in headers and "memory_mb" not in headers
        assert page.input_value("#quant-l-prompt textarea").startswith(
            __import__("tabs.quantization_live", fromlist=["PROMPTS"]).PROMPTS["fr"][:30])
    finally:
        page.context.close()


def test_live_comparison_stop_keeps_the_rows_measured(page):
    """Stop after the first precision: the run ends there and what was measured stays on screen.
    (That Stop answers within a second is timed without a browser in test_tabs_ux.py.)"""
    import re

    open_tab(page, "quantization")
    page.click("#quant-live-button")
    page.wait_for_selector("#quant-l-table", state="visible", timeout=LONG)
    page.locator("#quant-l-run").click()
    page.wait_for_function("document.querySelector('#quant-l-status')?.innerText?.includes('Measuring 1 /')",
                           timeout=LONG)
    # the first row is on screen while the next precision is measured (the progress bar is on the status)
    assert "fp32" in page.inner_text("#quant-l-table")
    assert not page.evaluate("(el => " + COVERED + ")(document.querySelector('#quant-l-table'))")
    page.click("#quant-l-stop")
    page.wait_for_function("document.querySelector('#quant-l-status')?.innerText?.includes('Stopped')", timeout=LONG)
    measured = int(re.search(r"Stopped: (\d+) of 6", page.inner_text("#quant-l-status")).group(1))
    assert 1 <= measured < 6
    assert page.locator("#quant-l-outputs .quant-card").count() == measured
    table = page.inner_text("#quant-l-table")
    assert "fp32" in table and "Tokens/s" in table


# ============================================================================ techniques
def test_technique_settings_follow_the_technique_and_the_benchmark_shows_all(browser, app_url):
    page = new_page(browser, app_url, viewport=PHONE)
    try:
        open_tab(page, "techniques")
        # English UI, English problems
        assert page.locator("#tech-language label", has_text="English").locator("input").is_checked()
        assert "bananas" in page.input_value("#tech-question textarea")
        sliders = ["#tech-k-examples", "#tech-shuffle", "#tech-shuffle-seed", "#tech-n-samples",
                   "#tech-sample-temperature", "#tech-rounds", "#tech-k-thoughts", "#tech-depth"]

        def shown() -> list[str]:
            return [s for s in sliders if page.locator(s).is_visible()]

        assert shown() == [] and not page.locator("#tech-settings").is_visible()  # zero-shot: nothing to set
        zero_shot_run_y = page.locator("#tech-run").bounding_box()["y"]
        page.locator("#tech-technique label", has_text="Few-shot").first.click()
        page.wait_for_selector("#tech-k-examples", state="visible")
        assert shown() == ["#tech-k-examples", "#tech-shuffle", "#tech-shuffle-seed"]
        page.locator("#tech-technique label", has_text="Self-consistency").click()
        page.wait_for_selector("#tech-n-samples", state="visible")
        assert set(shown()) == {"#tech-n-samples", "#tech-sample-temperature", "#tech-k-examples", "#tech-shuffle",
                                "#tech-shuffle-seed"}
        assert page.locator("#tech-run").bounding_box()["y"] > zero_shot_run_y
        # the benchmark: real headers before any run, then every technique in the cost chart's legend
        assert "Technique" in page.inner_text("#tech-bench-table")
        boxes = page.locator("#tech-bench-techniques input[type=checkbox]")
        for i in range(boxes.count()):
            boxes.nth(i).check()
        page.fill("#tech-bench-n input[type=number]", "1")
        page.keyboard.press("Enter")
        page.click("#tech-bench-run")
        page.wait_for_function("document.querySelector('#tech-bench-status')?.innerText?.includes('Done')",
                               timeout=LONG)
        page.wait_for_function("document.querySelector('#tech-bench-legend')?.innerText?.includes('Tree of thoughts')",
                               timeout=LONG)
        legend = page.inner_text("#tech-bench-legend")
        for name in ("Zero-shot", "Explicit instruction", "Few-shot", "Zero-shot chain of thought",
                     "Few-shot chain of thought", "Role prompting", "Self-consistency", "Least-to-most",
                     "Self-refine", "Tree of thoughts"):
            assert name in legend, name
    finally:
        page.context.close()


# ============================================================================ images
def test_images_preview_then_stream_and_grids_keep_clear(page):
    open_tab(page, "image_prompting")
    page.fill("#img-prompt textarea", "a red fox in the snow")
    record(page, "#img-gallery", "[el.innerText, " + COVERED + "]")
    page.click("#img-run")
    page.wait_for_function("document.querySelectorAll('#img-grid img').length >= 1", timeout=LONG)
    seen = page.evaluate("window.__seen")
    assert not any(covered for text, covered in seen if "preview while denoising" in text)  # visible, not under a spinner
    seen = [text for text, _ in seen]
    preview = next(i for i, text in enumerate(seen) if "preview while denoising" in text)
    done = next(i for i, text in enumerate(seen) if "FLUX.1 schnell · 2 steps" in text)
    assert preview < done  # the preview was on screen before the finished image
    assert any("SDXL Turbo · 1 step" in text and "FLUX.1" not in text for text in seen[:preview])  # image 1 alone first
    # nothing Gradio draws sits over the grid's headers (its label used to cover the first column's), once the
    # run has ended (its button usable again) and the grid's alt text set (the event after it): while a run goes
    # on, its progress is drawn over the grid on purpose
    page.wait_for_selector("#img-run:not([disabled])", timeout=LONG)
    page.wait_for_function("(document.querySelector('#img-grid img') || {}).alt", timeout=LONG)
    page.wait_for_function("!document.querySelector('#img-grid .pending, #img-grid .generating')", timeout=LONG)
    covered = page.evaluate("""() => {
        const g = document.querySelector('#img-grid'), r = g.querySelector('img').getBoundingClientRect();
        return [...g.querySelectorAll('*')].filter(e => e.tagName !== 'IMG' && e.offsetParent && !e.contains(g.querySelector('img'))
            && getComputedStyle(e).position === 'absolute' && !e.classList.contains('hide')).some(e => {
            const b = e.getBoundingClientRect();
            return b.width > 0 && b.height > 0 && b.left < r.right && b.right > r.left && b.top < r.top + r.height * 0.2
                && b.bottom > r.top; });
    }""")
    assert not covered
    # a bad X/Y value: refused before it is queued, a message on that box, and the grid stays on screen
    page.locator("#img-sweep").click()
    x_values = page.locator("#img-sweep-x-values textarea, #img-sweep-x-values input")
    x_values.wait_for(state="visible")
    x_values.fill("2, abc")
    page.click("#img-sweep-run")
    assert "comma-separated" in validation_message(page, "#img-sweep-x-values")
    page.wait_for_timeout(500)
    assert page.locator("#img-grid img").is_visible()
    assert not page.locator("#img-grid .error, #img-gallery .error").is_visible()


def test_td_target_is_made_in_the_app_and_its_prompt_revealed(page):
    open_tab(page, "image_prompting")
    page.locator("#img-td").click()
    pick(page, "#img-td-pick", "2b · Reproduce a target: glacier valley")
    page.wait_for_selector("#img-td-make", state="visible", timeout=LONG)
    assert page.input_value("#img-prompt textarea") == "A mountain landscape"  # a starting point, not the answer
    page.click("#img-td-make")
    page.wait_for_function("document.querySelector('#img-target img') !== null", timeout=LONG)
    page.wait_for_function("document.querySelector('#img-target')?.innerText?.includes('seed 2024')", timeout=LONG)
    assert page.locator("#img-models label", has_text="FLUX.1 schnell").locator("input").is_checked()
    assert page.input_value("#img-seed input") == "2024"
    page.click("#img-td-reveal")
    page.wait_for_function("document.querySelector('#img-td-hidden')?.innerText?.includes('glacier tongue')",
                           timeout=LONG)
