"""A small local stand-in for an OpenAI-compatible inference server that misbehaves on request.

``Fake.mode`` (set by a test) says how: ``ok`` streams "Bonjour"; ``stall`` sends one token then
nothing; ``trickle`` sends keep-alive comments forever; ``flood`` one 10 MB chunk; ``notjson`` an
HTML page or a non-JSON event; ``echo`` an error that echoes the request's headers (the API key);
``html`` an HTML error page with a link and an image.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from tests.conftest import free_port

KEY = "sk-test-SECRET-0123456789"


def chunk(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"delta": {"content": text}, "finish_reason": None}]}).encode() + b"\n\n"


class Fake(BaseHTTPRequestHandler):
    """``mode`` (a class attribute set per test) says how to misbehave."""

    mode = "ok"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._send(200, json.dumps({"data": [{"id": "m"}]}).encode())

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        mode = type(self).mode
        try:
            if mode == "echo":  # a proxy that echoes the request's headers in its error page
                self._send(502, json.dumps({"error": "upstream failed", "headers": dict(self.headers)}).encode())
            elif mode == "html":
                self._send(500, b"<html><body><h1>Oops</h1><a href='http://evil'>Session expired, log in</a>"
                                b"<img src='http://evil/x.png'></body></html>", "text/html")
            elif mode == "notjson":
                self._send(200, b"<html>maintenance</html>", "text/html") if not body.get("stream") else \
                    self._stream([b"data: maintenance page\n\n"])
            else:
                self._stream_mode(mode)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stream(self, parts: list[bytes], pause: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for part in parts:
            self.wfile.write(part)
            self.wfile.flush()
            time.sleep(pause)

    def _stream_mode(self, mode: str) -> None:
        if mode == "stall":  # one token, then silence
            self._stream([chunk("Bon")])
            time.sleep(30)
        elif mode == "trickle":  # keep-alive comments forever: never an answer, never a time-out
            self._stream([b": keep-alive\n\n"] * 300, pause=0.1)
        elif mode == "flood":  # one 10 MB chunk
            self._stream([chunk("A" * 10_000_000)])
        else:
            self._stream([chunk("Bon"), chunk("jour"),
                          b'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'])


@contextmanager
def serving() -> Iterator[str]:
    """``host:port/v1`` of a running fake server (no scheme: tests add credentials or not)."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Fake)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
