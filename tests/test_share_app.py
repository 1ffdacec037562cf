"""Experiment links and the class wall through the real app (gradio_client, Chromium) and its codec."""
from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import threading
import zipfile

import gradio as gr
import pandas as pd
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from engine.share import Sharing
from engine.share.sanitize import html_to_text, sanitize_html
from tests.browser import open_tab, screenshot
from tests.conftest import start_app
from ui import share_codec as codec

LONG = 180_000
XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_TEXT = "<script>alert('wall')</script> & <img src=y onerror=alert(2)>"


# ============================================================================ codec (no app)
def test_codec_round_trips_every_kind_of_result(tmp_path):
    store = Sharing(tmp_path / "d").store
    png = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(png, format="PNG")
    data_uri = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    plot = gr.components.plot.PlotData(type="matplotlib", plot=data_uri)
    gallery_file = tmp_path / "g.png"
    meta = Image.new("RGB", (20, 20), "red")
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text("genai", "settings")
    meta.save(gallery_file, pnginfo=info)
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    cases = [(gr.Textbox(), "texte"), (gr.Markdown(), "**gras**"), (gr.JSON(), {"k": [1, 2.5, None]}),
             (gr.Dataframe(), frame), (gr.Image(type="pil"), Image.new("RGB", (16, 16), "blue")),
             (gr.Gallery(), [(str(gallery_file), "légende")]), (gr.Plot(), plot),
             (gr.BarPlot(x="a", y="b"), gr.components.native_plot.PlotData(columns=["a", "b"], data=[["x", 1]],
                                                                          datatypes={}, mark="bar"))]
    exp_outputs = {f"o{i}": codec.encode_output(comp, value) for i, (comp, value) in enumerate(cases)}
    from engine.share import Experiment
    exp = store.get_experiment(store.put_experiment(Experiment("k", "t", {}, exp_outputs)).id)
    back = [codec.decode_output(comp, exp.outputs[f"o{i}"], store) for i, (comp, _) in enumerate(cases)]
    assert back[:3] == ["texte", "**gras**", {"k": [1, 2.5, None]}]
    assert back[3].data.equals(pd.DataFrame({"a": [1, 2], "b": ["x", None]}))      # the numbers stay numbers
    with Image.open(back[4]) as img:
        assert img.size == (16, 16)
    path, caption = back[5][0]
    with Image.open(path) as img:
        assert caption == "légende" and img.text["genai"] == "settings"     # the PNG's own bytes, settings kept
    assert back[6].type == "matplotlib" and back[6].plot.startswith("data:image/png;base64,")
    assert list(back[7].columns) == ["a", "b"] and back[7].iloc[0].tolist() == ["x", 1]
    # a tampered record never reaches the page as script
    html = codec.decode_output(gr.HTML(), {"type": "html", "value": XSS_TEXT + "<b>ok</b>"}, store)
    assert "<script" not in html and "onerror" not in html and "<b>ok</b>" in html
    assert codec.decode_output(gr.HTML(), {"type": "text", "value": "x"}, store) is not None  # wrong type: skipped
    assert codec.encode_output(gr.Plot(), gr.components.plot.PlotData(type="bokeh", plot="{}")) is None


def test_a_restored_table_writes_its_numbers_in_the_readers_language(tmp_path):
    """A link opened in French shows "2,65" and "131 072" where the table holds 2.65 and 131072 (the
    tab showed them so); the data, what the API and a CSV get, keeps the numbers."""
    store = Sharing(tmp_path / "d").store
    record = codec.encode_output(gr.Dataframe(), pd.DataFrame({"tokenizer": ["Tekken"], "chars/token": [2.65],
                                                               "vocabulary": [131072]}))
    for lang, shown in (("fr", ["Tekken", "2,65", "131\u202f072"]), ("en", ["Tekken", "2.65", "131,072"])):
        value = gr.Dataframe().postprocess(codec.decode_output(gr.Dataframe(), record, store, lang))
        assert value.metadata["display_value"][0] == shown
        assert value.data[0] == ["Tekken", 2.65, 131072]


