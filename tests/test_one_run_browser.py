"""The one-run rule as a French student sees it in Chromium (issue #23): Generate says it is busy
while its comparison runs, New sample and Shift+Enter send nothing more, the button comes back at
the end; a run refused before it starts never disables it."""
from __future__ import annotations

from tests.browser import new_page
from ui.i18n import t

WAIT = 600_000  # ms: bounds a hang only (a loaded 2-core machine streams slowly); no step waits on a timer
COMPARE_JOINS = """() => window.__genai_joins.filter((body) => body.includes('"fn_index":' + window.__genai_compare)).length"""
TRACK_JOINS = """() => {
  const cfg = window.gradio_config;
  const run = cfg.components.find((c) => c.props && c.props.elem_id === 'bvi-run').id;
  window.__genai_compare = cfg.dependencies.find((d) => d.api_name === 'compare').id;
  window.__genai_joins = [];
  const send = window.fetch;
  window.fetch = (url, init) => {
    if (String(url).includes('queue/join') && init && init.body) window.__genai_joins.push(String(init.body));
    return send(url, init);
  };
  return run;
}"""


def disabled(page, elem_id: str) -> bool:
    return page.evaluate("(id) => document.getElementById(id).disabled", elem_id)


def stop(page) -> None:
    """Stop, clicked from the page's script: while 1,500 tokens stream into two panes, a loaded
    machine's browser may never hold the button still long enough for Playwright's click checks."""
    page.evaluate("document.getElementById('bvi-stop').click()")


def long_comparisons(page) -> None:
    """Max new tokens at 1,500: the comparison runs until the test stops it (no race with its end)."""
    page.get_by_text(t("common.sampling", "fr")).first.click()
    box = page.locator("#tab-base_vs_instruct .block", has_text=t("common.max_new_tokens", "fr"))
    box.locator("input[type=number]").first.fill("1500")
    box.locator("input[type=number]").first.press("Tab")


def test_generate_is_busy_while_its_comparison_runs_and_comes_back(browser, app_url):
    page = new_page(browser, app_url, locale="fr-FR")
    try:
        page.evaluate(TRACK_JOINS)
        long_comparisons(page)
        page.fill("#bvi-prompt textarea", "Raconte une histoire de dragons.")
        page.click("#bvi-run")
        page.wait_for_function("() => document.getElementById('bvi-run').disabled", timeout=WAIT)
        assert page.inner_text("#bvi-run") == t("run.busy", "fr")
        assert disabled(page, "bvi-new-sample") and not disabled(page, "bvi-stop")  # Stop is the way out
        # Shift+Enter clicks Generate (tested below, once it is usable): while busy, a click does nothing
        page.evaluate("document.getElementById('bvi-run').click(); document.getElementById('bvi-new-sample').click()")
        assert disabled(page, "bvi-run") and page.evaluate(COMPARE_JOINS) == 1  # one comparison sent, not three
        stop(page)
        page.wait_for_function("() => !document.getElementById('bvi-run').disabled", timeout=WAIT)
        assert page.inner_text("#bvi-run") == t("bvi.generate", "fr") and not disabled(page, "bvi-new-sample")
        assert t("bvi.reason_stopped", "fr") in page.inner_text("#bvi-base-stats")
        page.press("#bvi-prompt textarea", "Shift+Enter")  # usable again: Shift+Enter runs it
        page.wait_for_function("() => document.getElementById('bvi-run').disabled", timeout=WAIT)
        stop(page)
        page.wait_for_function("() => !document.getElementById('bvi-run').disabled", timeout=WAIT)
        assert page.evaluate(COMPARE_JOINS) == 2
    finally:
        page.context.close()


def test_a_run_refused_before_it_starts_leaves_generate_usable(browser, app_url):
    from engine.limits import limits_for

    page = new_page(browser, app_url, locale="fr-FR")
    try:
        page.fill("#bvi-prompt textarea", "a" * (limits_for("tiny").prompt_chars + 1))
        with page.expect_response(lambda r: "queue/join" in r.url and r.status == 422, timeout=WAIT) as refused:
            page.click("#bvi-run")
        message = next(d["message"] for d in refused.value.json()["detail"] if not d["is_valid"])
        assert "20\u202f001" in message  # refused before it was queued, in French
        assert not disabled(page, "bvi-run") and page.inner_text("#bvi-run") == t("bvi.generate", "fr")
    finally:
        page.context.close()
