"""ZeroGPU: the app under the real ``spaces`` wrappers, on CPU, with a stub of the device API.

The app process runs with the environment of a ZeroGPU Space, so every GPU call goes through
the package's own code: a forked worker per function, arguments and results pickled through
its queues, generators streamed, ``/schedule`` → ``/allow`` → ``/release`` on the device API
(here :class:`tests.zerogpu_stub.DeviceAPIStub`). Only ``spaces.zero.torch`` — CUDA patching,
which cannot import on a CPU build of torch — is replaced by no-ops. Each tab is driven through
``gradio_client``; results are checked against the same work done off-Space in this process.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

from engine import gpu_tasks
from engine.images import imagegen
from engine.models.catalog import ROLES, load_catalog
from engine.generation import SamplingParams
from engine.gpu_tasks import durations
from engine.models.hardware import GB, Hardware, detect, resolve_profile
from engine.serving.manager import ModelManager
from engine.runtime.stopping import BOARD, LinkedStop, StopSignal
from engine.runtime.zerogpu import Coalesced, streamed
from tests.conftest import ROOT, serve_app, stop_process
from tests.zerogpu_stub import BOOTSTRAP, FAKE_SPACES_TORCH, DeviceAPIStub, zerogpu_env

PROMPT = "Explique la photosynthèse."
# What a Space's proxy adds to each visitor's requests: spaces forwards it to /schedule, so that
# the GPU time counts against that visitor's quota (header.payload.signature, payload in base64).
VISITOR_TOKEN = "e30.eyJzdWIiOiAic3R1ZGVudCJ9.c2ln"


# ============================================================================ the pieces
def _watch(token, seen) -> None:  # runs in a forked child
    signal = StopSignal(token)
    deadline = time.monotonic() + 20
    while not signal.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    seen.value = int(signal.is_set())


def test_stop_reaches_a_forked_worker_where_a_threading_event_does_not():
    ctx = multiprocessing.get_context("fork")
    token = BOARD.begin(("session", "test"))
    event = threading.Event()
    try:
        seen = ctx.Value("i", -1)
        child = ctx.Process(target=_watch, args=(token, seen))
        child.start()
        time.sleep(0.2)
        event.set()  # what the tabs did before: the child's copy of the event never changes
        assert BOARD.stop(("session", "test")) == 1
        child.join(20)
        assert seen.value == 1
        seen_event = ctx.Value("i", -1)

        def wait_event(flag) -> None:
            flag.value = int(event.wait(0.5))

        event.clear()
        child = ctx.Process(target=wait_event, args=(seen_event,))
        child.start()
        event.set()
        child.join(20)
        assert seen_event.value == 0  # a threading.Event set in the parent is never seen by the child
    finally:
        BOARD.end(("session", "test"), token)
    assert not token.requested()  # a freed slot no longer reads as "stop"


def test_signal_deadline_and_linked_stops():
    signal = StopSignal(deadline=time.monotonic() - 1)
    assert signal.is_set() and signal.timed_out
    parent = threading.Event()
    child = LinkedStop(parent)
    child.set()  # the engine ends one request: the run goes on
    assert child.is_set() and not parent.is_set()
    parent.set()
    assert LinkedStop(parent).is_set()


class _State(Coalesced):
    def __init__(self, n: int) -> None:
        self.n = n


def test_streamed_sends_the_latest_state_keeps_order_and_closes_the_body():
    def body(emit):
        for i in range(200):
            yield _State(i)
        yield "image"  # not coalesced: never dropped, never overtaken
        yield _State(200)

    out = list(streamed(body, on_close=lambda: None, interval=0.05))
    states = [e.n for e in out if isinstance(e, _State)]
    assert "image" in out and states[-1] == 200 and len(states) < 50
    assert states[:out.index("image")][-1] == 199  # the state before the image was flushed first
    stop, closed = threading.Event(), []

    def endless(emit):
        while not stop.is_set():
            emit(_State(0))
            time.sleep(0.01)
            yield "tick"

    gen = streamed(endless, on_close=lambda: (closed.append(True), stop.set()))
    next(gen)
    gen.close()  # what spaces does when the visitor's stream ends: the body stops, the thread is joined
    assert closed == [True]


def test_on_zerogpu_a_call_stops_itself_before_its_duration_ends(monkeypatch):
    from engine.gpu_tasks import tasks
    from engine.runtime.stopping import NEVER

    monkeypatch.setenv("SPACE_ID", "u/s")
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(tasks, "_served", 0)  # a fresh worker: its set-up took part of the duration
    monkeypatch.setattr(tasks, "_forked_at", None)  # not forked: OVERHEAD_S is assumed for that set-up

    def body(job, signal, emit):
        while not signal.is_set():
            time.sleep(0.01)
        yield "partial result"

    started = time.monotonic()
    events = list(tasks._run(body, None, NEVER, durations.OVERHEAD_S + 0.3))
    assert events == ["partial result", gpu_tasks.TimeLimit(durations.OVERHEAD_S + 0.3)]
    assert time.monotonic() - started < 5
    started = time.monotonic()  # the worker's next call: only the margin is kept
    assert list(tasks._run(body, None, NEVER, durations.MARGIN_S + 0.3))[-1] == gpu_tasks.TimeLimit(
        durations.MARGIN_S + 0.3)


def test_a_fresh_workers_duration_counts_from_its_fork(monkeypatch):
    """The duration runs from the GPU's allocation, just before ``spaces`` forks the worker: a fresh
    worker counts the set-up that really happened since its fork, not an assumed OVERHEAD_S (on a
    loaded CPU that left a tiny job a second or two)."""
    from engine.gpu_tasks import tasks

    monkeypatch.setenv("SPACE_ID", "u/s")
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    forked = time.monotonic() - 4.0  # the set-up took 4 s
    monkeypatch.setattr(tasks, "_served", 0)
    monkeypatch.setattr(tasks, "_forked_at", forked)
    assert tasks._deadline(None, 20.0) == pytest.approx(forked + 20.0 - durations.MARGIN_S)
    before = time.monotonic()  # its next call: from the call itself
    assert tasks._deadline(None, 20.0) - before == pytest.approx(20.0 - durations.MARGIN_S, abs=0.5)
    read, write = os.pipe()  # a real fork: the child starts again from 0 and knows when it was forked
    pid = os.fork()
    if pid == 0:
        os.write(write, f"{tasks._served} {tasks._forked_at}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    served, at = os.read(read, 100).decode().split()
    assert int(served) == 0 and before <= float(at) <= time.monotonic()


def test_gpu_calls_carry_only_plain_data(manager):
    from engine.techniques import tasks as task_sets
    from engine.techniques.records import Settings

    spec = manager.catalog.spec("instruct_llm")
    image = Image.new("RGB", (8, 8), "red")
    items = [
        gpu_tasks.CompareJob(manager.catalog.spec("base_llm"), spec, PROMPT, SamplingParams(greedy=True)),
        gpu_tasks.TechniqueJob(spec, "zero_shot", task_sets.get_task("arith-09", "fr"), Settings()),
        gpu_tasks.ImagesJob((gpu_tasks.ImageItem(manager.catalog.spec("flux_schnell"),
                                                 imagegen.settings_for(manager.catalog.spec("flux_schnell"), "a cat")),)),
        gpu_tasks.Progress(0.5, key="img.progress", params={"step": 1}), gpu_tasks.Skipped(1, "flux_dev", "err.gated"),
    ]
    for item in items:
        assert pickle.loads(pickle.dumps(item)) == item
    done = pickle.loads(pickle.dumps(gpu_tasks.ImageDone(0, image, items[2].items[0].settings, 1.0)))
    assert done.image.getpixel((0, 0)) == (255, 0, 0) and done.settings == items[2].items[0].settings


def test_off_space_the_gpu_functions_are_the_plain_functions():
    assert not hasattr(gpu_tasks.compare, "zerogpu")  # spaces marks the functions it wraps
    assert gpu_tasks.compare.__module__ == "engine.gpu_tasks.tasks"


def test_durations_follow_the_request():
    catalog = load_catalog("zerogpu", env={})
    base, instr = catalog.spec("base_llm"), catalog.spec("instruct_llm")
    resident = {base.key, instr.key, catalog.spec("sdxl_turbo").key}
    is_resident = lambda spec: spec.key in resident  # noqa: E731

    def compare(tokens: int, base_spec=base) -> float:
        return durations.compare(gpu_tasks.CompareJob(base_spec, instr, "x", SamplingParams(max_new_tokens=tokens)),
                                 is_resident)

    assert compare(32) < compare(256) < compare(2048) <= durations.MAX_S
    assert compare(256, base.with_id("mistralai/Mistral-7B-v0.3")) == compare(256) + durations.LOAD_LLM_S

    def images(*roles: str) -> float:
        items = tuple(gpu_tasks.ImageItem(catalog.spec(r), imagegen.settings_for(catalog.spec(r), "x")) for r in roles)
        return durations.images(gpu_tasks.ImagesJob(items), is_resident)

    from engine.techniques import tasks as task_sets
    from engine.techniques.records import Settings
    from engine.techniques.techniques import TECHNIQUES

    problems = tuple(task_sets.benchmark_tasks("en", ["number"], 20))
    big = gpu_tasks.BenchmarkJob(instr, TECHNIQUES, problems, Settings())
    assert durations.benchmark(big, is_resident) == durations.MAX_S  # capped: the call stops itself in time
    assert images("sdxl_turbo") < 20 < images("flux_schnell")  # FLUX loads on demand, SDXL Turbo is resident
    assert images("flux_schnell", "flux_schnell") < 2 * images("flux_schnell")  # loaded once per call


def test_zerogpu_profile_residents_fit_the_slice_with_room_for_the_rest():
    from engine.models.preload import SLICE_BYTES, plan, resident_bytes

    hw = Hardware("x86_64", 2, 64 * GB, gpu_name="ZeroGPU (H200 slice)", gpu_bytes=70 * GB, bf16=True,
                  space_id="u/s", zerogpu=True)
    catalog = load_catalog("zerogpu", env={})
    rows = plan(ModelManager(catalog, hw), catalog)
    assert {r.role for r in rows if r.resident} == {"base_llm", "instruct_llm", "quant_subject", "sdxl_turbo"}
    assert {r.role for r in rows} == set(ROLES) and all(r.estimate_bytes for r in rows)
    largest_on_demand = max(r.estimate_bytes for r in rows if not r.resident)
    assert resident_bytes(rows) + largest_on_demand < SLICE_BYTES, "the biggest on-demand model must still fit"


def test_on_demand_downloads_take_what_from_pretrained_reads_and_skip_duplicates():
    from huggingface_hub.utils import filter_repo_objects

    from engine.models.preload import download_patterns, prefetch

    catalog = load_catalog("zerogpu", env={})

    def kept(role: str, files: list[str]) -> set[str]:
        return set(filter_repo_objects(files, allow_patterns=download_patterns(catalog.spec(role))))

    flux = ["model_index.json", "flux1-schnell.safetensors", "ae.safetensors", "transformer/config.json",
            "transformer/diffusion_pytorch_model-00001-of-00003.safetensors", "tokenizer_2/spiece.model",
            "tokenizer/vocab.json", "tokenizer/merges.txt", "README.md"]
    assert kept("flux_schnell", flux) == set(flux) - {"flux1-schnell.safetensors", "ae.safetensors", "README.md"}
    sdxl = ["unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
            "sd_xl_base_1.0.safetensors", "unet/config.json"]
    assert kept("sdxl_base", sdxl) == {"unet/diffusion_pytorch_model.fp16.safetensors", "unet/config.json"}
    llm = ["model-00001-of-00002.safetensors", "pytorch_model-00001-of-00002.bin", "tokenizer.model", "config.json"]
    assert kept("base_llm", llm) == {"model-00001-of-00002.safetensors", "tokenizer.model", "config.json"}
    assert prefetch(load_catalog("tiny", env={}), has_token=True) is None  # nothing to download for tiny models


def test_on_a_zerogpu_space_a_cpu_torch_stays_on_cpu_and_nothing_compiles(monkeypatch):
    from engine.models import fastpath

    env = {"SPACE_ID": "u/s", "SPACES_ZERO_GPU": "true"}
    hw = detect(env)
    assert hw.zerogpu and hw.device == "cpu" and resolve_profile("auto", hw) == "zerogpu"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GENAI_FAST_PATH", "compile")
    assert fastpath.mode("cuda") == "off"


def test_pinned_models_are_never_evicted(manager):
    base, instr = manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm")
    quant = manager.catalog.spec("quant_subject").with_precision("int8")
    room = manager.estimate_bytes(base) + manager.estimate_bytes(instr)  # both fit, nothing more
    small = ModelManager(manager.catalog, manager.hardware, budget_bytes=int(room * 1.05), wait_s=2)
    small._get(base, object)  # stand-ins for the models: only the cache's bookkeeping is under test
    small.pin(base)
    small._get(instr, object)
    assert small.release(base) is False  # a pinned model stays, even when asked to go
    assert small.is_loaded(base) and small.is_loaded(instr)
    small._get(quant, object)  # needs room: the unpinned, unused instruct model goes, never the pinned one
    assert not small.is_loaded(instr) and small.is_loaded(base) and small.is_loaded(quant)


# ============================================================================ the app on "ZeroGPU"
@pytest.fixture(scope="module")
def space(tiny_llms, tiny_dir, tmp_path_factory):
    """The app started like on a ZeroGPU Space (real `spaces` wrappers), and the device API stub."""
    stub = DeviceAPIStub().start()
    folder = tmp_path_factory.mktemp("zerogpu")
    log = folder / "app.log"
    env = dict(GENAI_TINY_DIR=str(tiny_dir), **zerogpu_env(stub, folder),
               # a long sweep to stop, and an id outside the catalog to fail in the worker (tests of the
               # fork and the stop, not of the limits, which tests/test_safety.py covers)
               GENAI_LIMIT_SWEEP_CELLS="64", GENAI_LIMIT_SWEEP_VALUES="64", GENAI_ALLOW_CUSTOM_MODELS="1")
    # its own process group (bench/serve.py): the workers `spaces` forks outlive a terminated app
    # (~0.7 GB each) otherwise
    try:
        proc, url = serve_app(command=[sys.executable, "-c", BOOTSTRAP], env=env, log=log, timeout=180)
    except Exception:
        stub.close()
        raise
    from gradio_client import Client

    yield Client(url, verbose=False, headers={"X-IP-Token": VISITOR_TOKEN}), stub, log
    stop_process(proc)
    stub.close()


def one_gpu_call(stub: DeviceAPIStub, mark: int) -> list:
    calls = stub.since(mark)
    paths = [c.path for c in calls]
    assert paths.count("/schedule") == 1 and paths.count("/release") == 1, paths
    assert paths.index("/schedule") < paths.index("/release")
    schedule = calls[paths.index("/schedule")]
    assert schedule.params.get("token") == VISITOR_TOKEN  # the visitor's quota, not the Space's
    return calls


def test_startup_reports_and_about_shows_what_is_resident(space):
    client, stub, _ = space
    assert stub.count("/startup-report") == 1
    overview, _table = client.predict(api_name="/about")
    resident = overview.split("**Resident")[1].split("**Loaded on demand")[0]
    assert "tiny/mistral-base" in resident and "tiny/sdxl" in resident and "tiny/flux" not in resident


def test_compare_streams_the_same_greedy_tokens_as_off_space(space, manager):
    from engine.chat.compare import compare_stream

    client, stub, _ = space
    mark = len(stub.calls)
    job = client.submit(PROMPT, greedy=True, max_new_tokens=24, api_name="/compare")
    result = job.result()
    calls = one_gpu_call(stub, mark)
    assert len(job.outputs()) > 1  # streamed: several updates before the last
    raw = result[-1]
    base, instr = list(compare_stream(manager, manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm"),
                                      PROMPT, SamplingParams(max_new_tokens=24, greedy=True, seed=42)))[-1]
    assert raw["base"]["output"] == base.update.text and raw["instruct"]["output"] == instr.update.text
    assert raw["base"]["tokens"] == base.update.n_tokens
    requested = int(next(c for c in calls if c.path == "/schedule").params["durationSeconds"])
    short = client.submit(PROMPT, greedy=True, max_new_tokens=4, api_name="/compare")
    short.result()
    shorter = int([c for c in stub.calls if c.path == "/schedule"][-1].params["durationSeconds"])
    assert shorter < requested  # the duration follows the request


def test_a_source_comparison_runs_in_one_gpu_call_for_one_model(space, manager):
    """The passages are retrieved before the call; the worker gets them (pickled) and runs one model
    without then with them: one call, the same tokens as off-Space, a shorter duration requested."""
    from engine.chat.compare import compare_stream
    from engine.retrieval import make_plan, preset

    client, stub, _ = space
    source, question = preset("offices").text("fr"), "Qui est le Premier ministre ?"
    mark = len(stub.calls)
    raw = client.predict(question, greedy=True, max_new_tokens=64, source=source, source_mode="with_without",
                         api_name="/compare")[-1]
    calls = one_gpu_call(stub, mark)
    assert "François Bayrou" in raw["instruct"]["passages"][0]["text"] and "passages" not in raw["base"]
    plan = make_plan(source, question, "with_without", "instruct", 3, "en")
    specs = manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm")
    without, given = list(compare_stream(manager, *specs, question,
                                         SamplingParams(max_new_tokens=64, greedy=True, seed=42), source=plan))[-1]
    assert (raw["base"]["output"], raw["instruct"]["output"]) == (without.update.text, given.update.text)
    with_source = int(next(c for c in calls if c.path == "/schedule").params["durationSeconds"])
    mark = len(stub.calls)
    client.predict(question, greedy=True, max_new_tokens=64, api_name="/compare")
    two_models = int([c for c in stub.since(mark) if c.path == "/schedule"][-1].params["durationSeconds"])
    assert with_source < two_models  # two rows of one model, not two models


def test_stop_ends_the_worker_call_and_frees_the_gpu(space):
    client, stub, _ = space
    mark = len(stub.calls)
    job = client.submit("Raconte une longue histoire.", greedy=True, max_new_tokens=1900, api_name="/compare")
    deadline = time.monotonic() + 60
    while len(job.outputs()) < 2 and not job.done() and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until tokens stream
    client.predict(api_name="/stop_compare")
    raw = job.result()[-1]
    one_gpu_call(stub, mark)  # released: the worker's call ended
    assert raw["base"]["stop_reason"] == raw["instruct"]["stop_reason"] == "stopped"
    assert raw["base"]["tokens"] < 1900
    mark = len(stub.calls)
    client.predict(PROMPT, greedy=True, max_new_tokens=4, api_name="/compare")  # the worker serves the next call
    assert "/allow" not in [c.path for c in one_gpu_call(stub, mark)]


def wait_for_progress(job, what: str) -> None:
    """Until the running call has reported progress (its work has started in the worker)."""
    deadline = time.monotonic() + 90
    while not job.status().progress_data:
        assert not job.done(), f"{what} finished before it could be stopped"
        assert time.monotonic() < deadline, f"{what} reported no progress"
        time.sleep(0.02)


STOPPABLE = {  # endpoint, arguments of a long run, its Stop endpoint, how much a full run makes
    "technique": ("/run_technique", dict(technique="self_consistency", n_samples=4, max_new_tokens=1200),
                  "/stop_technique"),
    "benchmark": ("/benchmark_techniques", dict(techniques=["zero_shot", "few_shot"], n_problems=12,
                                                max_new_tokens=1200), "/stop_benchmark"),
    "quantization": ("/quantize_compare", dict(model="tiny/mistral-instruct", precisions=["fp32", "int8", "nf4"],
                                               max_new_tokens=512), "/stop_quantize_compare"),
    "images": ("/image_grid_sweep", dict(prompt="a snail", model="flux_schnell", x_param="seed",
                                         x_values=", ".join(str(i) for i in range(60)), y_param="steps", y_values="2"),
               "/stop_images"),
}


@pytest.mark.parametrize("part", list(STOPPABLE))
def test_every_stop_button_reaches_the_worker(space, part):
    client, stub, _ = space
    api, kwargs, stop_api = STOPPABLE[part]
    mark = len(stub.calls)
    job = client.submit(api_name=api, **kwargs)
    wait_for_progress(job, api)
    client.predict(api_name=stop_api)
    result = job.result()
    one_gpu_call(stub, mark)
    if part == "technique":
        assert result[-1]["stopped"] and not result[-1]["finished"]
    elif part == "benchmark":
        assert result[0].startswith("⏹"), result[0]  # "Stopped after k of n runs"
    elif part == "quantization":
        assert len(result[1]["data"]) < 3
    else:
        assert 0 < len(result[1]) < 60


def test_techniques_run_and_benchmark(space):
    client, stub, _ = space
    mark = len(stub.calls)
    _md, _vote, _plot, calls_html, raw = client.predict(technique="self_consistency", language="en", problem="arith-04",
                                                        n_samples=3, max_new_tokens=8, api_name="/run_technique")
    one_gpu_call(stub, mark)
    assert raw["finished"] and len(raw["calls"]) == 3 and calls_html.count("tech-call") >= 3
    mark = len(stub.calls)
    status, table, _acc, _cost, files = client.predict(techniques=["zero_shot", "self_consistency"], n_problems=2,
                                                       n_samples=2, max_new_tokens=6, api_name="/benchmark_techniques")
    one_gpu_call(stub, mark)
    assert len(table["data"]) == 2 and len(files) == 2


def test_quantization_live_comparison(space):
    client, stub, _ = space
    mark = len(stub.calls)
    status, table, *_charts, html, csv_path = client.predict(model="tiny/mistral-instruct", precisions=["fp32", "int8"],
                                                             max_new_tokens=6, api_name="/quantize_compare")
    one_gpu_call(stub, mark)
    from tabs.quantization_live import column_name
    from ui.i18n import t

    status_col = table["headers"].index(column_name("status", "en"))  # the table shows translated headers
    rows = {r[0]: r for r in table["data"]}
    ok = t("ux.quant.status_ok", "en")
    assert set(rows) == {"fp32", "int8"} and all(r[status_col] == ok for r in rows.values()), table["data"]
    assert csv_path


def test_images_and_grid_are_the_off_space_images(space, manager):
    client, stub, _ = space
    mark = len(stub.calls)
    grid, gallery = client.predict("a cat holding a sign", "", "", ["sdxl_turbo", "flux_schnell"], 7,
                                   api_name="/generate_images")
    one_gpu_call(stub, mark)
    assert len(gallery) == 2 and Image.open(grid).size[0] > 64
    spec = manager.catalog.spec("flux_schnell")  # on demand: loaded inside the worker
    expected = imagegen.generate(manager.pipeline(spec), imagegen.settings_for(spec, "a cat holding a sign", seed=7,
                                                                             tiny=True)).image
    with Image.open(gallery[1]["image"]) as got:
        assert list(got.convert("RGB").getdata()) == list(expected.convert("RGB").getdata())
    mark = len(stub.calls)
    grid, gallery = client.predict("a snail", "flux_schnell", "seed", "1, 2", "steps", "1", 0, "",
                                   api_name="/image_grid_sweep")
    one_gpu_call(stub, mark)
    assert len(gallery) == 2


def test_an_error_in_the_worker_reaches_the_visitor_translated(space):
    from gradio_client.exceptions import AppError

    client, stub, _ = space
    mark = len(stub.calls)
    # neither model can load: the call fails (one bad role alone only fails its pane: tests/test_safety.py)
    with pytest.raises(AppError, match="nobody/nothing.*huggingface-cli download"):
        client.predict(PROMPT, base_model="nobody/nothing", instruct_model="nobody/else", max_new_tokens=4,
                       api_name="/compare")
    assert [c.params.get("fail") for c in one_gpu_call(stub, mark) if c.path == "/release"] == ["false"]


def test_a_follow_up_carries_the_conversation_into_the_worker(space, manager):
    from gradio_client.exceptions import AppError

    from engine.chat.compare import compare_stream
    from engine.chat.conversation import parse_history

    client, stub, _ = space
    follow = "Donne un exemple."
    first = client.predict(PROMPT, greedy=True, max_new_tokens=8, api_name="/compare")[-1]
    mark = len(stub.calls)
    raw = client.predict(follow, greedy=True, max_new_tokens=8, history=first["conversation"], api_name="/compare")[-1]
    one_gpu_call(stub, mark)  # the turn is one GPU call, its history pickled into the worker with the job
    history = parse_history(first["conversation"])
    job = gpu_tasks.CompareJob(manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm"), follow,
                               SamplingParams(greedy=True), history=history)
    assert pickle.loads(pickle.dumps(job)) == job
    base, instr = list(compare_stream(manager, manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm"),
                                      follow, SamplingParams(max_new_tokens=8, greedy=True, seed=42),
                                      history=history))[-1]
    assert raw["instruct"]["input"] == instr.prompt.text and raw["instruct"]["input"].count("[INST]") == 2
    assert raw["base"]["input"] == base.prompt.text
    assert (raw["base"]["output"], raw["instruct"]["output"]) == (base.update.text, instr.update.text)
    assert [turn["user"] for turn in raw["conversation"]] == [PROMPT, follow]
    mark = len(stub.calls)
    with pytest.raises(AppError, match="tiny/mistral-base.*new conversation"):  # past the context: said in the worker
        client.predict(follow, max_new_tokens=48, history=[{"user": "maison " * 800}] * 3, api_name="/compare")
    assert [c.params.get("fail") for c in one_gpu_call(stub, mark) if c.path == "/release"] == ["false"]


# ============================================================================ an aborted stream (issue #23)
ABORTED_STREAM = '''
import dataclasses, json, sys
sys.path.insert(0, ".")
import spaces  # the real wrappers: a forked worker per function, reused by the next call
from engine import generation, gpu_tasks
from engine.models import leases
from engine.chat import compare
from engine.models.catalog import load_catalog
from engine.errors import UserError
from engine.generation import SamplingParams
from engine.models.hardware import detect
from engine.serving.manager import ModelManager

manager = ModelManager(load_catalog("tiny", env={}), detect())
generation.set_inline(True)  # as app.py does on ZeroGPU
gpu_tasks.bind(manager)
generation.set_memory(manager)
original = compare.compare_stream


def compare_stream(manager, base, instruct, prompt, params, **kw):  # inherited by the worker at its fork
    if prompt == "PROBE":  # what the worker still holds, reported as the call's error
        held = {"leases": sum(sum(c.values()) for c in leases._holds.values()), "reserved": sorted(manager._reserved)}
        raise UserError("err.unexpected", detail=json.dumps(held))
    tokens = 0
    for panes in original(manager, base, instruct, prompt, params, **kw):
        yield panes
        tokens += sum(p.update.n_tokens for p in panes)
        if tokens >= 4:
            raise RuntimeError("injected: the stream's consumer failed")


compare.compare_stream = compare_stream
job = gpu_tasks.CompareJob(manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm"), "Raconte.",
                           SamplingParams(max_new_tokens=400, greedy=True))
for prompt in ("Raconte.", "PROBE"):
    try:
        list(gpu_tasks.call(gpu_tasks.compare, dataclasses.replace(job, prompt=prompt), ("student", "compare")))
    except UserError as err:
        print(prompt, "->", err.key, err.params.get("detail", ""), flush=True)
'''


def test_an_aborted_stream_gives_back_its_leases_in_the_worker(tiny_llms, tiny_dir, tmp_path):
    """Under the real ``spaces`` wrappers: a comparison whose stream is aborted by an exception in
    the worker ends as a message, and the worker (reused by the next call) holds nothing of it: no
    model lease, no KV cache reservation. Before, the requests only had their stop set, nobody drove
    the inline loop again, and their leases stayed: those models could never be evicted there."""
    stub = DeviceAPIStub().start()
    try:
        env = dict(os.environ, GENAI_TINY_DIR=str(tiny_dir), HF_HUB_OFFLINE="1", **zerogpu_env(stub, tmp_path))
        done = subprocess.run([sys.executable, "-c", FAKE_SPACES_TORCH + ABORTED_STREAM], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
    finally:
        stub.close()
    lines = [ln for ln in done.stdout.splitlines() if "->" in ln]
    assert len(lines) == 2, done.stdout[-2000:] + done.stderr[-4000:]
    assert "injected: the stream's consumer failed" in lines[0]
    assert lines[1] == 'PROBE -> err.unexpected {"leases": 0, "reserved": []}', lines[1]
    assert stub.count("/schedule") == 2 and stub.count("/release") == 2
