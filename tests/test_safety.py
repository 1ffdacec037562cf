"""Issue #19 through the real app (``python app.py --profile tiny``), called as a hostile student
would: ``gradio_client``, and a raw client for what ``gradio_client`` refuses to send (NaN)."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError, ValidationError
from PIL import Image

from bench.api_client import call
from tests.conftest import free_port, start_app
from tests.fake_openai import KEY, Fake, serving

COMPARE = ["Bonjour", "", "", "", False, False, 6, 0.7, 0.95, 50, 1.0, False, 1, None, "", "off", "instruct", 3]


def compare_args(**changes) -> list:
    names = ["prompt", "system_prompt", "base_model", "instruct_model", "template_on_base", "show_probabilities",
             "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "greedy", "seed", "history",
             "source", "source_mode", "source_model", "passages"]
    return [changes.get(n, v) for n, v in zip(names, COMPARE)]


def app_log(app_url: str, tiny_dir: Path) -> str:
    """The log of the session's app (``tests/conftest.py`` writes it next to the tiny models)."""
    port = app_url.rstrip("/").rsplit(":", 1)[1]
    return (tiny_dir.parent / f"app-{port}.log").read_text()


# ------------------------------------------------------------------ 2: NaN and generic messages
def test_a_nan_from_one_student_never_fails_the_others(app_url):
    results: dict[int, object] = {}

    def one(i: int, temperature: float) -> None:
        results[i] = call(app_url, "compare", compare_args(prompt=f"Élève {i}", temperature=temperature, seed=i))

    threads = [threading.Thread(target=one, args=(i, 0.7)) for i in range(8)]
    threads.append(threading.Thread(target=one, args=(8, float("nan"))))
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    nan = results[8]
    assert nan.status == 422 and nan.messages == ["Temperature: nan is not a finite number."]
    for i in range(8):
        answer = results[i]
        assert answer.ok, (i, answer.status, answer.messages)
        raw = answer.data[-1]
        assert raw["base"]["error"] is None and raw["instruct"]["error"] is None
        assert raw["base"]["tokens"] == 6 and raw["instruct"]["tokens"] >= 1


@pytest.mark.parametrize("endpoint,data,expected", [
    ("compare", compare_args(repetition_penalty=float("nan")), "Repetition penalty: nan is not a finite number."),
    ("compare", compare_args(seed=float("nan")), "Seed: nan is not a finite number."),
    ("compare", compare_args(seed=float("inf")), "Seed: inf is not a finite number."),
    ("compare", compare_args(seed=2**70), "Seed must be between 0 and 4,294,967,295"),
    ("compare", compare_args(max_new_tokens=0), "Max new tokens must be between 1 and 2,048 (got 0)."),
    ("run_technique", ["self_consistency", "fr", "arith-09", "", "", "number", 3, False, 0, 5, float("nan"), 1, 3, 2,
                       "", 8, 0.7, True, 1, 3], "T — sampling temperature: nan is not a finite number."),
    ("benchmark_techniques", [["zero_shot"], "fr", ["number"], 0, 3, False, 0, 5, 0.8, 1, 3, 2, "", 8, 1, 3],
     "Number of problems must be between 1 and"),
    ("generate_images", ["p", "", "", ["sdxl_turbo"], 1, False, "sdxl_turbo", 1, 0.0, 0], "Size must be between"),
])
def test_bad_numbers_get_a_clear_message_before_anything_runs(app_url, endpoint, data, expected):
    answer = call(app_url, endpoint, data)
    assert answer.status == 422 and any(expected in m for m in answer.messages), answer.messages


def test_messages_speak_the_visitors_language(app_url):
    answer = call(app_url, "compare", compare_args(temperature=float("nan")), lang="fr-FR,fr;q=0.9")
    assert answer.messages == ["Température : nan n'est pas un nombre fini."]
    answer = call(app_url, "compare", compare_args(max_new_tokens=4096), lang="fr-FR,fr;q=0.9")
    assert answer.messages[0].endswith("doit être entre 1 et 2\u202f048 (reçu : 4\u202f096).")  # French numbers


