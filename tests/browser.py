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


def open_tab(page, tab_id: str) -> None:
    """Click a tab by its id (the button Gradio renders as ``#tab-<id>-button``)."""
    button = page.locator(f"#tab-{tab_id}-button")
    if not button.is_visible():  # narrow windows fold extra tabs into an overflow menu
        page.locator(".overflow-menu, button[aria-label*='more' i]").first.click()
    button.click()
    page.wait_for_timeout(300)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(200)
    page.screenshot(path=str(path))
    return path


def toast_text(page) -> str:
    page.wait_for_selector(".toast-message-text", timeout=15_000)
    return " ".join(page.locator(".toast-message-text").all_inner_texts())


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