def test_codec_checks_restored_inputs_against_the_controls():
    slider, number = gr.Slider(0, 2, step=0.05), gr.Number(precision=0, minimum=0)
    assert codec.decode_input(slider, "0,7") == pytest.approx(0.7) and codec.decode_input(slider, 9) == 2
    assert codec.decode_input(gr.Slider(1, 2048, step=1), "0") == 1 and codec.decode_input(number, "41.6") == 42
    assert codec.decode_input(gr.Checkbox(), "oui") is True and codec.decode_input(gr.Checkbox(), "0") is False
    group = gr.CheckboxGroup([("A", "a"), ("B", "b")])
    assert codec.decode_input(group, "a,b") == ["a", "b"] and codec.decode_input(group, ["b"]) == ["b"]
    for comp, bad in ((group, "a,zzz"), (gr.Radio(["x"]), "y"), (gr.Checkbox(), "peut-être"), (slider, "nan"),
                      (gr.Textbox(), "x" * (codec.MAX_TEXT + 1))):
        with pytest.raises(ValueError):
            codec.decode_input(comp, bad)
    assert codec.decode_input(gr.Dropdown(["a"], allow_custom_value=True), "org/model") == "org/model"


# ============================================================================ every tab through gradio_client
def _same_html(stored: dict, original: str) -> None:
    assert stored["type"] == "html" and stored["value"] == sanitize_html(original)
    assert html_to_text(stored["value"]) == html_to_text(original)


