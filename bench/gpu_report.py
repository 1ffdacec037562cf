"""The GPU check's table: its rows, the sections that fill them, the exit status, and the measured
figures printed in the form ``engine/gpu_tasks/durations.py`` uses.

Exit status of ``bench/gpu_check.py`` (:func:`exit_status`): :data:`PASSED` (0) only when every
row ran and met its goal; :data:`CRASHED` (1) when a row raised; :data:`MISSED` (3) when all ran
but a goal was missed; :data:`SKIPPED` (4) when a row did not run (a package missing): a check
never passes by skipping. ``--smoke`` judges no speed goal (tiny shapes on a CPU cannot meet GPU
goals), only the correctness goals (``Row.always``: the same tokens, every request complete,
nothing compiled on a click); a crash or a skipped row fails it too.
"""
from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from common import device_name

PASSED, CRASHED, MISSED, SKIPPED = 0, 1, 3, 4
PACKAGE_NAMES = {"mistral_common": "mistral-common", "gradio_client": "gradio-client"}


@dataclass
class Row:
    check: str
    goal: str = "—"
    measured: str = ""
    ok: bool | None = None  # None: reported, no goal
    problem: str = ""  # "skipped: …" or "crashed: …"
    always: bool = False  # a correctness goal (same tokens, all complete): judged in smoke runs too

    def judged(self, smoke: bool) -> bool:
        return self.ok is not None and (self.always or not smoke)

    def verdict(self, smoke: bool) -> str:
        if self.problem:
            return self.problem
        if self.ok is None:
            return "—"
        word = "pass" if self.ok else "MISS"
        return word if self.judged(smoke) else f"{word.lower()} (smoke: not judged)"


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
    t4_students: int = 10
    shared: dict = field(default_factory=dict)  # what one section leaves to the next (models, checkpoints)

    @property
    def dtype(self) -> torch.dtype:
        if self.dev != "cuda":
            return torch.float32
        from engine.models.hardware import cuda_bf16

        return torch.bfloat16 if cuda_bf16() else torch.float16


@dataclass
class Report:
    settings: Settings
    rows: list[Row] = field(default_factory=list)
    crashed: bool = False
    figures: dict[str, tuple[object, str]] = field(default_factory=dict)  # durations.py name → (value, comment)

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

    def figure(self, name: str, value: object, comment: str) -> None:
        """A measured figure for ``engine/gpu_tasks/durations.py`` (printed after the table)."""
        self.figures[name] = (value, comment)


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        try:
            torch._dynamo.reset()  # compiled decode steps hold CUDA-graph pools
        except Exception:  # noqa: BLE001
            pass
        torch.cuda.empty_cache()


def exit_status(report: Report) -> int:
    """:data:`CRASHED` if a row raised, else :data:`MISSED` if a goal was missed (not in smoke runs),
    else :data:`SKIPPED` if a row did not run, else :data:`PASSED`."""
    if report.crashed or any(r.problem.startswith("crashed") for r in report.rows):
        return CRASHED
    if any(r.ok is False and not r.problem and r.judged(report.settings.smoke) for r in report.rows):
        return MISSED
    if any(r.problem for r in report.rows):
        return SKIPPED
    return PASSED


def print_table(report: Report) -> None:
    s = report.settings
    versions = [f"torch {torch.__version__}"]
    for package in ("transformers", "diffusers", "bitsandbytes", "spaces"):
        found = importlib.util.find_spec(package) is not None
        versions.append(f"{package} {importlib.metadata.version(package) if found else '—'}")
    shapes = "tiny shapes (smoke)" if s.smoke else "Mistral-7B / SDXL / FLUX.1 shapes"
    print(f"\n{device_name(s.dev)} · {', '.join(versions)} · {shapes}, random weights\n")
    print("| check | measured | goal | result |\n| --- | --- | --- | --- |")
    for r in report.rows:
        print(f"| {r.check} | {r.measured or '—'} | {r.goal} | {r.verdict(s.smoke)} |")


def print_figures(report: Report) -> None:
    """The per-step and per-load figures measured in this run, as ``durations.py`` writes them."""
    if not report.figures:
        return
    s = report.settings
    print(f"\n# Measured by bench/gpu_check.py on {device_name(s.dev)}"
          f"{' (smoke: tiny shapes, not for durations.py)' if s.smoke else ''}; "
          "in the form of engine/gpu_tasks/durations.py:")
    for name, (value, comment) in report.figures.items():
        print(f"{name} = {format_value(value)}  # {comment}")


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    return repr(value)


def fast_path_state(handle) -> str:
    """Compiled or eager (and why the compiled step was not used), its warm-up at load, and on
    CUDA the graph pool measured against what the memory estimate booked for it."""
    fast = handle.extra.get("fast_path")
    if fast is None:
        return f"none ({handle.extra.get('fast_path_error') or 'GENAI_FAST_PATH=off'})"
    kind = "compiled" if fast.compiled else "eager"
    fallback = f" (compiled step not used: {fast.fallback})" if getattr(fast, "fallback", None) else ""
    pool = ""
    if fast.compiled and fast.decoders and fast.decoders[0].device.type == "cuda":
        from engine.models.arch import compute_bytes
        from engine.models.memory import graph_pool_bytes

        model = handle.model
        booked = graph_pool_bytes(model.config, compute_bytes(model), max(d.bucket for d in fast.decoders))
        pool = f", graph pool {fast.pool_bytes / 1e9:.2f} GB (estimate {booked / 1e9:.2f})"
    return f"{kind}{fallback}, {fast.warmup_seconds:.1f} s{pool}"


def compiled_graphs() -> int:
    """Graphs Dynamo has compiled in this process so far (a click that compiles raises it)."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001
        return 0
