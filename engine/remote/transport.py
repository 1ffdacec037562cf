"""Reading an inference server's answers within bounds: size caps, deadlines, clear errors.

Whatever a server (or a proxy in front of it) sends, one request never holds more than
``remote_chunk_bytes`` per streamed line, never reads an error body past 64 KB, never runs
past its deadline, and a body that is not JSON becomes a message that quotes it as short,
redacted text. The functions raise :class:`~engine.errors.UserError` with the URL as it may be
shown (no credentials).
"""
from __future__ import annotations

import json
import threading
import time
from typing import Iterator

import httpx

from engine.errors import UserError
from engine.runtime.redact import remote_text

ERROR_BODY_BYTES = 64 * 1024


class Deadline:
    """The moment a request must be over, and the stop event that can end it sooner."""

    def __init__(self, seconds: float, stop: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.stop = stop or threading.Event()

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.at

    @property
    def over(self) -> bool:
        return self.passed or self.stop.is_set()


def read_capped(resp: httpx.Response, max_bytes: int, deadline: Deadline | None = None) -> bytes:
    """The body, at most ``max_bytes`` (the rest is not read); stops at the deadline."""
    out = bytearray()
    for chunk in resp.iter_bytes():
        out += chunk
        if len(out) >= max_bytes or (deadline is not None and deadline.over):
            break
    return bytes(out[:max_bytes])


def iter_lines(resp: httpx.Response, max_line: int, url: str) -> Iterator[str]:
    """Server-sent lines, each at most ``max_line`` bytes (a longer one is an error: a 10 MB
    chunk is never buffered whole nor passed on)."""
    buffer = b""
    for chunk in resp.iter_bytes():
        buffer += chunk
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            line, buffer = buffer[:cut], buffer[cut + 1:]
            if len(line) > max_line:
                raise UserError("safety.err.endpoint_too_big", url=url, limit=max_line // 1024)
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        if len(buffer) > max_line:
            raise UserError("safety.err.endpoint_too_big", url=url, limit=max_line // 1024)
    if buffer:
        yield buffer.rstrip(b"\r").decode("utf-8", errors="replace")


def parse_json(data: str | bytes, url: str) -> object:
    """JSON, or a message quoting what the server sent instead (short, redacted, as text)."""
    try:
        return json.loads(data)
    except ValueError as exc:
        raise UserError("safety.err.endpoint_not_json", url=url, detail=remote_text(data, 120) or "—") from exc


def error_detail(resp: httpx.Response) -> str:
    """An error body as short text: JSON compacted, HTML reduced to its text, secrets removed."""
    body = read_capped(resp, ERROR_BODY_BYTES)
    try:
        body = json.dumps(json.loads(body), ensure_ascii=False).encode()
    except ValueError:
        pass
    return remote_text(body, 200)
