"""Shared fixtures: tiny checkpoints built once per session, a model manager, the real app server."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.serve import free_port, start_app as serve_app, stop_process  # noqa: E402,F401

# Tests never touch the Hub: every model they load is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Shared links and class walls of test apps go to a throw-away folder, never to the repository's data/;
# downloads too. One of each per pytest-xdist worker: two workers' apps never share a wall or a sweep.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
for _name, _prefix in (("GENAI_DATA_DIR", "genai-test-data-"), ("GENAI_TEMP_DIR", "genai-test-files-")):
    if WORKER or _name not in os.environ:
        os.environ[_name] = tempfile.mkdtemp(prefix=f"{_prefix}{WORKER}")
# Every test opens its rooms from 127.0.0.1: the per-address limit on new rooms (5, then one per 2 min)
# would make a test's outcome depend on how fast the ones before it ran.
os.environ.setdefault("GENAI_WALL_ROOMS_BURST", "200")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """GENAI_TINY_DIR for the session: tiny checkpoints get built there on first use."""
    path = Path(os.environ.get("GENAI_TEST_TINY_DIR") or tmp_path_factory.mktemp("tiny"))
    os.environ["GENAI_TINY_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_llms(tiny_dir) -> dict[str, Path]:
    from engine.models.tiny import tiny_path

    return {name: tiny_path(name) for name in ("tiny/mistral-base", "tiny/mistral-instruct")}


@pytest.fixture(scope="session")
def manager(tiny_llms):
    from engine.models.catalog import load_catalog
    from engine.models.hardware import detect
    from engine.serving.manager import ModelManager

    return ModelManager(load_catalog("tiny", env={}), detect())


def start_app(tiny_dir: Path, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, str, Path]:
    """The app with the tests' tiny models, served: (process, URL, its log)."""
    port = free_port()
    log = tiny_dir.parent / f"app-{port}.log"  # tests/test_safety.py reads the session app's log by its port
    proc, url = serve_app(*extra, env={"GENAI_TINY_DIR": str(tiny_dir), **(env or {})}, log=log, port=port,
                          timeout=180)
    return proc, url, log


@pytest.fixture(scope="session")
def app_url(tiny_llms, tiny_dir):
    """The real app (`python app.py --profile tiny`) served on a free port for the session."""
    proc, url, _ = start_app(tiny_dir)
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session (Playwright's sync API allows one driver at a time)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh English page of the session's app (its own browser context)."""
    from tests.browser import new_page

    pg = new_page(browser, app_url)
    yield pg
    pg.context.close()


@pytest.fixture(scope="module")
def fast_handle(tiny_llms):
    """The tiny instruct model with its fast path prepared uncompiled (CPU), and its manager."""
    from engine.models.catalog import load_catalog
    from engine.models.hardware import detect
    from engine.serving.manager import ModelManager

    mp = pytest.MonkeyPatch()
    mp.setenv("GENAI_FAST_PATH", "eager")  # the static-cache path without compiling (CPU)
    manager = ModelManager(load_catalog("tiny", env={}), detect())
    handle = manager.llm(manager.catalog.spec("instruct_llm"))
    mp.undo()
    assert handle.extra.get("fast_path") is not None
    yield handle, manager


def greedy_reference(handle, ids: list[int], n: int) -> list[int]:
    """``n`` greedy tokens after ``ids`` from plain ``generate()``: what every fast path must match."""
    import torch

    out = handle.model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
    return out[0, len(ids):].tolist()
