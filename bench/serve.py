"""Serving the app for a benchmark or a test: a free port, the app started in a subprocess and
waited for until its page answers, and a tree at another revision (a benchmark's baseline).

Standard library only (no torch, no engine): the benchmarks that time a baseline tree start it
from here before anything of this tree is imported."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_served(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Returns once ``url`` answers 200; raises if ``proc`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:  # not up yet
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


def start_app(*extra: str, root: Path = ROOT, env: dict[str, str] | None = None, log: Path | None = None,
              command: list[str] | None = None, drop: tuple[str, ...] = (), port: int | None = None,
              timeout: float = 300) -> tuple[subprocess.Popen, str]:
    """``python app.py --profile tiny --port P *extra`` in ``root``, served: (process, its URL).
    The app's environment is this one, less ``drop``, plus ``env``; ``command`` replaces
    ``python app.py`` (the ZeroGPU bootstrap); output goes to ``log`` (else nowhere), whose tail
    the error quotes if the app does not start. The app leads its own process group, so that
    :func:`stop_process` also ends what it forked (ZeroGPU's workers outlive their app)."""
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in drop}
    full_env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", **(env or {}))
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([*(command or [sys.executable, str(root / "app.py")]), "--profile", "tiny",
                             "--port", str(port), *extra], cwd=root, env=full_env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_served(url, proc, timeout)
    except Exception as exc:
        _signal_group(proc, signal.SIGKILL)
        tail = f"; its log:\n{log.read_text()[-4000:]}" if log else ""
        raise RuntimeError(f"the app of {root} did not start: {exc}{tail}") from exc
    return proc, url


def baseline_tree(ref: str) -> Path:
    """This repository at ``ref``, extracted to a new temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="genai-baseline-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server started here and its process group; kill what is left after 20 s."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc, signal.SIGKILL)  # the workers it forked, whatever the server did
    proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # already gone
        pass
