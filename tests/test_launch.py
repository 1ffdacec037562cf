"""app.py's launch: Gradio's own localhost check survives a busy machine."""
from __future__ import annotations

import httpx
from gradio import networking

import app


def test_localhost_check_retries_timeouts_instead_of_giving_up(monkeypatch):
    answers = iter([httpx.ReadTimeout("busy"), httpx.ConnectError("not yet"), httpx.Response(200)])

    def head(url, **kwargs):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(httpx, "head", head)
    monkeypatch.setattr(networking, "url_ok", networking.url_ok)  # restored after the test
    monkeypatch.setattr("time.sleep", lambda s: None)
    assert networking.url_ok("http://127.0.0.1:1/") is False  # Gradio's: the first time-out ends it
    answers = iter([httpx.ReadTimeout("busy"), httpx.ConnectError("not yet"), httpx.Response(200)])
    app.patient_localhost_check(wait_s=30)
    assert networking.url_ok("http://127.0.0.1:1/") is True


def test_localhost_check_gives_up_after_its_wait(monkeypatch):
    def head(url, **kwargs):
        raise httpx.ConnectError("nobody")

    monkeypatch.setattr(httpx, "head", head)
    monkeypatch.setattr(networking, "url_ok", networking.url_ok)
    monkeypatch.setattr("time.sleep", lambda s: None)
    app.patient_localhost_check(wait_s=0.05)
    assert networking.url_ok("http://127.0.0.1:1/") is False
