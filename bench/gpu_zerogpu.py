"""The GPU check's ZeroGPU row: the app under the real ``spaces`` wrappers, with CUDA where there is one.

The app is started as on a ZeroGPU Space (``python app.py --profile tiny``, the environment a
Space sets, the device API answered by the stub the tests use: ``tests/zerogpu_stub.py``), so
each GPU call runs in a worker forked by the package, with its arguments and results pickled.
On a CUDA machine the package's own CUDA patching (``spaces.zero.torch``) runs: the models are
moved to CUDA at start-up and each worker gets them on its GPU, as on a Space. On a CPU build of
torch that module cannot import, so it is replaced by no-ops, as in ``tests/test_zerogpu.py``.

One comparison and one image go through the fork; the same work done in this process off-Space
must give the same tokens and the same pixels.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gpu_report import Row, Settings

NEEDS = ("spaces", "gradio", "gradio_client", "mistral_common", "diffusers")
PROMPT = "Explique la photosynthèse."
IMAGE_PROMPT = "a cat holding a sign"
VISITOR_TOKEN = "e30.eyJzdWIiOiAic3R1ZGVudCJ9.c2ln"  # what a Space's proxy adds: the visitor's quota


def rows(s: Settings) -> list[Row]:
    return [Row("ZeroGPU: the app under the real spaces wrappers (device-API stub), CUDA patching"),
            Row(f"ZeroGPU: Base vs Instruct through the fork, {s.tokens} greedy tokens", "= off-Space", always=True),
            Row("ZeroGPU: one image through the fork", "= off-Space", always=True)]


def start_app(folder: Path, stub) -> tuple[subprocess.Popen, str, Path]:
    from common import ROOT
    from serve import start_app as serve
    from tests.zerogpu_stub import BOOTSTRAP, zerogpu_env

    log = folder / "app.log"
    env = dict(zerogpu_env(stub, folder))
    env.setdefault("GENAI_DATA_DIR", os.environ.get("GENAI_DATA_DIR") or tempfile.mkdtemp(prefix="gpu-check-data-"))
    # spaces.zero.torch cannot import on a CPU build: the tests' no-op stand-in; on CUDA the real patching
    command = [sys.executable, "-c", BOOTSTRAP] if torch.version.cuda is None else [sys.executable, str(ROOT / "app.py")]
    proc, url = serve(command=command, env=env, drop=("GENAI_FAST_PATH",), log=log, timeout=240)  # as on a Space
    return proc, url, log


def run(s: Settings, rows_: dict[str, Row]) -> None:
    from serve import stop_process
    from gradio_client import Client
    from PIL import Image

    from engine.images import imagegen
    from engine.models.catalog import load_catalog
    from engine.chat.compare import compare_stream
    from engine.generation import SamplingParams
    from engine.models.hardware import detect
    from engine.serving.manager import ModelManager
    from tests.zerogpu_stub import DeviceAPIStub

    app_row, compare_row, image_row = rows_.values()
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-zerogpu-", dir=s.folder if s.folder.exists() else None))
    stub = DeviceAPIStub().start()
    proc = None
    try:
        started = time.perf_counter()
        proc, url, log = start_app(folder, stub)
        client = Client(url, verbose=False, headers={"X-IP-Token": VISITOR_TOKEN},
                        httpx_kwargs={"timeout": 300})  # a loaded machine answers slowly: never a failure
        patching = "no-op stand-in (CPU torch)" if torch.version.cuda is None else "the package's own (CUDA)"
        app_row.measured = f"started in {time.perf_counter() - started:.1f} s; CUDA patching: {patching}"
        # a first short call forks the worker: a fresh worker's call keeps less of its duration (its set-up
        # is counted), and on a loaded CPU that can stop the measured one after a few tokens
        client.predict(PROMPT, greedy=True, max_new_tokens=2, api_name="/compare")
        schedules = stub.count("/schedule")
        raw = client.predict(PROMPT, greedy=True, max_new_tokens=s.tokens, api_name="/compare")[-1]
        grid, gallery = client.predict(IMAGE_PROMPT, "", "", ["sdxl_turbo"], 7, api_name="/generate_images")
        calls = stub.count("/schedule") - schedules
        got = None
        if gallery:
            with Image.open(gallery[0]["image"]) as im:
                got = im.convert("RGB")
                got.load()
    finally:
        if proc is not None:
            stop_process(proc)
        stub.close()
    manager = ModelManager(load_catalog("tiny", env={}), detect())  # the same work, off-Space, in this process
    catalog = manager.catalog
    base, instr = list(compare_stream(manager, catalog.spec("base_llm"), catalog.spec("instruct_llm"), PROMPT,
                                      SamplingParams(max_new_tokens=s.tokens, greedy=True, seed=42)))[-1]
    # a call stops itself before its GPU duration ends (a loaded CPU can get there): what it made must
    # be the start of what the same request makes off-Space
    cut = [p for p in ("base", "instruct") if raw[p]["stop_reason"] not in ("length", "eos")]
    same = all(off.update.text.startswith(raw[p]["output"]) and raw[p]["tokens"] <= off.update.n_tokens
               and (p in cut or raw[p]["tokens"] == off.update.n_tokens)
               for p, off in (("base", base), ("instruct", instr)))
    compare_row.measured = f"{'same' if same else 'DIFFERENT'} tokens ({raw['base']['tokens']} + " \
                           f"{raw['instruct']['tokens']}); {calls} GPU call(s) scheduled for both requests"
    if cut:
        compare_row.measured += f"; stopped at its GPU duration: {', '.join(cut)}"
    compare_row.ok = same and calls >= 2 and (s.smoke or not cut)
    if not same:
        compare_row.measured += f" (through the fork: {raw['base']['output']!r} / {raw['instruct']['output']!r}; " \
                                f"off-Space: {base.update.text!r} / {instr.update.text!r})"
    spec = catalog.spec("sdxl_turbo")
    expected = imagegen.generate(manager.pipeline(spec), imagegen.settings_for(spec, IMAGE_PROMPT, seed=7,
                                                                             tiny=True)).image.convert("RGB")
    equal = got is not None and got.size == expected.size and list(got.getdata()) == list(expected.getdata())
    image_row.measured = "no image came back" if got is None else \
        f"{got.size[0]}×{got.size[1]}, {'identical pixels' if equal else 'DIFFERENT pixels'}"
    image_row.ok = equal
    manager.clear()
