"""Issue #17, per tab, through the real functions and the running app: the live quantization
comparison (progress, Stop, queue, warm-up, headers, language), the bits slider, the image
previews, grids and TD targets, the techniques' settings and benchmark CSV, the planner's context."""
from __future__ import annotations

import csv
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from PIL import Image

from engine.images import grid as image_grid
from engine.images import png as image_png
from engine.images import preview as image_preview
from engine.images import imagegen
from engine.errors import UserError
from engine.quantization import live, live_runs, planner, results, warmup
from tests.conftest import ROOT

PROMPT = "Why do fewer bits per weight save memory?"
LONG = 180  # s: generous upper bounds on waits for real work (a loaded 2-core machine); never a fixed sleep


def wait_for(condition, timeout: float = LONG, poll: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(poll)
    raise AssertionError("condition not reached")


# ============================================================================ 1. live comparison
def test_live_progress_only_moves_forward_per_precision(manager):
    spec = manager.catalog.spec("quant_subject")
    seen: list[tuple[float, str]] = []
    rows = live.run_comparison(manager, spec, ["int8", "fp32"], PROMPT, max_new_tokens=3,
                               progress=lambda frac, text: seen.append((frac, text)))
    assert [r.status for r in rows] == ["ok", "ok"]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)  # it used to fall back (66.7% → 60%)
    texts = [text for _, text in seen]
    for i, label in ((1, "fp32"), (2, "LLM.int8")):  # precision i of n, then its phases in order
        phases = [text.rsplit(": ", 1)[1] for text in texts if text.startswith(f"{label} ({i}/2)")]
        order = [p for p in ("load", "generate", "perplexity", "done") if p in phases]
        assert order == ["load", "generate", "perplexity", "done"]
        assert [phases.index(p) for p in order] == sorted(phases.index(p) for p in order)


def test_stop_answers_at_once_and_keeps_the_rows_measured(manager):
    spec = manager.catalog.spec("quant_subject")
    run = live_runs.LiveRun(live_runs.Gate(lambda: manager.budget), manager, spec, ["fp32", "int8", "nf4"], PROMPT,
                            {"max_new_tokens": 3}).start()
    wait_for(lambda: len(run.snapshot().rows) == 1)
    began = time.perf_counter()
    run.stop()
    snap = run.snapshot()
    assert time.perf_counter() - began < 1.0
    assert snap.state == "stopped" and [r.precision for r in snap.rows] == ["fp32"]
    wait_for(lambda: run.gate.running() == 0)  # the worker gives its place back at its next token or phase
    assert [r.precision for r in run.snapshot().rows] == ["fp32"]  # the precision in flight was dropped


def test_gate_admits_by_memory_in_arrival_order():
    budget = {"bytes": 10}
    gate = live_runs.Gate(lambda: budget["bytes"], max_running=3)
    a, b, c = gate.enter(6), gate.enter(6), gate.enter(1)
    assert a.admitted and (gate.position(b), gate.position(c)) == (1, 2)  # c fits but does not overtake b
    gate.leave(a)
    assert b.admitted and c.admitted and gate.running() == 2  # 6 + 1 fit together
    big = gate.enter(50)
    assert gate.position(big) == 1
    gate.leave(b)
    gate.leave(c)
    assert big.admitted  # alone, a comparison always starts (what cannot fit is skipped variant by variant)
    d, e = gate.enter(1), gate.enter(1)
    gate.leave(big)
    f = gate.enter(1)
    assert d.admitted and e.admitted and f.admitted and gate.enter(1).admitted is False  # at most 3 at once


