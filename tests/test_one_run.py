"""One run per student per action (issue #23): while a session's run of an action goes on, its
buttons say so and a second run of that action is refused, with a translated message, whatever
the client; Stop, then run again, always works; other sessions and other actions are not held up.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from engine import gpu_tasks
from engine.errors import UserError
from engine.gpu_tasks import tasks as task_module
from ui.i18n import t
from ui.widgets import busy_while_running, buttons_after_run, on_run

LONG_RUN = dict(max_new_tokens=1500, greedy=True)  # stopped by the test, never left to end


# ------------------------------------------------------------------ the rule, in-process
def test_a_second_run_of_the_same_action_is_refused_until_the_first_ends_or_is_stopped(monkeypatch):
    started, finish = threading.Event(), threading.Event()

    def blocking_task(job, stop, seconds):  # a GPU task that runs until the test lets it end (or Stop)
        started.set()
        while not finish.is_set() and not stop.requested():
            time.sleep(0.01)
        yield "done"

    monkeypatch.setitem(gpu_tasks.DURATION, blocking_task, lambda job, resident: 1.0)
    monkeypatch.setattr(task_module, "_manager", SimpleNamespace(is_loaded=lambda spec: False))
    key = ("session-a", "compare")
    first = gpu_tasks.call(blocking_task, None, key)
    runner = threading.Thread(target=lambda: list(first))
    runner.start()
    assert started.wait(30)
    with pytest.raises(UserError) as refused:
        next(gpu_tasks.call(blocking_task, None, key))
    assert refused.value.key == "engine.err_already_running" and refused.value.params == {"n": 1}
    assert gpu_tasks.running(key) == 1
    other_action = gpu_tasks.call(blocking_task, None, ("session-a", "technique"))
    other_session = gpu_tasks.call(blocking_task, None, ("session-b", "compare"))
    finish.set()
    assert list(other_action) == ["done"] and list(other_session) == ["done"]  # neither was refused
    runner.join(30)
    finish.clear()
    started.clear()
    second = gpu_tasks.call(blocking_task, None, key)  # the first ended: a new one starts
    runner = threading.Thread(target=lambda: list(second))
    runner.start()
    assert started.wait(30)
    gpu_tasks.stop(key)  # Stop, then run again at once: the stopped run no longer counts
    third = gpu_tasks.call(blocking_task, None, key)
    finish.set()
    assert list(third) == ["done"]
    runner.join(30)
    assert gpu_tasks.running(key) == 0


def test_wiring_a_run_adds_nothing_to_the_page():
    """The busy states are made in the handler: a gr.Button made while the page is built is a new,
    visible button (two stray English "Run" buttons sat on the French page)."""
    with gr.Blocks() as demo:
        run, box = gr.Button("Lancer"), gr.Textbox()
        on_run(run.click, lambda text: text, action="x", buttons=[(run, None)], inputs=[box], outputs=[box])
    assert [b for b in demo.blocks.values() if isinstance(b, gr.Button)] == [run]


def test_the_buttons_are_busy_from_the_first_update_to_the_end():
    run, other = gr.Button("Run"), gr.Button("New sample")

    def handler(x, request: gr.Request = None):
        yield "a", 1
        yield "b", 2

    buttons = [(run, "bvi.generate"), (other, None)]
    out = list(busy_while_running(handler, buttons, 2)("x"))
    assert [o[2:] for o in out] == [("a", 1), ("b", 2)]
    assert all([passed(b) for b in o[:2]] == [{"interactive": False, "value": "run.busy"}, {"interactive": False}]
               for o in out)
    idle = [passed(b) for b in buttons_after_run("compare", buttons)]  # chained after the run's end
    assert idle == [{"interactive": True, "value": "bvi.generate"}, {"interactive": True}]

    def refused(x, request: gr.Request = None):  # e.g. an empty prompt: a warning, nothing shown
        return
        yield

    assert list(busy_while_running(refused, [(run, "bvi.generate")], 1)("x")) == []  # never disabled


def test_the_buttons_come_back_only_once_the_run_has_ended():
    """In an event chained after the run, whatever its end: a button usable while the run's event
    is still open would drop a click (Gradio's page ignores a trigger of an event not yet ended)."""
    with gr.Blocks() as demo:
        run, box = gr.Button("Run"), gr.Textbox()
        dep = on_run(run.click, lambda text: text, action="x", buttons=[(run, None)], inputs=[box], outputs=[box])
    deps = demo.config["dependencies"]
    after = [d for d in deps if d.get("trigger_after") == dep["id"]]
    assert len(after) == 1 and not after[0]["trigger_only_on_success"] and not after[0]["trigger_only_on_failure"]
    assert after[0]["outputs"] == [run._id] and after[0]["queue"] is False
    restored = demo.fns[after[0]["id"]].fn(None)
    assert isinstance(restored, gr.Button) and passed(restored) == {"interactive": True}  # one output: not a tuple


def passed(button: gr.Button) -> dict:
    """What an update of ``button`` changes (the arguments it was made with), label keys as keys."""
    args = dict(button._constructor_args[0])
    if "value" in args:
        args["value"] = str(args["value"]).split('"key": "')[1].rstrip('"}')
    return args


# ------------------------------------------------------------------ the app, as a script would use it
def running_job(client: Client, **kwargs):
    job = client.submit("Raconte une très longue histoire.", api_name="/compare", **{**LONG_RUN, **kwargs})
    deadline = time.monotonic() + 300
    while not (job.outputs() and job.outputs()[-1][-1]):
        assert not job.done(), job.exception()
        assert time.monotonic() < deadline, "the comparison never started"
        time.sleep(0.05)
    return job


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_one_session_cannot_queue_a_second_comparison(app_url, lang):
    client = Client(app_url, verbose=False, headers={"Accept-Language": f"{lang}-XX,{lang};q=0.9"})
    first = running_job(client)
    with pytest.raises(AppError) as refused:
        client.predict("Deuxième question", max_new_tokens=4, api_name="/compare")
    assert str(refused.value) == t("engine.err_already_running", lang, n=1)
    assert not first.done()  # the running one goes on
    other = Client(app_url, verbose=False).predict("Une autre élève", max_new_tokens=4, greedy=True,
                                                   api_name="/compare")
    assert other[-1]["base"]["tokens"] == 4  # another session is not held up
    client.predict(api_name="/stop_compare")
    again = client.predict("Après Stop", max_new_tokens=4, greedy=True, api_name="/compare")  # Stop, then run again
    assert again[-1]["base"]["tokens"] == 4 and again[-1]["instruct"]["tokens"] >= 1
    assert first.result(timeout=300)[-1]["base"]["stop_reason"] == "stopped"


def test_ten_clicks_from_one_session_run_once(app_url):
    """What ten fast clicks send (the page sends one; a script or a race can send ten): one runs,
    nine are refused with the message while it goes on."""
    client = Client(app_url, verbose=False)
    jobs = [client.submit(f"Clic {i}", api_name="/compare", **LONG_RUN) for i in range(10)]
    deadline = time.monotonic() + 300
    while sum(j.done() for j in jobs) < 9 and time.monotonic() < deadline:
        time.sleep(0.05)
    client.predict(api_name="/stop_compare")
    results = []
    for job in jobs:
        try:
            results.append(job.result(timeout=300)[-1]["base"]["stop_reason"])
        except AppError as err:
            results.append(str(err))
    assert sorted(results) == ["stopped"] + [t("engine.err_already_running", "en", n=1)] * 9