def test_every_tab_round_trips_through_a_link(client):
    def share(kind, inputs, outputs=None):
        shared = client.predict(kind, inputs, outputs, api_name="/share_experiment")
        opened = client.predict(shared["id"], api_name="/open_experiment")
        assert shared["query"] == f"?x={shared['id']}" and opened["api"] == f"/{kind}"
        assert opened["inputs"] == inputs, kind
        return opened

    # Base vs Instruct: seeded sampling, replayed from the link's inputs gives the same texts
    bvi = {"prompt": "Le chat <b>", "system_prompt": "", "base_model": "tiny/mistral-base", "instruct_model":
           "tiny/mistral-instruct", "template_on_base": False, "show_probabilities": True, "max_new_tokens": 6,
           "temperature": 0.9, "top_p": 0.95, "top_k": 40, "repetition_penalty": 1.0, "greedy": False, "seed": 11}
    out = client.predict(**bvi, api_name="/compare")
    opened = share("compare", bvi, {"base_output": {"type": "html", "value": out[3]},
                                    "instruct_output": {"type": "html", "value": out[8]},
                                    "raw": {"type": "json", "value": out[-1]}})
    _same_html(opened["outputs"]["base_output"], out[3])
    assert opened["outputs"]["raw"]["value"] == out[-1]
    again = client.predict(**opened["inputs"], api_name=opened["api"])
    assert (again[-1]["base"]["output"], again[-1]["instruct"]["output"]) == (out[-1]["base"]["output"],
                                                                            out[-1]["instruct"]["output"])
    # Tokenizers
    tok = {"text": "Bonjour <script> 🧩", "tokenizers": ["mistral-v1", "clip"], "hub_ids": "", "show_ids": True,
           "parse_special": False}
    views, stats = client.predict(**tok, api_name="/tokenize")
    opened = share("tokenize", tok, {"views": {"type": "html", "value": views},
                                     "stats": {"type": "table", "headers": stats["headers"], "data": stats["data"]}})
    _same_html(opened["outputs"]["views"], views)
    assert opened["outputs"]["stats"]["data"] == stats["data"]
    # the views travel in a hidden text box that the page puts in place as HTML: sanitized all the same
    opened = share("tokenize", tok, {"views": {"type": "html", "value": '<img src=x onerror="alert(1)">' + views}})
    assert "onerror" not in opened["outputs"]["views"]["value"] and "<img" not in opened["outputs"]["views"]["value"]
    with pytest.raises(AppError, match="views"):  # not the record type of an HTML view
        share("tokenize", tok, {"views": {"type": "text", "value": views}})
    # Quantization: method, bits and matrix; the memory planner; the live comparison's settings
    quant = {"source": "synthetic", "model": "tiny/mistral-instruct", "layer": "", "method": "absmax", "bits": 3,
             "block_size": "32", "outliers": 4}
    _, summary, _, table = client.predict(**quant, api_name="/quantize_weights")
    opened = share("quantize_weights", quant, {"summary": {"type": "markdown", "value": summary},
                                               "table": {"type": "table", "headers": table["headers"],
                                                         "data": table["data"]}})
    assert opened["outputs"]["summary"]["value"] == summary
    assert client.predict(**opened["inputs"], api_name=opened["api"])[1] == summary
    plan = {"model": "mistral-7b", "context_length": 8192, "batch_size": 2}
    summary, chart, _ = client.predict(**plan, api_name="/memory_plan")
    chart = chart.get("value", chart)                       # the handler returns a gr.BarPlot update
    opened = share("memory_plan", plan, {"summary": {"type": "markdown", "value": summary}, "chart": {
        "type": "chart", "columns": chart["columns"], "data": chart["data"]}})
    assert opened["outputs"]["chart"]["data"] == chart["data"]
    share("quantize_compare", {"model": "tiny/mistral-base", "precisions": ["fp32", "int8"], "prompt": "Il était",
                               "max_new_tokens": 8})
    # Prompt techniques: greedy, replayed identically
    tech = {"technique": "few_shot", "language": "en", "problem": "arith-04", "k_examples": 2, "max_new_tokens": 6,
            "greedy": True, "seed": 5}
    md, _, _, calls, raw = client.predict(**tech, api_name="/run_technique")
    opened = share("run_technique", tech, {"result": {"type": "markdown", "value": md},
                                           "raw": {"type": "json", "value": raw}})
    again = client.predict(**opened["inputs"], api_name=opened["api"])
    assert again[-1]["calls"][-1]["output"] == raw["calls"][-1]["output"]
    # Image prompting: the settings (the images themselves travel with links made in the app: browser test)
    share("generate_images", {"prompt": "un chat", "second_prompt": "", "negative_prompt": "", "models": ["sdxl_turbo"],
                              "seed": 9, "use_defaults": False, "focus_model": "sdxl_turbo", "steps": 2,
                              "guidance": 0.0, "size": 64})
    with pytest.raises(AppError, match="(?i)unknown|inconnu"):
        client.predict("compare", {"prompt": "x", "no_such_input": 1}, None, api_name="/share_experiment")
    with pytest.raises(AppError, match="(?i)images"):
        client.predict("generate_images", {"prompt": "x"}, {"grid": {"type": "image", "files": ["../../etc/passwd"]}},
                       api_name="/share_experiment")


# ============================================================================ links in the browser
def _text(page, selector: str) -> str:
    return page.locator(f"{selector} textarea, {selector} input").first.input_value()


