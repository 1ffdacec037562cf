"""LLM roles served by a real OpenAI-compatible server (`transformers serve` on the tiny checkpoint)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import pytest

from engine.chat.compare import compare_stream
from engine.errors import UserError
from engine.generation import SamplingParams, generate_many
from engine.serving.manager import ModelManager
from tests.conftest import free_port, start_app


def _serve(model_path, port):
    exe = shutil.which("transformers") or os.path.join(os.path.dirname(sys.executable), "transformers")
    proc = subprocess.Popen([exe, "serve", str(model_path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except Exception:  # noqa: BLE001
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    proc.kill()
    pytest.fail("transformers serve did not start")


@pytest.fixture(scope="module")
def server(tiny_llms):
    port = free_port()
    path = tiny_llms["tiny/mistral-instruct"]
    proc = _serve(path, port)
    yield f"http://127.0.0.1:{port}/v1", str(path)
    proc.terminate()
    proc.wait(timeout=20)


def remote_specs(manager, url, name):
    base = replace(manager.catalog.spec("base_llm"), endpoint=url, endpoint_model=name)
    instr = replace(manager.catalog.spec("instruct_llm"), endpoint=url, endpoint_model=name)
    return base, instr


def test_compare_through_the_server_with_capabilities_reported(manager, server):
    url, name = server
    fresh = ModelManager(manager.catalog, manager.hardware)
    base, instr = remote_specs(manager, url, name)
    states = list(compare_stream(fresh, base, instr, "Qu'est-ce qu'un consultant ?",
                                 SamplingParams(max_new_tokens=6, greedy=True), top_probs=5))
    b, i = states[-1]
    assert b.update.error is None and i.update.error is None
    assert b.update.text and i.update.text and b.update.stop_reason == "length"
    assert "[INST]" in i.prompt.text  # rendered locally with the model's tokenizer
    assert i.prompt.note == "server_template_local_render" and b.prompt.note == "server_raw"
    assert len(states) > 3  # streamed
    handle = fresh.llm(instr)
    assert handle.caps.logprobs is False and not i.update.tokens  # reported, not faked


def test_self_consistency_falls_back_to_separate_requests(manager, server):
    url, name = server
    fresh = ModelManager(manager.catalog, manager.hardware)
    _, instr = remote_specs(manager, url, name)
    handle = fresh.llm(instr)
    prompt = handle.prepare_chat([{"role": "user", "content": "2 + 2 ?"}])
    outs = generate_many(handle, [prompt], SamplingParams(max_new_tokens=4, temperature=1.0, seed=1), n_per_prompt=3)
    assert len(outs) == 3 and handle.caps.n is False
    assert sorted(o.sample_index for o in outs) == [0, 1, 2]


def test_wrong_url_and_stopped_server_give_clear_messages(manager, tiny_llms):
    fresh = ModelManager(manager.catalog, manager.hardware)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    _, instr = remote_specs(manager, dead, "x")
    with pytest.raises(UserError) as err:
        fresh.llm(instr)
    assert err.value.key == "err.endpoint_unreachable" and dead in err.value.params["url"]
    # a server that goes away after the handle was made: the pane reports it, the other pane is unaffected
    port = free_port()
    proc = _serve(tiny_llms["tiny/mistral-instruct"], port)
    url = f"http://127.0.0.1:{port}/v1"
    base_local = manager.catalog.spec("base_llm")
    _, instr = remote_specs(manager, url, str(tiny_llms["tiny/mistral-instruct"]))
    fresh.llm(instr)
    proc.terminate()
    proc.wait(timeout=20)
    b, i = list(compare_stream(fresh, base_local, instr, "Bonjour", SamplingParams(max_new_tokens=5, greedy=True)))[-1]
    assert i.update.error is not None and i.update.error.key == "err.endpoint_unreachable"
    assert b.update.error is None and b.update.n_tokens == 5


def test_app_answers_compare_and_run_technique_through_the_server(server, tiny_dir):
    from gradio_client import Client

    url, name = server
    proc, app_url, log = start_app(tiny_dir, "--base-endpoint", url, "--base-endpoint-model", name,
                                   "--instruct-endpoint", url, "--instruct-endpoint-model", name)
    try:
        client = Client(app_url, verbose=False)
        result = client.predict("Bonjour", "", "tiny/mistral-base", "tiny/mistral-instruct", False, True,
                                5, 0.7, 0.95, 50, 1.0, True, 1, api_name="/compare")
        raw = result[-1]
        assert raw["instruct"]["tokens"] >= 1 and raw["instruct"]["error"] is None
        assert "no token probabilities" in result[7]  # the instruct pane says why nothing is coloured
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert "/run_technique" in api
        out = client.predict(api_name="/run_technique", **_technique_args(api["/run_technique"]))
        assert out is not None
        assert "GENAI_ENDPOINT_API_KEY" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _technique_args(endpoint: dict) -> dict:
    """Defaults for every parameter, a short budget of tokens (names are the tab's own)."""
    args = {}
    for p in endpoint["parameters"]:
        name = p["parameter_name"]
        if "token" in name:
            args[name] = 6
    return args
