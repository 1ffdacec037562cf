"""First load and first tab opens in Chromium, against a bare Gradio Blocks with as many tabs.

    python bench/page_load.py [--runs 3] [--modes quiet,busy] [--lang fr] [--url URL] [--bare-url URL]

Starts ``python app.py --profile tiny`` and a bare ``gr.Blocks`` (the same number of top-level tabs,
one text box and one button in each: what Gradio alone costs) on free ports, or uses ``--url`` /
``--bare-url``. For each mode (``quiet``; ``busy``: one process spinning on one core for the whole
measurement) and each of ``--runs`` fresh browser contexts (1280×800, no cache), it measures:

- **usable**: from navigation start until the first tab can be used: its prompt and its Generate
  button on screen and enabled, and the page's texts in the page's language (``langReady``);
- where that time goes: HTML received, DOMContentLoaded, the Gradio app on screen (first
  ``.gradio-container`` with a tab bar), first control visible; the scripts and styles fetched, the
  main thread's long tasks (their sum: time the page could not answer), the server events run
  before the page is usable (and their server time);
- **each tab's first open**: from the click on its button until its content is on screen and
  filled (what a student waits for: the tab's main control, and the data the tab shows when
  opened), with the server events that opening ran.

Each figure is the median over the runs, printed with its ratio to the bare Blocks' figure (run in
the same script, the same way) and to the goal (issue #24: quiet ≤ 2 s usable and ≤ 0.5 s per tab;
busy ≤ 4 s and ≤ 1 s). Not a test: a loaded machine gives slower figures; the load average is printed.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serve import free_port, stop_process, wait_until_served  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

TABS = ("base_vs_instruct", "tokenizers", "quantization", "techniques", "image_prompting", "wall", "about")
GOALS = {"quiet": (2.0, 0.5), "busy": (4.0, 1.0)}

# the first tab usable: its prompt and Generate on screen, enabled, the texts in the page's language
APP_USABLE = """() => {
  const on = (s) => { const e = document.querySelector(s); return !!e && e.offsetParent !== null && !e.disabled; };
  return on('#bvi-prompt textarea') && on('#bvi-run') && !!document.body.dataset.langReady;
}"""
# a tab is open when its content is on screen and filled with what the tab shows when opened
APP_READY = {
    "base_vs_instruct": "on('#bvi-run')",
    "tokenizers": "on('#tok-views .tokstats')",
    "quantization": "on('#quant-hist img') && !!document.querySelector('#quant-w-table td')",
    "techniques": "on('#tech-run') && (document.querySelector('#tech-question textarea') || {}).value",
    "image_prompting": "on('#img-run') && text('#img-token-count').includes('77')",
    "wall": "on('#wall-banner .wall-banner')",
    "about": "on('#about-overview') && text('#about-roles').includes('base_llm')",
}
BARE_USABLE = "() => { const e = document.querySelector('#b0-run'); return !!e && e.offsetParent !== null; }"

OBSERVE = """() => {
  window.__bench = {longtasks: []};
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__bench.longtasks.push([e.startTime, e.duration]); })
    .observe({type: 'longtask', buffered: true});
}"""
# polled on every frame: the time (ms since navigation start) at which each milestone first held
MILESTONES = """([usable]) => new Promise((resolve) => {
  const seen = {};
  const test = new Function('return (' + usable + ')();');
  const step = () => {
    const now = performance.now();
    if (!seen.app && document.querySelector('.gradio-container [role=tablist]')) seen.app = now;
    if (!seen.control && document.querySelector('textarea') && document.querySelector('textarea').offsetParent) seen.control = now;
    if (test()) { seen.usable = now; resolve(seen); return; }
    if (now > 300000) { resolve(seen); return; }
    requestAnimationFrame(step);
  };
  step();
})"""
OPEN_TAB = """([button, ready]) => new Promise((resolve) => {
  const on = (s) => { const e = document.querySelector(s); return !!e && e.offsetParent !== null && !e.disabled; };
  const text = (s) => { const e = document.querySelector(s); return e ? e.innerText : ''; };
  const test = new Function('on', 'text', 'return !!(' + ready + ');');
  const t0 = performance.now();
  let shown = null;
  document.querySelector(button).click();
  const step = () => {
    const now = performance.now();
    if (shown === null && document.querySelector(button).getAttribute('aria-selected') === 'true') shown = now - t0;
    if (test(on, text)) { resolve([now - t0, shown]); return; }
    if (now - t0 > 120000) { resolve([-1, shown]); return; }
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
})"""


def start(args: list[str], name: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    env.setdefault("GENAI_TINY_DIR", str(Path(tempfile.gettempdir()) / "genai-bench-tiny"))
    env.setdefault("GENAI_DATA_DIR", tempfile.mkdtemp(prefix="bench-page-load-data-"))
    log = str(Path(tempfile.gettempdir()) / f"bench-page-load-{name}-{port}.log")
    proc = subprocess.Popen([sys.executable, *args, "--port", str(port)], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_served(url, proc)
    except (RuntimeError, TimeoutError) as exc:
        proc.kill()
        raise SystemExit(f"{exc}; see {log}") from exc
    return proc, url


def serve_bare(port: int) -> None:
    """The baseline: a bare Blocks, as many tabs as the app, one text box and one button in each."""
    import gradio as gr

    with gr.Blocks(title="bare") as demo:
        with gr.Tabs():
            for i, name in enumerate(TABS):
                with gr.Tab(name, id=name, elem_id=f"tab-{name}"):
                    box = gr.Textbox(label="Prompt", elem_id=f"b{i}-text")
                    out = gr.Textbox(label="Output", elem_id=f"b{i}-out")
                    gr.Button("Run", elem_id=f"b{i}-run").click(lambda x: x, box, out)
    demo.queue().launch(server_port=port, prevent_thread_lock=False)


class Spinner:
    """One process spinning on one core: "the machine busy"."""

    def __init__(self, on: bool) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None

    def __enter__(self) -> "Spinner":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def queue_log(page) -> list:
    events: list = []

    def finished(request) -> None:
        if "queue/join" in request.url:
            timing = request.timing
            events.append(("join", timing.get("responseEnd", 0)))

    page.on("requestfinished", finished)
    return events


def measure_app(browser, url: str, lang: str, bare: bool) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="fr-FR" if lang == "fr" else "en-US")
    page = context.new_page()
    joins = queue_log(page)
    page.add_init_script(f"({OBSERVE})()")
    page.goto(url + ("" if bare else f"?lang={lang}"), wait_until="commit")
    seen = page.evaluate(MILESTONES, [BARE_USABLE if bare else APP_USABLE])
    nav = page.evaluate("(() => { const n = performance.getEntriesByType('navigation')[0];"
                        " return [n.responseEnd, n.domContentLoadedEventEnd]; })()")
    resources = page.evaluate("performance.getEntriesByType('resource').filter(r => r.startTime < %f)"
                              ".map(r => [r.name, r.initiatorType, r.transferSize || r.encodedBodySize])"
                              % seen.get("usable", 1e9))
    longtasks = page.evaluate("window.__bench.longtasks")
    usable = seen.get("usable")
    result = {
        "usable": usable / 1000 if usable else float("nan"),
        "html": nav[0] / 1000, "dom": nav[1] / 1000,
        "app": seen.get("app", float("nan")) / 1000, "control": seen.get("control", float("nan")) / 1000,
        "scripts": sum(1 for r in resources if r[0].endswith(".js")),
        "styles": sum(1 for r in resources if r[0].endswith(".css")),
        "kb": sum(r[2] for r in resources) / 1000,
        "blocked": sum(d for s, d in longtasks if usable and s < usable) / 1000,
        "events_before_usable": len(joins),
        "tabs": {},
    }
    page.wait_for_timeout(300)
    for i, tab in enumerate(TABS):
        before = len(joins)
        ready = f"on('#b{i}-run')" if bare else APP_READY[tab]
        took, shown = page.evaluate(OPEN_TAB, [f"#tab-{tab}-button", ready])
        page.wait_for_timeout(300)
        result["tabs"][tab] = (took / 1000 if took >= 0 else float("nan"), (shown or 0) / 1000, len(joins) - before)
    context.close()
    return result


def median(values) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def report(mode: str, app: list[dict], bare: list[dict]) -> None:
    usable_goal, tab_goal = GOALS[mode]
    a, b = median(r["usable"] for r in app), median(r["usable"] for r in bare)
    print(f"\n== {mode}: usable page (median of {len(app)}) ==")
    print(f"  app   {a:5.2f} s  = {a / b:4.1f}× the bare Blocks ({b:.2f} s), {a / usable_goal:4.2f}× the goal "
          f"({usable_goal:g} s)")
    print("  where the app's time goes (median):")
    for key, label in (("html", "HTML received"), ("dom", "DOMContentLoaded"), ("app", "Gradio app on screen"),
                       ("control", "first text box on screen")):
        print(f"    {label:<28} {median(r[key] for r in app):5.2f} s   (bare {median(r[key] for r in bare):5.2f} s)")
    print(f"    {'scripts / styles fetched':<28} {median(r['scripts'] for r in app):5.0f} / "
          f"{median(r['styles'] for r in app):.0f}   (bare {median(r['scripts'] for r in bare):.0f} / "
          f"{median(r['styles'] for r in bare):.0f}), {median(r['kb'] for r in app):,.0f} kB")
    print(f"    {'main thread blocked':<28} {median(r['blocked'] for r in app):5.2f} s   "
          f"(bare {median(r['blocked'] for r in bare):5.2f} s)")
    print(f"    {'server events before usable':<28} {median(r['events_before_usable'] for r in app):5.0f}     "
          f"(bare {median(r['events_before_usable'] for r in bare):.0f})")
    print(f"== {mode}: first open of each tab (median: click → content filled; tab shown; server events) ==")
    for tab in TABS:
        took = median(r["tabs"][tab][0] for r in app)
        shown = median(r["tabs"][tab][1] for r in app)
        events = median(r["tabs"][tab][2] for r in app)
        base = median(r["tabs"][tab][0] for r in bare)
        print(f"  {tab:<17} {took:5.2f} s  (shown {shown:4.2f} s, {events:.0f} event(s)) = {took / base:5.1f}× bare "
              f"({base:.2f} s), {took / tab_goal:4.2f}× the goal ({tab_goal:g} s)")
    worst = max(median(r["tabs"][tab][0] for r in app) for tab in TABS)
    print(f"  slowest tab: {worst:.2f} s = {worst / tab_goal:.2f}× the goal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="fresh browser contexts per mode (median; default 3)")
    parser.add_argument("--modes", default="quiet,busy", help="quiet, busy (one core kept busy), or both (default)")
    parser.add_argument("--lang", choices=("fr", "en"), default="fr", help="the page's language (default fr)")
    parser.add_argument("--url", default=None, help="a running app (default: start python app.py --profile tiny)")
    parser.add_argument("--bare-url", default=None, help="a running bare Blocks (default: start one)")
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)  # the baseline's server
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.port)
        return
    from playwright.sync_api import sync_playwright

    print(f"load average before: {' '.join(open('/proc/loadavg').read().split()[:3])} · {os.cpu_count()} cores")
    procs = []
    try:
        url, bare_url = args.url, args.bare_url
        if url is None:
            proc, url = start([str(ROOT / "app.py"), "--profile", "tiny"], "app")
            procs.append(proc)
        if bare_url is None:
            proc, bare_url = start([str(Path(__file__).resolve()), "--serve-bare"], "bare")
            procs.append(proc)
        url, bare_url = url.rstrip("/") + "/", bare_url.rstrip("/") + "/"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            measure_app(browser, url, args.lang, bare=False)      # warm-up: the server's first page, tiny models
            measure_app(browser, bare_url, args.lang, bare=True)
            for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
                with Spinner(mode == "busy"):
                    app, bare = [], []
                    for _ in range(args.runs):
                        app.append(measure_app(browser, url, args.lang, bare=False))
                        bare.append(measure_app(browser, bare_url, args.lang, bare=True))
                    load = " ".join(open("/proc/loadavg").read().split()[:3])
                report(mode, app, bare)
                print(f"  load average after this mode: {load}")
            browser.close()
    finally:
        for proc in procs:
            stop_process(proc)


if __name__ == "__main__":
    main()