def test_links_restore_inputs_and_results_in_the_browser(browser, app_url, client):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    try:
        page = context.new_page()
        page.goto(app_url + "?tab=tokenizers&text=Bonjour%20%3Cb%3Eles%3C%2Fb%3E%20amis&tokenizers=clip&show_ids=true"
                            "&oops=1")
        page.wait_for_selector("#share-banner", state="visible", timeout=LONG)
        assert _text(page, "#tok-text") == "Bonjour <b>les</b> amis"
        assert page.locator("#tok-show-ids input").is_checked()
        checked = page.locator("#tok-select input:checked").evaluate_all(
            "els => els.map(e => e.parentElement.innerText)")
        assert len(checked) == 1 and "CLIP" in checked[0]
        assert "oops" in page.locator("#share-banner-text").inner_text()          # what the link could not set
        page.wait_for_function("document.querySelectorAll('#tok-views .tokview').length === 1 && "    # CLIP only,
                               "document.querySelector('#tok-views').innerText.includes('49406')",  # with ids
                               timeout=LONG)
        page.wait_for_timeout(1500)
        assert page.locator("#tok-views .tokview").count() == 1                     # and it stays so

        # the technique tab's own events (language → problem list → question) must not undo the link
        tech = context.new_page()
        tech.goto(app_url + "?tab=techniques&language=en&problem=arith-04&k_examples=1")
        tech.wait_for_selector("#share-banner", state="visible", timeout=LONG)
        tech.wait_for_function("document.querySelector('#tech-problem input')?.value?.startsWith('arith-04')",
                               timeout=LONG)
        tech.wait_for_timeout(1500)
        assert tech.locator("#tech-problem input").input_value().startswith("arith-04")
        assert "Four friends" in _text(tech, "#tech-question")
        tech.close()

        # a result made in the page → "Copy link" → opened elsewhere: inputs and the saved result at once
        open_tab(page, "base_vs_instruct")
        page.fill("#bvi-prompt textarea", "Il était une fois")
        page.click("#bvi-run")
        page.wait_for_function("document.querySelector('#bvi-instruct-stats')?.innerText?.includes('token limit')",
                               timeout=LONG)
        saved = page.locator("#bvi-instruct-output .gen-out").inner_text()
        assert saved.strip()
        page.click("#share-compare-copy")
        page.wait_for_function("(document.querySelector('#share-compare-link textarea, #share-compare-link input')"
                               " || {}).value?.includes('?x=')", timeout=LONG)
        link = _text(page, "#share-compare-link")
        assert link.startswith(app_url) and "?x=" in link

        # the same result sent to a class wall, as a student does: join (code + name), then "Send to the wall"
        room = client.predict("", api_name="/wall_open_room")["room"]
        open_tab(page, "wall")
        page.locator("#wall-room textarea, #wall-room input").first.fill(room[-6:].lower())   # typed loosely
        page.locator("#wall-name textarea, #wall-name input").first.fill("Zoé")
        page.click("#wall-join")
        page.wait_for_function(f"document.querySelector('#wall-join-status')?.innerText?.includes('{room}')",
                               timeout=LONG)
        open_tab(page, "base_vs_instruct")
        page.click("#share-compare-send")
        page.wait_for_function(f"document.querySelector('#share-compare-status')?.innerText?.includes('{room}')",
                               timeout=LONG)
        card = client.predict(room, api_name="/wall")["entries"][0]
        assert card["name"] == "Zoé" and card["title"] == "Il était une fois"
        assert [p["text"] for p in card["card"]["parts"]][1] == saved                   # the instruct pane's text

        other = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR").new_page()
        other.goto(link)
        other.wait_for_selector("#share-banner", state="visible", timeout=LONG)
        assert other.locator("#tab-base_vs_instruct").is_visible()
        assert _text(other, "#bvi-prompt") == "Il était une fois"
        assert other.locator("#bvi-instruct-output .gen-out").inner_text() == saved  # shown without running
        assert "Expérience partagée" in other.locator("#share-banner-text").inner_text()
        assert "token limit" in other.locator("#bvi-instruct-stats").inner_text()   # the saved (English) stats
        other.click("#share-run-again")                    # recomputed in French this time; same seed → same text
        other.wait_for_function("document.querySelector('#bvi-instruct-stats')?.innerText?.includes('limite') && "
                                f"document.querySelector('#bvi-instruct-output .gen-out')?.innerText === {saved!r}",
                                timeout=LONG)
        other.context.close()
    finally:
        context.close()


# ============================================================================ the wall
def _cards(page) -> int:
    return page.locator("#wall-cards .wall-card").count()