def test_a_waiting_comparison_shows_its_place_in_the_queue(manager):
    from tabs.quantization_live import live_status

    spec = manager.catalog.spec("quant_subject")
    gate = live_runs.Gate(lambda: 1, max_running=4)  # room for one comparison at a time
    first = live_runs.LiveRun(gate, manager, spec, ["fp32"], PROMPT, {"max_new_tokens": 2}, need=1).start()
    second = live_runs.LiveRun(gate, manager, spec, ["fp32"], PROMPT, {"max_new_tokens": 2}, need=1).start()
    try:
        snap = second.snapshot()
        assert snap.state == "queued" and snap.position == 1
        assert "1 comparison ahead" in live_status(snap, 1, "en")
        assert "1 comparaison avant" in live_status(snap, 1, "fr")
        wait_for(lambda: second.snapshot().state in ("running", "done"))
    finally:
        first.stop()
        second.stop()
        wait_for(lambda: gate.running() == 0 and gate.waiting() == 0)


def test_variants_whose_kernels_are_warming_up_wait_their_turn(manager, monkeypatch):
    """bitsandbytes still "warming up": quanto is measured first, int8 waits in a kernels phase,
    then runs once the warm-up is done; the table keeps its order."""
    spec = manager.catalog.spec("quant_subject")
    assert warmup.wait("optimum-quanto", manager.device).state == "done"
    pending = warmup.Step("bitsandbytes", manager.device, state="running")
    monkeypatch.setitem(warmup._steps, ("bitsandbytes", manager.device), pending)
    stages: list[live.Stage] = []
    result: list = []
    worker = threading.Thread(target=lambda: result.append(live.run_comparison(
        manager, spec, ["int8", "quanto-int4"], PROMPT, max_new_tokens=2, on_stage=stages.append)))
    worker.start()
    wait_for(lambda: any(s.phase == "kernels" for s in stages))
    first_measured = [s.variant for s in stages if s.phase == "done"]
    assert first_measured == ["quanto-int4"]
    waiting = next(s for s in stages if s.phase == "kernels")
    assert (waiting.variant, waiting.index, waiting.total) == ("int8", 2, 2)
    pending.state = "done"
    pending.done.set()
    worker.join(LONG)
    assert [r.precision for r in result[0]] == ["int8", "quanto-int4"] and {r.status for r in result[0]} == {"ok"}


def test_warmup_prepares_each_library_once_in_the_background():
    began = time.perf_counter()
    steps = warmup.start(["optimum-quanto", "dtype", "hqq"], "cpu")
    assert time.perf_counter() - began < 0.5  # start-up does not wait for it
    assert [s.method for s in steps] == ["optimum-quanto", "hqq"]
    for step in steps:
        assert warmup.wait(step.method, "cpu").state == "done", step.error
    assert warmup.ensure("hqq", "cpu") is steps[1] and warmup.ready("dtype", "cpu")


def test_a_build_lock_left_by_a_killed_process_does_not_block_for_ever(tmp_path):
    """torch waits for an extension's build lock to disappear: one left by a process stopped while
    building made every later quanto row wait on "kernels" for good. The warm-up builds under an
    flock the kernel releases when its process dies: whoever gets it next removes torch's lock."""
    import signal
    import subprocess
    import sys

    builder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path\n"
         "from engine.quantization import warmup\n"
         "with warmup.build_guard([sys.argv[1]]):\n"
         "    (Path(sys.argv[1]) / 'lock').touch(); print('building', flush=True); time.sleep(120)",
         str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout.readline().strip() == "building"
        waited = threading.Event()

        def second_process_of_the_app() -> None:
            with warmup.build_guard([tmp_path]) as removed:
                waited.set()
                assert removed == [tmp_path / "lock"]

        other = threading.Thread(target=second_process_of_the_app)
        other.start()
        time.sleep(0.5)
        assert not waited.is_set() and (tmp_path / "lock").exists()  # a live builder: wait, keep its lock
        builder.send_signal(signal.SIGKILL)  # dies mid-build: torch's lock stays, the flock goes
        other.join(30)
        assert waited.is_set() and not (tmp_path / "lock").exists()
    finally:
        builder.kill()
        builder.wait()
    assert warmup._quanto_build_dirs()  # where optimum-quanto builds: the folders the warm-up guards


