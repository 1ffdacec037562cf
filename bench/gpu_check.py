"""One command for every GPU goal of the README, measured with the app's own code on one GPU.

    python bench/gpu_check.py            # on a GPU with ≥ 40 GB: 7B / SDXL / FLUX shapes, random weights
    python bench/gpu_check.py --smoke    # anywhere (CPU too): the same code paths with tiny shapes

Random weights in the real shapes (Mistral-7B, SDXL, FLUX.1: bench/configs/) decode and denoise
exactly as fast as the real checkpoints, and build in seconds on the GPU with no download. What
runs is the app's code: the decode engine (``engine.generation``: one loop for every request,
``stream_many`` for Base vs Instruct, ``generate_many`` for self-consistency), its fast path
prepared as at load time (``engine.fastpath.prepare``: static cache, compiled step on CUDA),
``engine.llm.load_causal_lm`` for NF4 and ``engine.imagegen.generate`` for images.

It prints one table: each check's measured value, its goal and the verdict. Rows whose package is
missing say "skipped: <package> not installed" and the others still run. Exit status: 0 when every
row ran and every goal was met, 1 when a row crashed (its exception is printed), 3 when all ran but
a goal was missed. ``--smoke`` judges nothing (tiny shapes on a CPU cannot meet GPU goals): it
checks that every row runs, and exits 1 only on a crash.
"""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from common import (decode_read_bytes, device, device_name, measure_bandwidth, pct, peak_bytes, prompt_ids,
                    random_handle, reset_peak, save_checkpoint, sync)

TIME_LIMIT_S = 8 * 60
FRAGILITY = (6, 4, 24)  # variants, problems, new tokens per row (the app's default answer length)


@dataclass
class Row:
    check: str
    goal: str = "—"
    measured: str = ""
    ok: bool | None = None  # None: reported, no goal
    problem: str = ""  # "skipped: …" or "crashed: …"

    def verdict(self, smoke: bool) -> str:
        if self.problem:
            return self.problem
        if self.ok is None:
            return "—"
        word = "pass" if self.ok else "MISS"
        return f"{word.lower()} (smoke: not judged)" if smoke else word


@dataclass
class Settings:
    smoke: bool
    dev: str
    shape: str  # LLM shapes: 7b | tiny
    image_shape: str  # real | small
    tokens: int
    prompt: int
    students: int
    samples: int
    positions: int | None
    image_size: int | None
    image_steps: int | None
    folder: Path

    @property
    def dtype(self) -> torch.dtype:
        if self.dev != "cuda":
            return torch.float32
        from engine.hardware import cuda_bf16

        return torch.bfloat16 if cuda_bf16() else torch.float16


@dataclass
class Report:
    settings: Settings
    rows: list[Row] = field(default_factory=list)
    crashed: bool = False

    def section(self, name: str, planned: list[Row], needs: tuple[str, ...],
                body: Callable[[dict[str, Row]], None]) -> None:
        """Run one group of checks; a missing package skips them, an exception marks the rest crashed."""
        self.rows += planned
        started = time.perf_counter()
        print(f"… {name}", file=sys.stderr, flush=True)
        missing = [p for p in needs if importlib.util.find_spec(p) is None]
        if missing:
            for r in planned:
                r.problem = f"skipped: {PACKAGE_NAMES.get(missing[0], missing[0])} not installed"
            return
        by_name = {r.check: r for r in planned}
        try:
            body(by_name)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the next group still runs
            traceback.print_exc()
            self.crashed = True
            for r in planned:
                if not r.measured and not r.problem:
                    r.problem = f"crashed: {type(exc).__name__}: {str(exc).splitlines()[0][:90] if str(exc) else ''}"
        finally:
            release_memory()
            print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


PACKAGE_NAMES = {"mistral_common": "mistral-common", "bitsandbytes": "bitsandbytes", "diffusers": "diffusers"}


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        try:
            torch._dynamo.reset()  # compiled decode steps hold CUDA-graph pools
        except Exception:  # noqa: BLE001
            pass
        torch.cuda.empty_cache()


def seconds(fn: Callable[[], object], dev: str) -> float:
    sync(dev)
    start = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - start


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


def run_llm(s: Settings, rows: dict[str, Row], precision: str) -> None:
    import class_load
    from decode import engine_run
    from techniques import BenchGenerator, cot_messages, time_ama, time_fragility

    from engine.fastpath import prepare
    from engine.generation import DecodeEngine, SamplingParams

    r = list(rows.values())
    bandwidth = measure_bandwidth(s.dev)
    r[0].measured = f"{bandwidth / 1e9:,.0f} GB/s"
    base = random_handle("base", s.shape, s.dtype, s.dev, 0, s.positions)
    instr = random_handle("instruct", s.shape, s.dtype, s.dev, 1, s.positions)
    for h in (base, instr):
        prepare(h)  # what load_causal_lm does after from_pretrained
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
        t1 = seconds(lambda: gen.generate(messages, sampling, 1), s.dev)
        tn = seconds(lambda: gen.generate(messages, sampling, s.samples), s.dev)
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
        best_of_one = lambda fn, _repeats: seconds(fn, s.dev)  # noqa: E731 - one timed run per column
        _, app, loop = time_ama(base, eng, 3, SamplingParams(max_new_tokens=min(n, 64), greedy=True), 1, best_of_one)
        r[10].measured = f"{loop / app:.2f}× ({app:.2f} s vs {loop:.2f} s)"
        variants, problems, tokens = FRAGILITY
        rows_run, app, loop = time_fragility(base, eng, variants, problems,
                                             SamplingParams(max_new_tokens=tokens, greedy=True), 1, best_of_one)
        r[11].measured = f"{loop / app:.2f}× ({rows_run} rows: {app:.2f} s vs {loop:.2f} s)"
    finally:
        eng.close()