def test_students_cannot_moderate_and_their_text_stays_text_on_the_wall(browser, app_url, client):
    room = client.predict("", api_name="/wall_open_room")
    code, token = room["room"], room["teacher_token"]
    shared = client.predict("tokenize", {"text": XSS_TEXT}, None, api_name="/share_experiment")
    entry = client.predict(code, XSS_NAME, shared["id"], api_name="/wall_post")
    assert entry["name"] == XSS_NAME and entry["title"] == XSS_TEXT
    student = Client(app_url, verbose=False)
    for api, args in (("/wall_hide", (code, "", 1)), ("/wall_pin", (code, token[:-2], 1)),
                      ("/wall_close", (code, "guess")), ("/wall_export", (code, "", ""))):
        with pytest.raises(AppError, match="(?i)teacher|enseignant"):
            student.predict(*args, api_name=api)
    assert client.predict(code, api_name="/wall")["entries"][0]["hidden"] is False

    dialogs = []
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.on("page", lambda pg: pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss())))
    try:
        pupil = context.new_page()
        pupil.goto(app_url + f"?room={code}")
        pupil.wait_for_selector("#wall-cards .wall-card", timeout=LONG)
        card = pupil.locator("#wall-cards .wall-card").first
        assert XSS_NAME in card.inner_text() and "<script>alert('wall')</script>" in card.inner_text()
        assert pupil.locator("#wall-cards script, #wall-cards img, #wall-cards [onerror]").count() == 0
        assert not pupil.locator("#wall-hide").is_visible()                          # no teacher controls
        assert pupil.locator(".wall-code").inner_text() == code

        teacher = context.new_page()
        teacher.goto(app_url + f"?tab=wall&room={code}&teacher={token}")
        teacher.wait_for_selector("#wall-hide", state="visible", timeout=LONG)
        # the secret leaves the address bar (at the end of the page's load chain)
        teacher.wait_for_function("!window.location.search.includes('teacher=')", timeout=LONG)
        more = client.predict("tokenize", {"text": "second"}, None, api_name="/share_experiment")
        client.predict(code, "Ben", more["id"], api_name="/wall_post")
        for pg in (pupil, teacher):                                                  # the wall refreshes itself
            pg.wait_for_function("document.querySelectorAll('#wall-cards .wall-card').length == 2", timeout=LONG)
        teacher.locator("#wall-entry input").click()
        teacher.locator("[role=option]", has_text="#1 ·").click()
        teacher.click("#wall-hide")
        teacher.wait_for_selector("#wall-cards .wall-card.wall-hidden", timeout=LONG)  # still listed for the teacher
        pupil.wait_for_function("document.querySelectorAll('#wall-cards .wall-card').length == 1", timeout=LONG)
        assert "Ben" in pupil.locator("#wall-cards").inner_text()
        assert dialogs == []
        teacher.locator("#presentation-toggle input").check()                       # as projected
        teacher.wait_for_function("document.body.classList.contains('presentation')")
        screenshot(teacher, "class_wall", focus="#wall-panel")
    finally:
        context.close()
    export = client.predict(code, token, "", api_name="/wall_export")
    with zipfile.ZipFile(export) as zf:
        md = zf.read("wall.md").decode()
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in md and XSS_TEXT in md    # name escaped, prompt fenced


def test_thirty_students_send_at_once_and_the_wall_survives_a_restart(tiny_llms, tiny_dir, tmp_path):
    env = {"GENAI_DATA_DIR": str(tmp_path / "data")}
    proc, url, log = start_app(tiny_dir, env=env)
    try:
        teacher = Client(url, verbose=False)
        room = teacher.predict("Restart", api_name="/wall_open_room")
        start, errors = threading.Barrier(30), []

        def student(i: int) -> None:
            try:
                c = Client(url, verbose=False, httpx_kwargs={"timeout": 300})  # its own session, like a browser
                start.wait(timeout=120)
                shared = c.predict("tokenize", {"text": f"élève {i}"}, None, api_name="/share_experiment")
                c.predict(room["room"], f"Student {i:02d}", shared["id"], api_name="/wall_post")
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                errors.append(f"{i}: {exc!r}")

        threads = [threading.Thread(target=student, args=(i,)) for i in range(30)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=300)
        assert errors == []
    finally:
        proc.send_signal(signal.SIGKILL)                     # no clean shutdown: what is committed must be on disk
        proc.wait(timeout=30)
    proc, url, log = start_app(tiny_dir, env=env)
    try:
        wall = Client(url, verbose=False).predict(room["room"], room["teacher_token"], api_name="/wall")
        assert sorted(e["name"] for e in wall["entries"]) == [f"Student {i:02d}" for i in range(30)]
        assert sorted(e["entry"] for e in wall["entries"]) == list(range(1, 31))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert os.path.exists(tmp_path / "data" / "genai.db")