def test_concurrent_comparisons_overlap_and_speak_their_language(app_url):
    """Two students at once (one in French): the second one's rows do not wait for the first one."""
    from gradio_client import Client

    def compare(lang: str):
        client = Client(app_url, verbose=False, headers={"Accept-Language": lang})
        job = client.submit(model="tiny/mistral-instruct", precisions=["fp32", "int8"], prompt=PROMPT,
                            max_new_tokens=32, api_name="/quantize_compare")  # long enough to overlap
        started = None
        for out in job:
            started = started or time.monotonic()
        return started, time.monotonic(), job.outputs()[-1]

    with ThreadPoolExecutor(2) as pool:
        (a0, a1, a_out), (b0, b1, b_out) = pool.map(compare, ["en-US", "fr-FR"])
    assert a0 < b1 and b0 < a1  # both were measuring at the same time
    assert "Memory (MB)" in a_out[1]["headers"] and "Mémoire (Mo)" in b_out[1]["headers"]
    assert all("memory_mb" not in h for h in (a_out[1]["headers"], b_out[1]["headers"]))
    written = results.read_csv(b_out[-1])
    assert list(written.columns) == results.COLUMNS and list(written["precision"]) == ["fp32", "int8"]


# ============================================================================ 2. bits slider
def test_bits_slider_follows_the_method():
    from tabs.quantization_weights import DEFAULT_METHOD, method_controls
    from engine.quantization import weights

    assert weights.METHODS[DEFAULT_METHOD].fixed_bits is None  # dragging 1 → 8 changes something
    bits, block = method_controls("nf4", 7, "en")
    assert bits["interactive"] is False and bits["value"] == 4 and "NF4" in bits["info"] and "4 bits" in bits["info"]
    assert block["interactive"] is True
    bits, block = method_controls("absmax", 7, "fr")
    assert bits["interactive"] is True and bits["value"] == 7
    assert block["interactive"] is False and "Sans effet" in block["info"]
    bits, _ = method_controls("Q8_0", 3, "en")
    assert bits["value"] == 8 and bits["interactive"] is False


def test_bits_change_the_default_methods_error(client):
    from tabs.quantization_weights import DEFAULT_METHOD

    summaries = [client.predict(source="synthetic", model="", layer="", method=DEFAULT_METHOD, bits=b, block_size="64",
                                outliers=8, api_name="/quantize_weights")[1] for b in (1, 8)]
    assert summaries[0] != summaries[1] and "8.250 bits" in summaries[1]


# ============================================================================ 3. images
def test_generation_streams_previews_then_the_image(manager):
    spec = manager.catalog.spec("flux_schnell")
    pipe = manager.pipeline(spec)
    settings = imagegen.settings_for(spec, "a red panda", seed=3, tiny=True)
    updates = list(imagegen.generate_stream(pipe, settings))
    assert [(u.step, u.preview is not None, u.result is not None) for u in updates] == [
        (1, True, False), (2, False, False), (2, False, True)]
    assert updates[0].preview.size == updates[-1].result.image.size == (64, 64)
    weights, bias = image_preview.latent_rgb_map(pipe)
    assert weights.shape == (pipe.vae.config.latent_channels, 3) and bias.shape == (3,)
    assert image_preview.preview_steps(1) == set() and image_preview.preview_steps(4) == {1, 2, 3}
    steps = image_preview.preview_steps(30)
    assert len(steps) <= image_preview.MAX_PREVIEWS and 30 not in steps
    stop = threading.Event()
    stop.set()
    last = list(imagegen.generate_stream(pipe, settings, stop=stop))[-1]  # interrupted, still an image
    assert last.result is not None


def test_each_image_reaches_the_gallery_as_soon_as_it_is_done(client):
    job = client.submit("a cat holding a sign", "", "", ["sdxl_turbo", "flux_schnell"], 42, True, "sdxl_turbo", 1, 0,
                        512, api_name="/generate_images")
    galleries = [out[1] for out in job if isinstance(out[1], list)]
    captions = [[item["caption"] for item in g] for g in galleries]
    assert captions[0] == [captions[-1][0]]  # the first image, alone, before the second one is made
    preview = next(i for i, c in enumerate(captions) if any("preview" in x for x in c))
    assert preview < len(captions) - 1 and "FLUX.1 schnell · step 1/2" in captions[preview][-1]
    grid, gallery = job.outputs()[-1]
    assert len(gallery) == 2 and not any("preview" in g["caption"] for g in gallery)


