"""One command for every GPU goal of the README, measured with the app's own code on one GPU.

    python bench/gpu_check.py                 # on a GPU with ≥ 40 GB: 7B / SDXL / FLUX shapes, random weights
    python bench/gpu_check.py --only decode   # first click, LLM, batch invariance, NF4 (≤ 5 min)
    python bench/gpu_check.py --only app      # images, the T4 row, the ZeroGPU row (≤ 5 min)
    python bench/gpu_check.py --smoke         # anywhere (CPU too): every row with tiny shapes

Random weights in the real shapes (Mistral-7B, SDXL, FLUX.1: bench/configs/) decode and denoise
exactly as fast as the real checkpoints, and build in seconds on the GPU with no download. What
runs is the app's code, per profile:

* first click: a random 7B checkpoint loaded by the model cache (``ModelManager.llm``:
  ``from_pretrained``, then the fast path compiled, captured and checked in its own thread), then
  the first request's time to first token, and whether anything compiled during it;
* LLM: the decode engine (one loop for every request, ``stream_many`` for Base vs Instruct,
  ``generate_many`` for self-consistency) with the fast path prepared as at load time;
* batch invariance: 8 greedy prompts alone (a lone request: the fast path) vs together (the
  batched path) in the app's dtype: the share of identical tokens and the first divergence;
* NF4: ``engine.models.llm.load_causal_lm`` with bitsandbytes, fast path vs plain ``generate()``;
* images: each role written as the Hub serves it and loaded by ``engine.images.imagegen.load_pipeline``
  as on the ``gpu`` profile (SDXL fp16 variant with its VAE override; FLUX with its transformer
  quantized to NF4 at load time), then ``engine.images.imagegen.generate``;
* T4 (``bench/gpu_t4.py``): the process limited to a T4's memory, bf16 refused, the ``t4``
  profile's defaults loaded by the model cache, then 10 students, one image and one live
  quantization at once through ``engine.gpu_tasks``, as the tabs call them;
* ZeroGPU (``bench/gpu_zerogpu.py``): the app started under the real ``spaces`` wrappers (with
  the device-API stub of the tests), one comparison and one image through the fork, compared
  with the same work done in this process.

It prints one table (each check's measured value, goal and verdict), then the measured per-step
and per-load figures in the form ``engine/gpu_tasks/durations.py`` uses. Exit status
(``bench/gpu_report.py``): 0 only when every row ran and met its goal; 1 when a row crashed
(its traceback is printed, the other rows still run); 3 when all ran but a goal was missed; 4
when a row was skipped (a package missing: it says which). ``--smoke`` judges no goal (tiny
shapes on a CPU cannot meet GPU goals) but fails on a crash (1) or a skipped row (4).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import (device, measure_bandwidth, pct, peak_bytes, plain_generate, prompt_ids, random_handle, reset_peak,
                    save_checkpoint, timed)
from gpu_report import (Report, Row, Settings, compiled_graphs, exit_status, fast_path_state, print_figures,
                        print_table, release_memory)

TIME_LIMIT_S = 8 * 60
FRAGILITY = (6, 4, 24)  # variants, problems, new tokens per row (the app's default answer length)
GROUP_LIMIT_S = 5 * 60
SECTIONS = ("first-click", "llm", "invariance", "nf4", "images", "t4", "zerogpu")
GROUPS = {"decode": ("first-click", "llm", "invariance", "nf4"), "app": ("images", "t4", "zerogpu")}
INVARIANCE_PROMPTS = 8


def precision_of(s: Settings) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(s.dtype, "fp32")


# ------------------------------------------------------------------------------- shared models
def mistral_checkpoint(s: Settings) -> Path:
    """A random Mistral (7B shapes on a GPU) written once like a Hub checkpoint (16-bit, as the Hub's)."""
    folder = s.folder / f"mistral-{s.shape}-{s.positions or 'max'}"
    if not (folder / ".complete").exists():
        built = random_handle("checkpoint", s.shape, torch.bfloat16 if s.dev == "cuda" else torch.float32, s.dev,
                              0, s.positions)
        save_checkpoint(folder, built.model)
        del built
        release_memory()
    return folder


def shared_llms(s: Settings):
    """Base and instruct: random weights built on the device, their fast path prepared as
    ``load_causal_lm`` does after ``from_pretrained``; built once for the LLM and invariance rows."""
    from engine.models.fastpath import prepare

    if "llms" not in s.shared:
        base = random_handle("base", s.shape, s.dtype, s.dev, 0, s.positions)
        instr = random_handle("instruct", s.shape, s.dtype, s.dev, 1, s.positions)
        for h in (base, instr):
            prepare(h)
        s.shared["llms"] = (base, instr)
    return s.shared["llms"]


def drop_llms(s: Settings) -> None:
    for h in s.shared.pop("llms", ()):
        h.extra.clear()
    release_memory()


# -------------------------------------------------------------------------------- first click
def first_click_rows(s: Settings) -> list[Row]:
    return [Row(f"first click: load through the model cache ({precision_of(s)}, fast path prepared)"),
            Row(f"first click: time to first token of the first request after load, {s.prompt}-token prompt",
                "< 0.5 s"),
            Row("first click: graphs compiled during that request", "0", always=True)]


def run_first_click(s: Settings, rows: dict[str, Row], report: Report) -> None:
    from engine.models.catalog import ModelSpec, load_catalog
    from engine.generation import DecodeEngine, SamplingParams
    from engine.models.hardware import detect
    from engine.serving.manager import ModelManager

    load_row, click_row, compile_row = rows.values()
    folder = mistral_checkpoint(s)
    manager = ModelManager(load_catalog("gpu" if s.dev == "cuda" else "tiny", env={}), detect())
    spec = ModelSpec(role="base_llm", kind="causal_lm", id=str(folder), precision=precision_of(s))
    started = time.perf_counter()
    handle = manager.llm(spec)
    load_s = time.perf_counter() - started
    load_row.measured = f"{load_s:.1f} s (fast path: {fast_path_state(handle)})"
    report.figure("LOAD_LLM_S", round(load_s, 1), f"a {s.shape} {precision_of(s)} checkpoint through the model "
                                                  "cache: from_pretrained from local disk + the fast path's warm-up")
    graphs = compiled_graphs()
    eng = DecodeEngine(background=True)  # as the app's: its loop thread asks for the steps
    try:
        req = eng.submit(handle, prompt_ids(s.prompt), SamplingParams(max_new_tokens=8, greedy=True), eos_ids=set())
        list(eng.wait([req]))
    finally:
        eng.close()
    if req.error is not None:
        raise req.error
    ttft = req.update().ttft_s or 0.0
    compiled = compiled_graphs() - graphs
    click_row.measured, click_row.ok = f"{ttft:.3f} s", ttft < 0.5
    compile_row.measured, compile_row.ok = f"{compiled}", compiled == 0
    manager.clear()


# ------------------------------------------------------------------------------------------ LLM
def llm_rows(s: Settings, precision: str) -> list[Row]:
    return [
        Row("memory bandwidth (device-to-device copy)"),
        Row("fast path prepared at load (base; instruct)"),
        Row(f"decode {precision}, batch 1: % of the bandwidth limit", "≥ 60%"),
        Row(f"time to first token, {s.prompt}-token prompt", "< 0.5 s"),
        Row("Base vs Instruct side by side ÷ both alone, one after the other", "≤ 1.10×"),
        Row(f"self-consistency N={s.samples} ÷ one sample", "≤ 1.30×"),
        Row(f"{s.students} students × {s.tokens} tokens: last done ÷ one student alone", "≤ 2.0×"),
        Row(f"{s.students} students: time to first token, p95", "< 1 s"),
        Row(f"{s.students} students: peak GPU memory (2 models)"),
        Row(f"Base vs Instruct follow-up: time to first token, {4 * s.prompt}-token conversation, both models",
            "< 1 s"),
        Row("ask-me-anything N=3: its 6 calls one by one ÷ the app's 2 batched calls"),
        Row(f"prompt fragility {FRAGILITY[0]} variants × {FRAGILITY[1]} problems: rows one by one ÷ the app's batches"),
    ]


def run_llm(s: Settings, rows: dict[str, Row]) -> None:
    import class_load
    from decode import engine_run
    from techniques import BenchGenerator, cot_messages, time_ama, time_fragility

    from engine.generation import DecodeEngine, SamplingParams
    from engine.models.memory import decode_read_bytes

    r = list(rows.values())
    bandwidth = measure_bandwidth(s.dev)
    r[0].measured = f"{bandwidth / 1e9:,.0f} GB/s"
    base, instr = shared_llms(s)
    r[1].measured = "; ".join(fast_path_state(h) for h in (base, instr))
    ids, n = prompt_ids(s.prompt), s.tokens
    eng = DecodeEngine(background=True)
    try:
        for handles in ([base], [instr], [base, instr]):
            engine_run(eng, handles, ids, 8)  # first calls: kernels, allocator
        one = engine_run(eng, [base], ids, n)[0]
        other = engine_run(eng, [instr], ids, n)[0]
        side = engine_run(eng, [base, instr], ids, n)[0]
        limit = bandwidth / decode_read_bytes(base.model, len(ids) + n / 2)
        share = one.decode_tok_s(n) / limit
        r[2].measured, r[2].ok = f"{share:.0%} ({one.decode_tok_s(n):.1f} of {limit:.0f} tok/s)", share >= 0.60
        r[3].measured, r[3].ok = f"{one.ttft_s:.3f} s", one.ttft_s < 0.5
        ratio = side.seconds / (one.seconds + other.seconds)
        r[4].measured, r[4].ok = f"{ratio:.2f}× ({side.seconds:.2f} s vs {one.seconds:.2f} + {other.seconds:.2f} s)", \
            ratio <= 1.10

        gen = BenchGenerator(base)
        messages = cot_messages()
        sampling = SamplingParams(max_new_tokens=n, temperature=0.8, top_p=0.95, top_k=50, seed=1)
        gen.generate(messages, SamplingParams(max_new_tokens=8, temperature=0.8), s.samples)  # warm-up
        t1 = timed(lambda: gen.generate(messages, sampling, 1), s.dev)
        tn = timed(lambda: gen.generate(messages, sampling, s.samples), s.dev)
        r[5].measured, r[5].ok = f"{tn / t1:.2f}× ({tn:.2f} s vs {t1:.2f} s)", tn / t1 <= 1.30

        greedy = SamplingParams(max_new_tokens=n, greedy=True)
        class_load.warm_up(eng, base, instr)
        alone = class_load.one_at_a_time(eng, base, instr, 1, greedy)[0]
        reset_peak(s.dev)
        together, _ = class_load.batched(eng, base, instr, s.students, greedy)
        peak = peak_bytes(s.dev)
        last = max(x.done_s for x in together)
        p95 = pct([x.ttft_s for x in together], 0.95)
        r[6].measured, r[6].ok = f"{last / alone.done_s:.2f}× ({last:.1f} s vs {alone.done_s:.1f} s)", \
            last / alone.done_s <= 2.0
        r[7].measured, r[7].ok = f"{p95:.2f} s", p95 < 1.0
        r[8].measured = f"{peak / 1e9:.1f} GB" if peak is not None else "n/a (CPU)"

        # a follow-up re-reads the whole conversation: both models prefill it in one batch, as stream_many does
        conversation = prompt_ids(4 * s.prompt, seed=1)
        engine_run(eng, [base, instr], conversation, 2)  # first call at this length
        follow = max(t.ttft_s for t in engine_run(eng, [base, instr], conversation, 8))
        first = max(t.ttft_s for t in engine_run(eng, [base, instr], ids, 8))
        r[9].measured, r[9].ok = f"{follow:.3f} s (first turn, {len(ids)} tokens: {first:.3f} s)", follow < 1.0
        _, app, loop = time_ama(base, eng, 3, SamplingParams(max_new_tokens=min(n, 64), greedy=True), 1)
        r[10].measured = f"{loop / app:.2f}× ({app:.2f} s vs {loop:.2f} s)"
        variants, problems, tokens = FRAGILITY
        rows_run, app, loop = time_fragility(base, eng, variants, problems,
                                             SamplingParams(max_new_tokens=tokens, greedy=True), 1)
        r[11].measured = f"{loop / app:.2f}× ({rows_run} rows: {app:.2f} s vs {loop:.2f} s)"
    finally:
        eng.close()


# ----------------------------------------------------------------------------- batch invariance
def invariance_rows(s: Settings) -> list[Row]:
    """Reported on a GPU (bf16 kernels differ with the batch size); on CPU in fp32 the engine's
    claim is tested: every token identical."""
    cpu = s.dev != "cuda"
    return [Row(f"batch invariance, {precision_of(s)}: {INVARIANCE_PROMPTS} greedy prompts alone (fast path) vs "
                f"together (batched), identical tokens", "100% (CPU, fp32)" if cpu else "reported", always=cpu),
            Row("engine's batched path: seconds per decode step, 1 row vs 8 rows")]


def run_invariance(s: Settings, rows: dict[str, Row], report: Report) -> None:
    """Each prompt alone (a lone request: the fast path), then all together (one batch)."""
    from decode import engine_run

    from engine.generation import DecodeEngine, SamplingParams

    same_row, step_row = rows.values()
    base, _ = shared_llms(s)
    n = min(s.tokens, 128)
    prompts = [prompt_ids(16 + 9 * i, seed=100 + i) for i in range(INVARIANCE_PROMPTS)]
    params = SamplingParams(max_new_tokens=n, greedy=True)
    eng = DecodeEngine(background=True)
    try:
        alone = [engine_run(eng, [base], ids, n)[0].tokens for ids in prompts]
        reqs = [eng.submit(base, ids, params, eos_ids=set()) for ids in prompts]
        list(eng.wait(reqs))
        together = [list(r.update().token_ids) for r in reqs]
        fast = base.extra.pop("fast_path", None)  # the batched path alone: what ZeroGPU runs (no fast path)
        try:
            engine_run(eng, [base], prompts[0], 4)  # warm-up of a lone row on the batched path
            one = engine_run(eng, [base], prompts[0], n)[0]
            start = time.perf_counter()
            reqs = [eng.submit(base, ids, params, eos_ids=set()) for ids in prompts]
            list(eng.wait(reqs))
            eight = time.perf_counter() - start - max(r.update().ttft_s or 0.0 for r in reqs)
        finally:
            if fast is not None:
                base.extra["fast_path"] = fast
    finally:
        eng.close()
    same = sum(a == b for x, y in zip(alone, together) for a, b in zip(x, y))
    total = sum(len(x) for x in alone)
    firsts = [(next((j for j, (a, b) in enumerate(zip(x, y)) if a != b), None), i)
              for i, (x, y) in enumerate(zip(alone, together))]
    diverged = sorted((j, i) for j, i in firsts if j is not None)
    where = f"first divergence: prompt {diverged[0][1] + 1}, token {diverged[0][0] + 1}" if diverged else \
        "no divergence"
    identical = sum(j is None for j, _ in firsts)
    same_row.measured = f"{same / max(1, total):.1%} of {total} tokens; {identical}/{len(prompts)} answers " \
                        f"identical; {where}"
    if same_row.always:
        same_row.ok = same == total
    step1 = (one.seconds - one.ttft_s) / max(1, n - 1)
    step8 = eight / max(1, n - 1)  # after the last of the 8 had its first token
    step_row.measured = f"{step1 * 1000:.1f} ms (1 row) vs {step8 * 1000:.1f} ms ({INVARIANCE_PROMPTS} rows)"
    report.figure("LLM_STEP_S", round(step1, 4), f"one decode step of one {s.shape} {precision_of(s)} model, "
                                                 "the engine's batched path, 1 row")
    report.figure("BATCH_ROW", round(max(0.0, (step8 / step1 - 1) / (INVARIANCE_PROMPTS - 1)), 3),
                  f"each extra row's share of a step ({INVARIANCE_PROMPTS} rows: {step8:.4f} s per step)")


# ------------------------------------------------------------------------------------------ NF4
def run_nf4(s: Settings, rows: dict[str, Row]) -> None:
    from decode import engine_run, free, load, plain_run

    from engine.generation import DecodeEngine

    drop_llms(s)
    handle = load(mistral_checkpoint(s), "nf4", s.dev)  # load_causal_lm: from_pretrained + NF4 + fast path
    ids, n = prompt_ids(s.prompt), s.tokens
    eng = DecodeEngine(background=True)
    try:
        engine_run(eng, [handle], ids, 8)
        plain_generate(handle, ids, 8)
        plain = plain_run(handle, ids, n)
        fast = engine_run(eng, [handle], ids, n)[0]
    finally:
        eng.close()
    ratio = fast.tok_per_s(n) / plain.tok_per_s(n)
    row = next(iter(rows.values()))
    row.measured = f"{ratio:.2f}× ({fast.tok_per_s(n):.1f} vs {plain.tok_per_s(n):.1f} tok/s; fast path: " \
                   f"{fast_path_state(handle)})"
    row.ok = ratio >= 2.0
    free(handle)


# --------------------------------------------------------------------------------------- images
def image_rows(role: str) -> list[Row]:
    from engine.images.imagegen import DEFAULTS

    title = DEFAULTS[role].title
    return [Row(f"{title}: the app's loader (gpu profile), seconds"), Row(f"{title}: seconds per image"),
            Row(f"{title}: pipeline ÷ (denoiser + VAE)"),
            Row(f"{title}: peak GPU memory", "≤ what the model cache books")]


def run_image(s: Settings, rows: dict[str, Row], role: str, report: Report) -> None:
    import images

    from engine.images.imagegen import DEFAULTS

    drop_llms(s)
    kind = images.FILES[role][0]
    run = images.run_role(role, s.image_shape, s.dev, s.image_size, s.image_steps, "gpu", s.folder / "images",
                          keep=kind != "flux")  # a real-shape FLUX checkpoint takes 34 GB of disk
    load_row, seconds_row, ratio_row, peak_row = rows.values()
    load_row.measured = f"{run.load_s:.1f} s ({run.loaded_as})"
    steps = f"{run.steps} step{'s' if run.steps > 1 else ''}"
    seconds_row.measured = f"{run.seconds:.2f} s ({steps}, {run.size}×{run.size})"
    ratio_row.measured = f"{run.overhead_ratio:.2f}× (denoiser {run.denoiser_s:.2f} s + VAE {run.vae_s:.2f} s)"
    if run.peak_bytes is None:
        peak_row.measured = "n/a (CPU)"
    elif run.booked_bytes is None:
        peak_row.measured = f"{run.peak_bytes / 1e9:.1f} GB"
    else:
        peak_row.measured = f"{run.peak_bytes / 1e9:.1f} GB of {run.booked_bytes / 1e9:.1f} GB booked"
        peak_row.ok = run.peak_bytes <= run.booked_bytes
    cfg = 2 if DEFAULTS[role].guidance_active and DEFAULTS[role].guidance > 1 and kind == "sdxl" else 1
    per_step = run.denoiser_s / run.steps / cfg * (1024 ** 2) / (run.size ** 2)
    figures = report.figures
    for name, value, comment in (
            ("IMAGE_STEP_S", per_step, "seconds per denoising step at 1024² without CFG (scaled from the size run)"),
            ("IMAGE_LOAD_S", run.load_s, "the app's loader from local disk (no download)"),
            ("IMAGE_FIXED_S", run.seconds - run.denoiser_s, "text encoders, VAE decode, conversion: the largest")):
        if name == "IMAGE_FIXED_S":
            old = figures.get(name, (0.0, ""))[0]
            report.figure(name, round(max(old, value), 2), comment)
            continue
        table = dict(figures.get(name, ({}, ""))[0])
        table[kind] = round(max(table.get(kind, 0.0), value), 3)
        report.figure(name, table, comment)


# ----------------------------------------------------------------------------------------- main
def settings_from(args) -> Settings:
    dev = device()
    smoke = args.smoke
    folder = Path(args.dir or os.path.join(tempfile.gettempdir(), "genai-gpu-check"))
    return Settings(
        smoke=smoke, dev=dev, shape="tiny" if smoke else "7b", image_shape="small" if smoke else "real",
        tokens=args.tokens or (16 if smoke else 256), prompt=args.prompt or (32 if smoke else 128),
        students=args.students or (4 if smoke else 30), samples=5,
        positions=None if smoke else 2048,  # one fast-path bucket (1024 tokens) to compile, not two
        image_size=64 if smoke else None, image_steps=2 if smoke else None, folder=folder,
        t4_students=10)


def chosen_sections(only: list[str]) -> list[str]:
    names = {n for item in only for n in GROUPS.get(item, (item,))}
    return [n for n in SECTIONS if n in names]


def run_sections(s: Settings, report: Report, sections: list[str]) -> None:
    import gpu_t4
    import gpu_zerogpu

    precision = precision_of(s)
    llm_needs = ("mistral_common",)
    if "first-click" in sections:
        report.section("first click", first_click_rows(s), llm_needs,
                       lambda rows: run_first_click(s, rows, report))
    if "llm" in sections:
        report.section("LLM", llm_rows(s, precision), llm_needs, lambda rows: run_llm(s, rows))
    if "invariance" in sections:
        report.section("batch invariance", invariance_rows(s), llm_needs, lambda rows: run_invariance(s, rows, report))
    if "nf4" in sections:
        report.section("NF4", [Row("NF4 decode: fast path ÷ plain generate()", "≥ 2.0×")],
                       ("bitsandbytes", "mistral_common"), lambda rows: run_nf4(s, rows))
    drop_llms(s)
    if "images" in sections:
        from engine.models.catalog import IMAGE_ROLES

        for role in IMAGE_ROLES:
            report.section(role, image_rows(role), ("diffusers", "mistral_common"),
                           lambda rows, role=role: run_image(s, rows, role, report))
    if "t4" in sections:
        report.section("T4", gpu_t4.rows(s), gpu_t4.NEEDS, lambda rows: gpu_t4.run(s, rows, report))
    if "zerogpu" in sections:
        report.section("ZeroGPU", gpu_zerogpu.rows(s), gpu_zerogpu.NEEDS, lambda rows: gpu_zerogpu.run(s, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes, any device (CPU included): every row runs; only the correctness "
                             "goals are judged (same tokens, all complete, nothing compiled on a click)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS + tuple(GROUPS), default=list(SECTIONS),
                        help="sections or groups to run: decode = first-click llm invariance nf4, "
                             "app = images t4 zerogpu (goal: each group ≤ 5 min on one H100)")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per request (default 256; smoke 16)")
    parser.add_argument("--prompt", type=int, default=None, help="prompt tokens (default 128; smoke 32)")
    parser.add_argument("--students", type=int, default=None, help="students clicking at once (default 30; smoke 4)")
    parser.add_argument("--dir", default=None, help="where the random checkpoints are written (7B: 14.5 GB, SDXL "
                                                    "7 GB, FLUX 34 GB while its rows run; default: the temp folder)")
    args = parser.parse_args(argv)
    s = settings_from(args)
    if s.dev != "cuda" and not s.smoke:
        parser.error("no CUDA GPU here: run with --smoke (the same code paths with tiny shapes)")
    if s.dev != "cuda":
        os.environ.setdefault("GENAI_FAST_PATH", "eager")  # the static-cache path, uncompiled (compile needs CUDA)
    # tiny checkpoints (engine/models/tiny.py: the ZeroGPU row's app, every smoke row): built once, next to the others
    os.environ.setdefault("GENAI_TINY_DIR", str(s.folder / "tiny"))
    sections = chosen_sections(args.only)
    started = time.perf_counter()
    report = Report(s)
    run_sections(s, report, sections)
    total = time.perf_counter() - started
    limit = TIME_LIMIT_S if set(sections) == set(SECTIONS) else \
        GROUP_LIMIT_S if any(set(sections) == set(g) for g in GROUPS.values()) else None
    report.rows.append(Row("total wall time of this check", f"≤ {limit // 60} min" if limit else "—",
                           f"{total / 60:.1f} min", total <= limit if limit else None))
    print_table(report)
    print_figures(report)
    return exit_status(report)


if __name__ == "__main__":
    sys.exit(main())
