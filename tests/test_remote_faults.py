"""Issue #19 item 7 (and 6, 9): inference servers that stall, trickle, flood, answer non-JSON or
echo the API key, played by a small local fake server (``tests/fake_openai.py``)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import pytest

from engine import limits
from engine.chat.compare import compare_stream
from engine.errors import UserError
from engine.generation import SamplingParams, generate_many
from engine.models.llm import PreparedPrompt
from engine.remote.client import RemoteLLM, RemoteRequest
from tests.conftest import free_port
from tests.fake_openai import KEY, Fake, serving


@pytest.fixture(scope="module")
def fake():
    with serving() as where:
        yield where


@pytest.fixture()
def remote(fake, manager, monkeypatch):
    """The fake server with the key sent as a Bearer header (what a proxy may echo)."""
    monkeypatch.setenv("GENAI_ENDPOINT_API_KEY", KEY)
    spec = replace(manager.catalog.spec("instruct_llm"), endpoint=f"http://{fake}", endpoint_model="m")
    return RemoteLLM(spec=spec)


@pytest.fixture()
def remote_with_url_key(fake, manager):
    """The fake server with credentials in its URL (what messages must not show)."""
    spec = replace(manager.catalog.spec("instruct_llm"), endpoint=f"http://user:{KEY}@{fake}", endpoint_model="m")
    return RemoteLLM(spec=spec)


def short_limits(monkeypatch, **changes) -> None:
    monkeypatch.setattr("engine.remote.client.current_limits", lambda: replace(limits.limits_for("tiny"), **changes))


def prompt() -> PreparedPrompt:
    return PreparedPrompt(text="Bonjour", input_ids=[], messages=[{"role": "user", "content": "Bonjour"}])


def run(remote: RemoteLLM, stop: threading.Event | None = None) -> RemoteRequest:
    return RemoteRequest(remote, prompt(), SamplingParams(max_new_tokens=8), top_probs=0, stop=stop, notify=None)


def wait_done(req: RemoteRequest, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not req.done and time.monotonic() < deadline:
        time.sleep(0.02)
    return req.done


def test_a_well_behaved_server_streams(remote):
    Fake.mode = "ok"
    req = run(remote)
    assert wait_done(req, 10) and req.update().text == "Bonjour" and req.error is None


def test_stop_ends_a_stalled_stream_within_a_second(remote):
    Fake.mode = "stall"
    stop = threading.Event()
    req = run(remote, stop)
    deadline = time.monotonic() + 10
    while not req.pieces and time.monotonic() < deadline:
        time.sleep(0.02)
    assert req.pieces == ["Bon"]  # the server now says nothing more
    stopped_at = time.monotonic()
    stop.set()
    assert wait_done(req, 1.0), "Stop took more than a second"
    assert req.reason == "stopped" and time.monotonic() - stopped_at < 1.0


def test_keep_alive_comments_cannot_extend_past_the_deadline(remote_with_url_key, monkeypatch):
    short_limits(monkeypatch, remote_deadline_s=1.0)
    Fake.mode = "trickle"
    started = time.monotonic()
    req = run(remote_with_url_key)
    assert wait_done(req, 4.0), "a trickle kept the request alive past its deadline"
    assert req.error.key == "safety.err.endpoint_deadline" and time.monotonic() - started < 2.5
    assert KEY not in str(req.error.params) and "user:" not in req.error.params["url"]


def test_a_10_mb_chunk_is_refused_not_streamed(remote):
    Fake.mode = "flood"
    req = run(remote)
    assert wait_done(req, 20)
    assert req.update().text == "" and req.error.key == "safety.err.endpoint_too_big"


def test_non_json_answers_are_explained(remote):
    Fake.mode = "notjson"
    req = run(remote)
    assert wait_done(req, 10) and req.error.key == "safety.err.endpoint_not_json"
    assert "maintenance page" in req.error.params["detail"]
    with pytest.raises(UserError) as err:  # the techniques' path (non-streamed requests)
        generate_many(remote, [prompt()], SamplingParams(max_new_tokens=4), n_per_prompt=1)
    assert err.value.key == "safety.err.endpoint_not_json" and "maintenance" in err.value.params["detail"]


def test_an_echoed_key_never_reaches_the_message(remote):
    Fake.mode = "echo"
    req = run(remote)
    assert wait_done(req, 10) and req.error is not None
    shown = json.dumps(req.error.params)
    assert KEY not in shown and "user:" not in shown and "upstream failed" in shown


def test_an_html_error_page_is_reduced_to_short_text(remote):
    Fake.mode = "html"
    with pytest.raises(UserError) as err:
        generate_many(remote, [prompt()], SamplingParams(max_new_tokens=4), n_per_prompt=1)
    detail = err.value.params["detail"]
    assert "Oops" in detail and "Session expired" in detail and "<" not in detail and "href" not in detail


def test_stop_ends_a_non_streamed_batch_within_a_second(remote):
    Fake.mode = "stall"  # the non-streamed request gets headers, then silence
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    out = generate_many(remote, [prompt()], SamplingParams(max_new_tokens=4), n_per_prompt=2, stop=stop)
    assert time.monotonic() - started < 1.6
    assert [c.stop_reason for c in out] == ["stopped", "stopped"]


def test_an_unreachable_server_at_first_use_costs_only_its_pane(manager):
    dead = f"http://user:{KEY}@127.0.0.1:{free_port()}/v1"
    instr = replace(manager.catalog.spec("instruct_llm"), endpoint=dead, endpoint_model="m")
    states = list(compare_stream(manager, manager.catalog.spec("base_llm"), instr, "Bonjour",
                                 SamplingParams(max_new_tokens=4, greedy=True)))
    base, instruct = states[-1]
    assert base.update.error is None and base.update.n_tokens == 4
    assert instruct.update.error.key == "err.endpoint_unreachable"
    assert KEY not in instruct.update.error.params["url"]
