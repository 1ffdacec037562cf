"""Run the app under the real ``spaces`` ZeroGPU wrappers on a CPU machine.

Two pieces, both for tests only:

* :class:`DeviceAPIStub` — a small HTTP server on 127.0.0.1 that answers the ZeroGPU device
  API the way the Space's does for an idle GPU (``spaces/zero/api.py`` and ``client.py`` make
  these calls): ``POST /startup-report``, ``/schedule`` → ``{"idle": true, "nvidiaIndex": 0,
  "nvidiaUUID": …, "allowToken": …}``, ``/allow``, ``/release``; it records every call.
* :data:`BOOTSTRAP` — the ``python -c`` program the test starts the app with. On a CPU build of
  torch the package's CUDA-patching module ``spaces.zero.torch`` cannot be imported
  (``torch.version.cuda`` is None), so the bootstrap puts a module with the same functions, as
  no-ops, into ``sys.modules`` before ``spaces`` is imported, then runs ``app.py``. Everything
  else — the fork, the pickled arguments and results, the queues, streaming generators, the
  device-API calls — is the package's own code.

:func:`zerogpu_env` gives the environment variables the package reads on a Space.
"""
from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

# Installed in the app process before `import spaces` (see BOOTSTRAP).
FAKE_SPACES_TORCH = '''
import sys, types
fake = types.ModuleType("spaces.zero.torch")
for name in ("patch", "unpatch", "init", "move", "enter_mode"):
    setattr(fake, name, lambda *a, **k: None)
fake.pack = lambda *a, **k: 0
fake.size = lambda *a, **k: 0
fake.is_in_bad_fork = lambda *a, **k: False
sys.modules["spaces.zero.torch"] = fake
'''

BOOTSTRAP = FAKE_SPACES_TORCH + '''
import runpy
sys.argv = ["app.py"] + sys.argv[1:]
runpy.run_path("app.py", run_name="__main__")
'''


@dataclass
class Call:
    path: str
    params: dict[str, str]


@dataclass
class DeviceAPIStub:
    """The ZeroGPU device API for one idle GPU, on a free local port."""

    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                url = urlparse(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                with stub._lock:
                    stub.calls.append(Call(url.path, params))
                if url.path == "/schedule":
                    body = json.dumps({"idle": True, "nvidiaIndex": 0, "nvidiaUUID": "GPU-stub",
                                       "allowToken": secrets.token_hex(8)}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                known = url.path in ("/startup-report", "/allow", "/release")
                self.send_response(200 if known else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "DeviceAPIStub":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, path: str) -> int:
        with self._lock:
            return sum(c.path == path for c in self.calls)

    def since(self, mark: int) -> list[Call]:
        """The calls made after ``mark`` (a previous ``len(stub.calls)``)."""
        with self._lock:
            return list(self.calls[mark:])


def zerogpu_env(stub: DeviceAPIStub, folder: Path) -> dict[str, str]:
    """What a ZeroGPU Space sets, pointed at the stub (the cgroup file the package reads too)."""
    cgroup = folder / "cgroup"
    cgroup.write_text("0::/test\n")
    return {"SPACE_ID": "test/genai-class-demo", "SPACES_ZERO_GPU": "true",
            "SPACES_ZERO_DEVICE_API_URL": stub.url, "ZEROGPU_PROC_SELF_CGROUP_PATH": str(cgroup),
            "ZEROGPU_OFFLOAD_DIR": str(folder / "zerogpu-tensors")}