# ============================================================================ the teacher's secret (issue #24)
SECRET_PLACES = """(token) => {
  const found = [];
  const walker = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const tag = n.parentElement ? n.parentElement.tagName : '';
    if (n.nodeValue.includes(token) && tag !== 'SCRIPT' && tag !== 'STYLE') found.push('text in ' + tag);
  }
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.attributes) if (attr.value.includes(token)) found.push(`attribute ${attr.name} of ${el.tagName}`);
    if ((el.tagName === 'INPUT' || el.tagName === 'TEXTAREA') && el.type !== 'password' && el.value.includes(token)) {
      found.push('value shown in ' + ((el.closest('[id]') || {}).id || el.tagName));
    }
  }
  if (location.href.includes(token)) found.push('address');
  if (document.title.includes(token)) found.push('title');
  return found;
}"""
# every copy of the token in the page (text, values, attributes) swapped for another string of the same
# length: a screenshot that does not change showed no token
SWAP_TOKEN = """([token, other]) => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) if (n.nodeValue.includes(token)) n.nodeValue = n.nodeValue.split(token).join(other);
  for (const el of document.querySelectorAll('input, textarea')) if (el.value.includes(token)) el.value = el.value.split(token).join(other);
  document.activeElement && document.activeElement.blur();
}"""


