"""Playwright driving Debian's Chromium against the real app (shared by the browser tests)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("GENAI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
LONG = 120_000  # ms: the first click of a tab may load a tiny model


def new_page(browser, app_url: str, locale: str = "en-US", viewport: dict = DESKTOP):
    """A page in a fresh browser context (its own cookies and storage), the app loaded."""
    page = browser.new_context(viewport=viewport, locale=locale).new_page()
    page.goto(app_url)
    page.wait_for_selector("#bvi-run", timeout=LONG)
    return page


# English tab labels: in Gradio's overflow menu (narrow windows) the buttons carry no id, only their label
TAB_LABELS = {"base_vs_instruct": "Base vs Instruct", "tokenizers": "Tokenizers", "quantization": "Quantization",
              "techniques": "Prompt techniques", "image_prompting": "Image prompting", "wall": "Class wall",
              "about": "About this machine"}


def open_tab(page, tab_id: str) -> None:
    """Click a top-level tab: ``#tab-<id>-button`` when it is in the bar, else through the "More tabs" menu."""
    button = page.locator(f"#tab-{tab_id}-button")
    if button.count() and button.first.is_visible():
        button.first.click()
    else:
        page.locator("button[aria-label='More tabs']").first.click()
        page.locator("button:visible", has_text=TAB_LABELS[tab_id]).last.click()
    page.wait_for_selector(f"#tab-{tab_id}", state="visible", timeout=30_000)
    page.wait_for_timeout(300)


def screenshot(page, name: str, focus: str | None = None) -> Path:
    """A viewport-sized PNG for the README: the top of the page, or scrolled so ``focus`` starts it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if focus:
        page.evaluate("(sel) => { document.querySelector(sel).scrollIntoView({block: 'start'}); window.scrollBy(0, -12); }",
                      focus)
    else:
        page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(200)
    page.screenshot(path=str(path))
    return path


def wait_while_progressing(page, done_selector: str, done_text: str, watch: str, stall_ms: int = 120_000,
                           poll_ms: int = 500) -> None:
    """Wait until ``done_selector``'s text contains ``done_text``, as long as the work shows progress:
    fail only when the text of ``watch`` (a results area and its progress bar's description and
    percentage) did not change for ``stall_ms``. A long run on a loaded machine still passes;
    a hung one does not."""
    import time

    read = """([done, watch]) => {
        const d = document.querySelector(done);
        const parts = [...document.querySelectorAll(watch)].map(el => el.innerText);
        return [d ? d.innerText : '', parts.join('|')];
    }"""
    last, moved_at = None, time.monotonic()
    while True:
        text, progress = page.evaluate(read, [done_selector, watch])
        if done_text in text:
            return
        if progress != last:
            last, moved_at = progress, time.monotonic()
        elif (time.monotonic() - moved_at) * 1000 > stall_ms:
            raise AssertionError(f"no progress for {stall_ms / 1000:.0f} s; last seen: {progress[:300]!r}")
        page.wait_for_timeout(poll_ms)


def toast_text(page) -> str:
    page.wait_for_selector(".toast-message-text", timeout=15_000)
    return " ".join(page.locator(".toast-message-text").all_inner_texts())


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def validation_message(page, within: str, timeout: int = LONG) -> str:
    """The message Gradio paints on an input refused before queueing (``within``: a CSS selector
    around it). Gradio keeps a second, empty ``.validation-error`` box beside it, in either order,
    so this waits for the one with text."""
    js = "(s) => [...document.querySelectorAll(s + ' .validation-error')].map(e => e.innerText.trim()).find(t => t)"
    page.wait_for_function(js, arg=within, timeout=timeout)
    return page.evaluate(js, within)