def test_max_new_tokens_near_the_maximum_says_what_fits(client):
    with pytest.raises(AppError, match=r"at most 2,0\d\d new tokens fit"):
        client.predict(*compare_args(max_new_tokens=2048), api_name="/compare")


def test_queued_events_cannot_be_called_around_the_queue(app_url):
    resp = httpx.post(f"{app_url}gradio_api/run/compare", json={"data": compare_args()}, timeout=30)
    assert resp.status_code == 404


# ------------------------------------------------------------------ 1, 5: sweeps and the image queue
def test_sweeps_are_capped_before_anything_runs(client):
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="limit is 2,000"):
        client.predict("p", "sdxl_base", "seed", "1", "style", "W" * 100_000, api_name="/image_grid_sweep")
    with pytest.raises(ValidationError, match="61 characters; the limit is 60"):
        client.predict("p", "sdxl_base", "seed", "1", "style", "neon, " + "W" * 61, api_name="/image_grid_sweep")
    with pytest.raises(ValidationError, match="20 values; at most 8"):
        client.predict("p", "sdxl_base", "seed", ",".join(map(str, range(20))), "steps", ",".join(["1"] * 20),
                       api_name="/image_grid_sweep")
    with pytest.raises(ValidationError, match="would make 25 images"):
        client.predict("p", "sdxl_base", "seed", "1, 2, 3, 4, 5", "steps", "1, 2, 3, 4, 5", api_name="/image_grid_sweep")
    with pytest.raises(ValidationError, match="limit is 2,000"):
        client.predict("x" * 1_000_000, "", "", ["sdxl_turbo"], 1, True, "sdxl_turbo", 1, 0.0, 64,
                       api_name="/generate_images")
    assert time.perf_counter() - started < 10


def test_a_long_sweep_does_not_hold_another_students_image(manager, monkeypatch):
    """A sweep of three images and another student's single image, through the tab's GPU task
    (turns image by image, round-robin): the single image is drawn right after the sweep's first,
    and is done while the sweep still has two to draw. Each drawing waits for the test to let it
    end (events, not timing: nothing depends on how loaded the machine is)."""
    from types import SimpleNamespace

    from engine import gpu_tasks
    from engine.images import imagegen
    from engine.runtime.fairness import FairGate
    from engine.gpu_tasks import tasks

    monkeypatch.setattr(tasks, "_manager", manager)
    monkeypatch.setattr(tasks, "_image_gate", FairGate(1))
    started: list[str] = []
    begun = {name: threading.Event() for name in ("A1", "A2", "A3", "B1")}
    release = {name: threading.Event() for name in begun}

    def drawing(pipe, settings, stop=None):  # stands in for the denoising loop
        name = settings.prompt
        started.append(name)
        begun[name].set()
        assert release[name].wait(120), f"{name} was never released"
        yield SimpleNamespace(step=1, total=1, preview=None,
                              result=SimpleNamespace(image=Image.new("RGB", (8, 8)), settings=settings, seconds=0.0))

    monkeypatch.setattr(imagegen, "generate_stream", drawing)
    spec = manager.catalog.spec("sdxl_turbo")

    def job(owner: str, names: list[str]) -> gpu_tasks.ImagesJob:
        items = tuple(gpu_tasks.ImageItem(spec, imagegen.settings_for(spec, n, seed=i, tiny=True))
                      for i, n in enumerate(names))
        return gpu_tasks.ImagesJob(items, owner=owner)

    done: dict[str, list] = {}

    def student(owner: str, names: list[str]) -> None:
        done[owner] = list(gpu_tasks.call(gpu_tasks.images, job(owner, names), (owner, "images")))

    sweep = threading.Thread(target=student, args=("A", ["A1", "A2", "A3"]))
    single = threading.Thread(target=student, args=("B", ["B1"]))
    sweep.start()
    assert begun["A1"].wait(120)
    single.start()
    while tasks._image_gate.waiting() < 1:  # B waits for its turn (a state, not a delay)
        assert single.is_alive()
        time.sleep(0.01)
    release["A1"].set()
    assert begun["B1"].wait(120)  # B's turn comes before the sweep's second image
    release["B1"].set()
    single.join(120)
    # done while the sweep goes on (its second image may have begun since: it waits for its release)
    assert "B" in done and "A" not in done and started[:2] == ["A1", "B1"] and "A3" not in started
    release["A2"].set()
    release["A3"].set()
    sweep.join(120)
    assert started == ["A1", "B1", "A2", "A3"]
    assert [type(e).__name__ for e in done["A"]] == ["ImageDone"] * 3 and len(done["B"]) == 1