def fast_path_state(handle) -> str:
    fast = handle.extra.get("fast_path")
    if fast is not None:
        return f"{'compiled' if fast.compiled else 'eager'}, {fast.warmup_seconds:.1f} s"
    return f"none ({handle.extra.get('fast_path_error') or 'GENAI_FAST_PATH=off'})"


# ------------------------------------------------------------------------------------------ NF4
def run_nf4(s: Settings, rows: dict[str, Row]) -> None:
    from decode import engine_run, free, load, plain_generate

    from engine.generation import DecodeEngine

    folder = s.folder / f"mistral-{s.shape}-{s.positions or 'max'}"
    if not (folder / ".complete").exists():  # random weights written once, read back like a Hub checkpoint
        built = random_handle("nf4-source", s.shape, torch.bfloat16 if s.dev == "cuda" else torch.float32, s.dev,
                              0, s.positions)
        save_checkpoint(folder, built.model)
        del built
        release_memory()
    handle = load(folder, "nf4", s.dev)  # engine.llm.load_causal_lm: from_pretrained + BitsAndBytesConfig + fast path
    ids, n = prompt_ids(s.prompt), s.tokens
    eng = DecodeEngine(background=True)
    try:
        engine_run(eng, [handle], ids, 8)
        plain_generate(handle, ids, 8)
        plain = plain_generate(handle, ids, n)
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
    from engine.imagegen import DEFAULTS

    title = DEFAULTS[role].title
    return [Row(f"{title}: seconds per image"), Row(f"{title}: pipeline ÷ (denoiser + VAE)"),
            Row(f"{title}: peak GPU memory", "≤ what the model cache books")]


def run_image(s: Settings, rows: dict[str, Row], role: str) -> None:
    import images

    run = images.run_role(role, s.image_shape, s.dev, s.image_size, s.image_steps)
    seconds_row, ratio_row, peak_row = rows.values()
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
        image_size=64 if smoke else None, image_steps=2 if smoke else None, folder=folder)


def print_table(report: Report) -> None:
    s = report.settings
    versions = [f"torch {torch.__version__}"]
    for package in ("transformers", "diffusers", "bitsandbytes"):
        found = importlib.util.find_spec(package) is not None
        versions.append(f"{package} {importlib.metadata.version(package) if found else '—'}")
    shapes = "tiny shapes (smoke)" if s.smoke else "Mistral-7B / SDXL / FLUX.1 shapes"
    print(f"\n{device_name(s.dev)} · {', '.join(versions)} · {shapes}, random weights\n")
    print("| check | measured | goal | result |\n| --- | --- | --- | --- |")
    for r in report.rows:
        print(f"| {r.check} | {r.measured or '—'} | {r.goal} | {r.verdict(s.smoke)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, any device (CPU included); goals not judged")
    parser.add_argument("--only", nargs="+", choices=("llm", "nf4", "images"), default=("llm", "nf4", "images"))
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per request (default 256; smoke 16)")
    parser.add_argument("--prompt", type=int, default=None, help="prompt tokens (default 128; smoke 32)")
    parser.add_argument("--students", type=int, default=None, help="students clicking at once (default 30; smoke 4)")
    parser.add_argument("--dir", default=None, help="where the NF4 section writes its random 7B checkpoint")
    args = parser.parse_args(argv)
    s = settings_from(args)
    if s.dev != "cuda" and not s.smoke:
        parser.error("no CUDA GPU here: run with --smoke (the same code paths with tiny shapes)")
    if s.dev != "cuda":
        os.environ.setdefault("GENAI_FAST_PATH", "eager")  # the static-cache path, uncompiled (compile needs CUDA)
    started = time.perf_counter()
    report = Report(s)
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(s.dtype, "fp32")
    if "llm" in args.only:
        report.section("LLM", llm_rows(s, precision), ("mistral_common",), lambda rows: run_llm(s, rows, precision))
    if "nf4" in args.only:
        report.section("NF4", [Row("NF4 decode: fast path ÷ plain generate()", "≥ 2.0×")],
                       ("bitsandbytes", "mistral_common"), lambda rows: run_nf4(s, rows))
    if "images" in args.only:
        from engine.catalog import IMAGE_ROLES

        for role in IMAGE_ROLES:
            report.section(role, image_rows(role), ("diffusers", "mistral_common"),
                           lambda rows, role=role: run_image(s, rows, role))
    total = time.perf_counter() - started
    everything = set(args.only) == {"llm", "nf4", "images"}
    report.rows.append(Row("total wall time of this check", f"≤ {TIME_LIMIT_S // 60} min" if everything else "—",
                           f"{total / 60:.1f} min", total <= TIME_LIMIT_S if everything else None))
    print_table(report)
    return exit_status(report)


def exit_status(report: Report) -> int:
    """1: a row crashed; 3: every row ran but a goal was missed (not in smoke runs); else 0."""
    if report.crashed:
        return 1
    missed = any(r.ok is False and not r.problem for r in report.rows)
    return 3 if missed and not report.settings.smoke else 0


if __name__ == "__main__":
    sys.exit(main())
