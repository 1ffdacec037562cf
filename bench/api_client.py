"""A raw client of a Gradio app's API, as a hostile student would use it.

``gradio_client`` refuses to send what JSON cannot hold (NaN, infinities) and reuses one
session; this sends any JSON body (``NaN`` included, as Python's ``json`` writes it), each call
from a new session unless one is given, and reads the answer's server-sent events. Used by the
safety tests and ``bench/load_soak.py``.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import httpx


@dataclass
class Answer:
    status: int  # HTTP status of the call (422: refused by a validator before it was queued)
    event: str = ""  # "complete" | "error" | "" (refused, or no end before the timeout)
    data: object = None  # the outputs (complete), the error message (error) or the refusal's detail
    first_output_s: float | None = None  # seconds until the first "generating" or "complete" event
    first_token_s: float | None = None  # seconds until the outputs first satisfy ``first_token`` (if given)
    done_s: float | None = None  # seconds until the end
    updates: int = 0  # events with outputs received
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.event == "complete"

    def text(self) -> str:
        return json.dumps(self.data, ensure_ascii=False) if not isinstance(self.data, str) else self.data


def _holds(test: Callable[[list], bool], payload: str) -> bool:
    try:
        return bool(test(json.loads(payload)))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return False


def refusal_messages(detail: object) -> list[str]:
    if isinstance(detail, list):
        return [d.get("message", "") for d in detail if isinstance(d, dict) and d.get("is_valid") is False]
    return [str(detail)]


def call(base_url: str, api_name: str, data: list, *, session_hash: str | None = None, timeout: float = 120.0,
         client: httpx.Client | None = None, lang: str | None = None,
         first_token: Callable[[list], bool] | None = None) -> Answer:
    """POST ``/gradio_api/call/<api_name>`` then read its events until it ends. ``first_token``:
    a test on the outputs (e.g. "a pane has a token") whose first success is timed."""
    own = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
    base = base_url.rstrip("/") + "/gradio_api/call/" + api_name.strip("/")
    body = {"data": data, "session_hash": session_hash or uuid.uuid4().hex[:11]}
    started = time.perf_counter()
    try:
        headers = {"Content-Type": "application/json", **({"Accept-Language": lang} if lang else {})}
        resp = client.post(base, content=json.dumps(body), headers=headers)
        if resp.status_code != 200:
            try:
                detail = resp.json().get("detail")
            except ValueError:
                detail = resp.text
            return Answer(resp.status_code, data=detail, messages=refusal_messages(detail),
                          done_s=time.perf_counter() - started)
        event_id = resp.json()["event_id"]
        answer = Answer(200)
        event = ""
        with client.stream("GET", f"{base}/{event_id}", timeout=httpx.Timeout(timeout, connect=10.0)) as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    payload = line[5:].strip()
                    if event in ("generating", "complete"):
                        answer.updates += 1
                        now = time.perf_counter() - started
                        if answer.first_output_s is None:
                            answer.first_output_s = now
                        if first_token is not None and answer.first_token_s is None and _holds(first_token, payload):
                            answer.first_token_s = now
                    if event in ("complete", "error"):
                        answer.event = event
                        try:
                            answer.data = json.loads(payload)
                        except ValueError:
                            answer.data = payload
                        if event == "error":
                            answer.messages = [answer.text()]
                        answer.done_s = time.perf_counter() - started
                        return answer
                    if event == "generating":
                        answer.data = payload
                if time.perf_counter() - started > timeout:
                    break
        answer.done_s = time.perf_counter() - started
        return answer
    finally:
        if own:
            client.close()


_SIGNATURES: dict[tuple[str, str], list[tuple[str, object]]] = {}


def named_args(base_url: str, api_name: str, **values: object) -> list:
    """The data list for ``api_name`` of the app at ``base_url``: ``values`` by parameter name, every
    other parameter at its default, in the order that app's API takes them (read from its
    ``/gradio_api/info``; so one script can drive two revisions whose signatures differ)."""
    key = (base_url, api_name)
    if key not in _SIGNATURES:
        info = httpx.get(base_url.rstrip("/") + "/gradio_api/info", timeout=60).json()
        params = info["named_endpoints"]["/" + api_name.lstrip("/")]["parameters"]
        _SIGNATURES[key] = [(p["parameter_name"], p.get("parameter_default")) for p in params]
    unknown = set(values) - {name for name, _ in _SIGNATURES[key]}
    if unknown:
        raise KeyError(f"{api_name} takes no {sorted(unknown)}")
    return [values.get(name, default) for name, default in _SIGNATURES[key]]