# ------------------------------------------------------------------ 3, 9: uploads and PNG metadata
def test_a_png_bomb_is_refused_from_its_header(client, tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (13_000, 13_000)).save(path)
    started = time.perf_counter()
    with pytest.raises(AppError, match="13000×13000 pixels"):
        client.predict(handle_file(str(path)), api_name="/read_png_settings")
    assert time.perf_counter() - started < 5


def test_png_metadata_cannot_inject_html(client, tmp_path):
    import json

    from PIL.PngImagePlugin import PngInfo

    data = {"role": "sdxl_base", "model": "m", "prompt": "<img src=http://evil/x.png>", "negative_prompt": "",
            "steps": '<a href="http://evil">Session expired</a>', "guidance": 1.0, "width": 64, "height": 64, "seed": 1}
    info = PngInfo()
    info.add_text("genai-class-demo", json.dumps(data))
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png", pnginfo=info)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(tmp_path / "x.png")), api_name="/read_png_settings")
    assert "damaged (steps)" in str(err.value) and "<a" not in str(err.value)
    data["steps"] = 2
    info = PngInfo()
    info.add_text("genai-class-demo", json.dumps(data))
    Image.new("RGB", (8, 8)).save(tmp_path / "y.png", pnginfo=info)
    out = client.predict(handle_file(str(tmp_path / "y.png")), api_name="/read_png_settings")
    assert out[0] == "<img src=http://evil/x.png>"  # into the prompt box, as text
    assert "<" not in out[-1]  # the Markdown note quotes only checked numbers


# ------------------------------------------------------------------ 8: model ids
def test_models_outside_the_catalog_and_server_paths_are_refused(client, tiny_dir):
    for value in ("/etc", str(tiny_dir / "mistral-base"), "openai-community/gpt2"):
        with pytest.raises(ValidationError, match="is not one of this class's models") as err:
            client.predict(*compare_args(base_model=value), api_name="/compare")
        assert "Unrecognized" not in str(err.value)
    with pytest.raises(ValidationError, match="not one of this class's models"):
        client.predict(model="/etc", context_length=4096, batch_size=1, api_name="/memory_plan")
    with pytest.raises(ValidationError, match="not one of this class's models"):
        client.predict("Bonjour", ["mistral-v1"], "/etc, gpt2", False, False, api_name="/tokenize")
    config = client.config
    pickers = [c["props"] for c in config["components"]
               if c.get("type") == "dropdown" and "tiny/mistral-base" in str(c["props"].get("choices"))]
    assert pickers and not any(p.get("allow_custom_value") for p in pickers)


# ------------------------------------------------------------------ 10: huge inputs refused before any work
def test_huge_inputs_are_refused_before_loading_anything(client):
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="limit is 20,000"):
        client.predict(model="", precisions=["fp32", "int8", "nf4"], prompt="x" * 1_000_000, max_new_tokens=6,
                       api_name="/quantize_compare")
    with pytest.raises(ValidationError, match="limit is 60,000"):
        client.predict({"prompt": "p" * 2_000_000, "base": {"output": "o" * 2_000_000}, "instruct": {}},
                       api_name="/comparison_card")
    assert time.perf_counter() - started < 10


def test_every_queued_event_runs_in_a_queue_group(app_url, tiny_dir):
    log = app_log(app_url, tiny_dir)
    assert "Running on local URL" in log and "has no queue group" not in log


def test_tokens_generated_never_go_down_when_requests_are_stopped(client):
    def total() -> int:
        overview = client.predict(api_name="/about")[0]
        return int(re.search(r"tokens generated: ([\d,]+)", overview).group(1).replace(",", ""))  # 1,234

    before = total()
    job = client.submit(*compare_args(max_new_tokens=1500, greedy=True), api_name="/compare")
    deadline = time.time() + 120
    while time.time() < deadline:
        outs = job.outputs()
        if outs and outs[-1][-1] and outs[-1][-1]["base"]["tokens"] >= 10:
            break
        time.sleep(0.1)
    client.predict(api_name="/stop_compare")
    raw = job.result(timeout=120)[-1]
    assert raw["base"]["stop_reason"] == "stopped"
    generated = raw["base"]["tokens"] + raw["instruct"]["tokens"]
    assert total() >= before + generated