def test_the_teachers_secret_is_never_on_screen(browser, app_url):
    """Opening a room: the key and the teacher link are masked (the link has a copy button and a "show"
    that masks itself again), the teacher panel folds, and no page text, attribute, address or
    screenshot carries the token; a teacher link's token leaves the address before the page runs."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="fr-FR")
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        page.goto(app_url + "?lang=fr&tab=wall")
        page.wait_for_function("document.body.dataset.langReady === 'fr'", timeout=LONG)
        open_tab(page, "wall")
        page.click("#wall-teacher .label-wrap")
        page.click("#wall-open")
        page.wait_for_function("document.querySelector('#wall-join-status')?.innerText?.includes('GENAI-')", timeout=LONG)
        page.wait_for_function("(document.querySelector('#wall-key input') || {}).value", timeout=LONG)
        token = page.input_value("#wall-key input")
        assert len(token) >= 32
        page.wait_for_function("(t) => (document.querySelector('#wall-teacher-link input') || {}).value?.includes(t)",
                               arg=token, timeout=LONG)
        assert page.get_attribute("#wall-teacher-link input", "type") == "password"
        # the panel that holds the secret has folded
        page.wait_for_function("!document.querySelector('#wall-key input') || "
                               "!document.querySelector('#wall-key input').checkVisibility()", timeout=LONG)
        assert page.evaluate(SECRET_PLACES, token) == []
        page.mouse.move(0, 0)
        page.add_style_tag(content="* { caret-color: transparent !important; transition: none !important; }")
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(500)
        before = page.screenshot(full_page=True)
        page.evaluate(SWAP_TOKEN, [token, "x" * len(token)])
        page.wait_for_timeout(300)
        assert page.screenshot(full_page=True) == before, "the token was visible somewhere on the page"
        page.evaluate(SWAP_TOKEN, ["x" * len(token), token])

        # the teacher's own view of the link: copied whole, shown on request, masked again by itself
        page.click("#wall-teacher .label-wrap")
        page.locator("#wall-teacher-link button").first.click()
        link = page.evaluate("navigator.clipboard.readText()")
        assert link.endswith("#teacher=" + token) and "?tab=wall&room=GENAI-" in link
        page.click("#wall-show-link")
        assert page.get_attribute("#wall-teacher-link input", "type") == "text"
        page.wait_for_function("document.querySelector('#wall-teacher-link input').type === 'password'", timeout=20_000)
        page.click("#wall-show-link")
        page.locator("#presentation-toggle input").check()           # projecting masks it at once
        assert page.get_attribute("#wall-teacher-link input", "type") == "password"

        # the teacher link opened on the projector's computer: the token leaves the address before the
        # page shows anything (from the first element of its body on), yet the teacher's rights are there
        teacher = context.new_page()
        teacher.add_init_script("window.__addresses = []; new MutationObserver(() => { if (document.body) "
                                "window.__addresses.push(location.href); }).observe(document, {childList: true, subtree: true});")
        teacher.goto(link.replace("?tab=", "?lang=fr&tab="))
        teacher.wait_for_selector("#wall-hide", state="visible", timeout=LONG)
        assert not any(token in url for url in teacher.evaluate("window.__addresses"))
        assert teacher.evaluate(SECRET_PLACES, token) == []
        old = context.new_page()                                      # an older ?teacher= link too
        old.goto(link.replace("#teacher=", "&teacher="))
        old.wait_for_selector("#wall-hide", state="visible", timeout=LONG)
        assert token not in old.url and old.evaluate(SECRET_PLACES, token) == []
    finally:
        context.close()


# ============================================================================ the wall in class (issue #24)
def _send(page, api: str) -> str:
    """Press "Send to the wall" and return the answer beside it (each call expects a new answer)."""
    read = """(s) => { const e = document.querySelector(s); const c = e.cloneNode(true);
        c.querySelectorAll('[data-testid="status-tracker"]').forEach((t) => t.remove());
        return c.textContent.trim(); }"""
    status = f"#share-{api}-status"
    page.click(f"#share-{api}-send")
    page.wait_for_function(f"(s) => {{ const text = ({read})(s); const e = document.querySelector(s);"
                           " return text && e.dataset.seen !== text; }", arg=status, timeout=LONG)
    text = page.evaluate(read, status)
    page.evaluate("([s, text]) => { document.querySelector(s).dataset.seen = text; }", [status, text])
    return text


def test_the_wall_refuses_blank_cards_keeps_one_card_per_result_and_closes_on_confirmation(browser, app_url, client):
    room = client.predict("", api_name="/wall_open_room")
    code, token = room["room"], room["teacher_token"]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    try:
        page = context.new_page()
        page.goto(app_url + f"?lang=fr&room={code}")
        page.wait_for_selector("#wall-banner .wall-code", timeout=LONG)
        page.locator("#wall-name textarea, #wall-name input").first.fill("Zoé")
        page.click("#wall-join")
        page.wait_for_function(f"document.querySelector('#wall-join-status')?.innerText?.includes('{code}')", timeout=LONG)
        open_tab(page, "base_vs_instruct")
        from ui.i18n import t

        assert t("bvi.no_result", "fr") in _send(page, "compare")           # before any run: the tab's message
        assert client.predict(code, api_name="/wall")["entries"] == []
        page.fill("#bvi-prompt textarea", "Il était une fois")
        page.click("#bvi-run")
        page.wait_for_function("(d) => document.querySelector('#bvi-instruct-stats')?.innerText?.includes(d)",
                               arg=t("bvi.reason_length", "fr"), timeout=LONG)
        assert "n° 1" in _send(page, "compare")
        again = _send(page, "compare")                                       # a second click: the same card
        assert "n° 1" in again and again.startswith("✅ Déjà sur le mur")
        assert len(client.predict(code, api_name="/wall")["entries"]) == 1

        teacher = context.new_page()
        teacher.goto(app_url + f"?lang=fr&tab=wall&room={code}#teacher={token}")
        teacher.wait_for_selector("#wall-close", state="visible", timeout=LONG)
        teacher.click("#wall-close")                                         # asks first
        teacher.wait_for_selector("#wall-close-confirm", state="visible", timeout=LONG)
        teacher.click("#wall-close-no")
        teacher.wait_for_selector("#wall-close-confirm", state="hidden", timeout=LONG)
        assert client.predict(code, api_name="/wall")["closed"] is False
        teacher.click("#wall-close")
        teacher.click("#wall-close-yes")
        teacher.wait_for_selector("#wall-reopen", state="visible", timeout=LONG)
        assert client.predict(code, api_name="/wall")["closed"] is True
        page.fill("#bvi-prompt textarea", "Bonjour")
        page.click("#bvi-run")
        page.wait_for_function("(d) => document.querySelector('#bvi-instruct-stats')?.innerText?.includes(d)",
                               arg=t("bvi.reason_length", "fr"), timeout=LONG)
        assert t("wall.err.closed", "fr", room=code) in _send(page, "compare")
        teacher.click("#wall-reopen")                                        # undone by the teacher
        teacher.wait_for_selector("#wall-close", state="visible", timeout=LONG)
        assert client.predict(code, api_name="/wall")["closed"] is False
        assert "n° 2" in _send(page, "compare")
    finally:
        context.close()


def test_the_wall_reads_on_a_phone_and_on_a_projector(browser, app_url, client):
    """Cards within a 390 px screen, the room code whole, a wide table scrolling inside its card; on a
    projector the table's numbers all on screen inside the card, in the page's language."""
    from tests.browser import PHONE, no_horizontal_overflow

    client = Client(app_url, verbose=False)     # its own session: the shared one has used its sends
    room = client.predict("", api_name="/wall_open_room")
    code = room["room"]
    headers = ["tokenizer", "tokens", "characters", "bytes", "chars/token", "vocabulary"]
    rows = [[f"Mistral v{i} · SentencePiece 32000 (Mistral-7B-v0.1, Instruct v0.1/v0.2)", 49, 109, 115, 2.56, 32000]
            for i in range(4)]
    shared = client.predict("tokenize", {"text": "Le tokeniseur découpe « anticonstitutionnellement »."},
                            {"stats": {"type": "table", "headers": headers, "data": rows}}, api_name="/share_experiment")
    client.predict(code, "Zoé", shared["id"], api_name="/wall_post")
    text = client.predict("compare", {"prompt": "Bonjour"}, {"instruct_output": {"type": "html", "value": "Salut"}},
                          api_name="/share_experiment")
    client.predict(code, "Ben", text["id"], api_name="/wall_post")
    cards = """() => [...document.querySelectorAll('#wall-cards .wall-card')].map((c) => {
        const r = c.getBoundingClientRect(); const wrap = c.querySelector('.wall-table-wrap');
        return {left: r.left, right: r.right, overflow: c.scrollWidth - c.clientWidth,
                table: wrap ? [wrap.scrollWidth, wrap.clientWidth, wrap.getBoundingClientRect().right] : null,
                cells: [...c.querySelectorAll('td.num')].map((td) => td.innerText)}; })"""
    for viewport, present in ((PHONE, "0"), ({"width": 1280, "height": 800}, "1")):
        context = browser.new_context(viewport=viewport, locale="fr-FR")
        try:
            page = context.new_page()
            page.goto(app_url + f"?lang=fr&room={code}&present={present}")
            page.wait_for_function("document.querySelectorAll('#wall-cards .wall-card').length === 2", timeout=LONG)
            page.wait_for_timeout(300)
            assert no_horizontal_overflow(page)
            for card in page.evaluate(cards):
                assert card["left"] >= 0 and card["right"] <= viewport["width"] and card["overflow"] <= 1, card
                if card["table"]:
                    scroll_width, width, right = card["table"]
                    assert right <= card["right"]                            # the table never leaves its card
                    assert "2,56" in card["cells"] and "32\u202f000" in card["cells"]
                    if present == "1":
                        assert scroll_width <= width + 1                     # projected: every column on screen
            code_box = page.evaluate("(() => { const e = document.querySelector('#wall-banner .wall-code');"
                                     " const r = e.getBoundingClientRect(); return [r.left, r.right, e.scrollWidth,"
                                     " e.clientWidth]; })()")
            assert code_box[0] >= 0 and code_box[1] <= viewport["width"] and code_box[2] <= code_box[3] + 1
            box = page.locator("#wall-room textarea, #wall-room input").first
            assert box.evaluate("(e) => e.scrollWidth <= e.clientWidth + 1 && e.clientWidth >= 200")  # code whole
        finally:
            context.close()