def test_a_bad_sweep_value_is_a_message_not_an_error(client):
    from gradio_client.exceptions import ValidationError

    # refused at the boundary, before the event is queued: nothing runs, so the grid on screen stays
    with pytest.raises(ValidationError, match="x_values"):
        client.predict("a teapot", "flux_schnell", "seed", "1, x", "style", "a", 5, "", api_name="/image_grid_sweep")


def test_short_vs_detailed_prompts_are_written_out_in_full(client):
    short, detailed = "a lighthouse", ("A white-and-red striped lighthouse on a black basalt cliff at dusk, stormy sea "
                                       "crashing below, warm beam through light rain, oil painting, thick impasto, "
                                       "deep blue and amber palette, dramatic, highly detailed")
    heights = []
    for second in (detailed[:30], detailed):
        grid, _ = client.predict(short, second, "", ["sdxl_turbo"], 42, True, "sdxl_turbo", 1, 0, 512,
                                 api_name="/generate_images")
        with Image.open(grid) as img:
            heights.append(img.height)
    assert heights[1] > heights[0]  # the whole detailed prompt is written under the grid (it was cut at 40 characters)


def test_grid_labels_scale_and_keep_clear_of_each_other():
    images = [Image.new("RGB", (64, 64), "black") for _ in range(4)]

    def header_rows(cell: int) -> int:  # white pictures, no captions: the only ink is the column headers
        white = [Image.new("RGB", (64, 64), "white")] * 4
        out = image_grid.grid(white, [""] * 4, columns=2, cell=cell, column_labels=["guidance = 2", "guidance = 5"])
        dark = [y for y in range(out.height) if any(out.getpixel((x, y))[0] < 128 for x in range(0, out.width, 2))]
        return max(dark) - min(dark) + 1

    assert header_rows(512) > 1.6 * header_rows(256)  # type grows with the cell
    out = image_grid.grid(images, [""] * 4, columns=2, cell=200, row_labels=["a very long row label " * 3, "b"],
                        column_labels=["x = 1", "x = 2"])
    left = next(x for x in range(out.width) if out.getpixel((x, out.height // 4))[0] == 0 and
                out.getpixel((x + 5, out.height // 4))[0] == 0)  # where the first image starts
    assert left < 200  # a long row label wraps instead of pushing the images away
    header = out.crop((0, 0, left, 30))
    assert all(header.getpixel((x, y)) == (255, 255, 255) for x in range(header.width) for y in range(header.height))


def test_td_target_is_rendered_from_a_hidden_prompt(client):
    import json
    from pathlib import Path

    steps = {s["id"]: s for s in json.loads((Path(__file__).parent.parent / "assets" / "image_exercise.json")
                                            .read_text("utf-8"))["steps"]}
    for sid in ("step2a", "step2b", "step2c"):
        s = steps[sid]
        assert s["target_prompt_en"] not in s["goal_en"] and s["prompt_en"] != s["target_prompt_en"]
    target, models, seed = client.predict("step2b", api_name="/make_td_target")
    assert models == ["flux_schnell"] and seed == steps["step2b"]["target_seed"]
    with Image.open(target["value"]) as img:
        meta = json.loads(img.text[image_png.METADATA_KEY])
    assert meta["prompt"] == steps["step2b"]["target_prompt_en"] and meta["seed"] == seed
    again, _, _ = client.predict("step2b", api_name="/make_td_target")
    with Image.open(target["value"]) as a, Image.open(again["value"]) as b:
        assert list(a.getdata()) == list(b.getdata())  # a fixed seed: the same target for the whole class


# ============================================================================ 4. techniques
def test_each_technique_reads_exactly_the_settings_it_shows():
    from dataclasses import dataclass

    from engine.techniques import tasks as task_sets
    from engine.techniques.driver import run_technique
    from engine.techniques.records import Settings
    from engine.techniques.techniques import SETTINGS_USED, TECHNIQUES
    from tabs.techniques import SETTING_FIELDS
    from tests.test_techniques import ScriptedGenerator

    read: set[str] = set()

    @dataclass(frozen=True)
    class Recording(Settings):
        def __getattribute__(self, name):
            if name in SETTING_FIELDS:
                read.add(name)
            return super().__getattribute__(name)

    task = task_sets.benchmark_tasks("en", ["number"], 1)[0]
    for technique in TECHNIQUES:
        read.clear()
        settings = Recording(k_examples=2, shuffle=True, n_samples=2, rounds=1, k_thoughts=2, depth=1)
        list(run_technique(technique, task, ScriptedGenerator(lambda m, j: "The answer is 3."), settings))
        assert read == set(SETTINGS_USED[technique]), technique
    assert SETTINGS_USED["zero_shot"] == ()


def test_benchmark_runs_csv_has_the_model_outputs(tmp_path):
    from engine.techniques import tasks as task_sets
    from engine.techniques.benchmark import run_benchmark
    from engine.techniques.records import Settings
    from tests.test_techniques import ScriptedGenerator

    problems = task_sets.benchmark_tasks("en", ["number"], 2)
    gen = ScriptedGenerator(lambda msgs, j: f"Thinking, path {j}. The answer is {40 + j}.")
    result = run_benchmark(gen, ["zero_shot", "self_consistency", "self_refine"], problems,
                           Settings(n_samples=3, k_examples=0, rounds=1))
    _, runs = result.write_csv(tmp_path)
    rows = list(csv.DictReader(open(runs, encoding="utf-8")))
    assert {"final_output", "outputs"} <= set(rows[0])
    by = {(r["technique"], r["task"]): r for r in rows}
    sc = by[("self_consistency", problems[0].id)]
    assert sc["final_output"] == "Thinking, path 0. The answer is 40." and sc["extracted"] == "40"
    assert sc["outputs"].count("[#") == 3 and "path 2" in sc["outputs"]
    refine = by[("self_refine", problems[0].id)]
    assert "[#1 answer]" in refine["outputs"] and "[#2 critique]" in refine["outputs"]


def test_benchmark_legend_names_every_technique():
    from engine.techniques.techniques import TECHNIQUES
    from ui.i18n import t
    from ui.technique_views import TECHNIQUE_COLORS, bench_legend

    names = [t(f"tech.name.{k}", "fr") for k in TECHNIQUES]
    html = bench_legend(pd.DataFrame({"Technique": names, "x": range(len(names))}))
    assert all(name in html for name in names) and len(set(TECHNIQUE_COLORS.values())) == len(TECHNIQUES)


# ============================================================================ 5. memory planner
def test_planner_context_comes_from_each_models_config(client, tiny_llms):
    assert planner.context_limits("mistral-7b") == (32768, 4096)  # Mistral-7B-v0.1's config, not 131,072
    assert planner.context_limits("13b") == (4096, 0)
    tiny_max, _ = planner.context_limits("tiny/mistral-instruct")
    assert tiny_max > 0
    with pytest.raises(UserError) as err:
        planner.plan("mistral-7b", context_length=65536)
    assert err.value.key == "ux.plan.err_context"
    # past the 4,096-token window the cache stops growing (transformers keeps the last 4,096 tokens per layer)
    assert planner.plan("mistral-7b", 32768).row("bf16").kv_cache_gb == planner.plan("mistral-7b", 4096).row(
        "bf16").kv_cache_gb
    summary, _, _ = client.predict(model="mistral-7b", context_length=8192, batch_size=1, api_name="/memory_plan")
    assert "32768" in summary and "4096" in summary
    from gradio_client.exceptions import AppError, ValidationError

    # the slider's maximum follows the model: refused at the boundary (or by the planner when called directly)
    with pytest.raises((AppError, ValidationError), match="32[,  ]?768"):
        client.predict(model="mistral-7b", context_length=131072, batch_size=1, api_name="/memory_plan")