# ------------------------------------------------------------------ 4, 6, 7: an app with inference servers
@pytest.fixture(scope="module")
def served_app(tiny_dir):
    """An app whose instruct role is a live (fake) server and base role a dead one, both with a
    key in their URL; an API key in the environment; room for 20 sessions."""
    Fake.mode = "ok"
    with serving() as where:
        dead = f"http://student:{KEY}@127.0.0.1:{free_port()}/v1"
        proc, url, log = start_app(
            tiny_dir, "--instruct-endpoint", f"http://student:{KEY}@{where}", "--instruct-endpoint-model", "m",
            "--base-endpoint", dead, env={"GENAI_ENDPOINT_API_KEY": "sk-env-KEY-9876543210",
                                          "GENAI_LIMIT_SESSIONS": "20"})
        try:
            yield url, proc, log
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except Exception:  # noqa: BLE001
                proc.kill()


def test_a_dead_server_costs_its_pane_only_and_keys_never_leave(served_app):
    from gradio_client import Client

    url, _, log = served_app
    client = Client(url, verbose=False)
    out = client.predict(*compare_args(), api_name="/compare")
    base_stats, raw = out[4], out[-1]
    assert "cannot be reached" in base_stats and "127.0.0.1" in base_stats
    assert raw["instruct"]["output"] == "Bonjour" and raw["instruct"]["error"] is None
    about = client.predict(api_name="/about")
    config = httpx.get(f"{url}config", timeout=30).text
    shown = " ".join(map(str, out)) + str(about) + config + log.read_text()
    for secret in (KEY, "sk-env-KEY-9876543210", "student:"):
        assert secret not in shown
    assert "127.0.0.1" in str(about)  # the endpoint is still named, without its credentials


def test_memory_stays_flat_while_new_sessions_keep_coming(served_app):
    url, proc, _ = served_app
    text = "Bonjour la classe ! " * 250
    calls = [("about", []), ("stop_technique", []), ("tokenize", [text, ["mistral-v1"], "", False, False]),
             ("memory_plan", ["mistral-7b", 4096, 1])]
    failures: list = []

    def visits(n: int) -> None:
        with httpx.Client(timeout=60) as http:
            for i in range(n):
                answer = call(url, *calls[i % len(calls)], client=http)
                if not answer.ok:
                    failures.append(answer)

    def wave(n: int) -> None:
        threads = [threading.Thread(target=visits, args=(n // 4,)) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(600)

    def rss() -> float:
        return psutil.Process(proc.pid).memory_info().rss / 1e6

    wave(40)  # warm-up: every endpoint used, the 20 kept sessions filled
    before = rss()
    wave(160)  # 160 more sessions: ≈ 0.55 MB each (+88 MB) when sessions are not bounded
    growth = rss() - before
    assert not failures, [a.messages for a in failures[:3]]
    assert growth < 20, f"RSS grew {growth:.0f} MB over 160 new sessions"


# ------------------------------------------------------------------ what a student sees in the browser
def test_a_refused_sweep_says_why_on_its_input_in_the_browser(browser, app_url):
    from tests.browser import DESKTOP, open_tab, validation_message

    context = browser.new_context(viewport=DESKTOP, locale="fr-FR")
    page = context.new_page()
    try:
        page.goto(app_url)
        page.wait_for_selector("#bvi-run", timeout=120_000)
        open_tab(page, "image_prompting")
        page.locator("#img-sweep").get_by_text("X/Y", exact=False).first.click()
        boxes = page.locator("#img-sweep textarea")
        boxes.nth(0).fill("1, 2, 3, 4, 5")
        boxes.nth(1).fill("1, 2, 3, 4, 5")
        page.click("#img-sweep-run")
        assert "Ce balayage produirait 25 images" in validation_message(page, "#img-sweep", timeout=60_000)
    finally:
        context.close()
