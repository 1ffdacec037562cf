"""Part 3 — load one model at several precisions, one at a time, and measure what changes.

Per variant: the planner's estimate is checked first (what cannot fit is skipped with the
reason), then the model is loaded, measured (memory, load time, time to first token, tokens/s,
perplexity on two fixed passages, agreement of its greedy output with the reference) and
freed before the next one is loaded. The precisions and how each loads are in
:mod:`engine.quantization.variants`, the measurements in :mod:`engine.quantization.measure`, the
results table and its CSV in :mod:`engine.quantization.results`.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from engine.models.catalog import PRECISIONS, ModelSpec
from engine.errors import UserError, as_user_error
from engine.models.memory import free_memory, model_bytes
from engine.quantization.measure import Stopped, agreement, perplexity, run_greedy
from engine.quantization.results import Row
from engine.quantization.variants import (VARIANTS, ProgressFn, check_variant_fits, in_place_bytes, load_in_place,
                                          ordered, unavailable_reason)

PASSAGES_PATH = Path(__file__).resolve().parents[2] / "assets" / "quantization_passages.json"
WARMUP_TOKENS = 3


def load_passages() -> dict:
    return json.loads(PASSAGES_PATH.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- compare
# Share of one precision's slot in the progress bar taken by each phase (kernels = waiting for the
# background warm-up of its library, usually nothing)
PHASES = {"check": (0.0, 0.0), "kernels": (0.0, 0.05), "load": (0.05, 0.55), "generate": (0.55, 0.85),
          "perplexity": (0.85, 1.0), "done": (1.0, 1.0)}
PhaseFn = Callable[[str, float, str], None]  # (phase, fraction of the phase, detail)


@dataclass(frozen=True)
class Stage:
    """Where a comparison is: the ``index``-th precision of ``total`` (1-based, in measuring order),
    its phase, and the fraction of the whole comparison done (never decreasing)."""

    index: int
    total: int
    variant: str
    phase: str  # check | kernels | load | generate | perplexity | done
    fraction: float
    seconds: float = 0.0  # seconds waited so far in the kernels phase
    detail: str = ""  # the loader's own step (tokenizer, weights, …)

    def describe(self) -> str:
        """English description (scripts, benchmarks); the tab writes its own, translated."""
        wait = f" {self.seconds:.0f} s" if self.phase == "kernels" else ""
        return f"{VARIANTS[self.variant].label} ({self.index}/{self.total}): {self.phase}{wait}"


def measure_variant(manager, spec: ModelSpec, variant: str, prompt: str, max_new_tokens: int,
                    passages: dict, progress: PhaseFn | None = None,
                    stop: threading.Event | None = None) -> tuple[Row, object]:
    """Load (or reuse), measure and return the row; the caller frees the handle.

    ``progress(phase, fraction of that phase, detail)``; ``stop`` raises :class:`Stopped` at the
    next phase boundary or token."""
    report = progress or (lambda phase, frac, detail: None)

    def loading(frac: float, detail: str) -> None:
        report("load", frac, detail)

    started = time.perf_counter()
    report("load", 0.0, "")
    if variant in PRECISIONS:  # from the cache, leased so that nobody evicts it mid-measure
        with manager.using(spec.with_precision(variant), loading) as handle:
            return _measure(handle, variant, prompt, max_new_tokens, passages, started, report, stop), handle
    owner = f"quantization:{variant}:{threading.get_ident()}"
    with manager.reservation(owner, in_place_bytes(manager, spec, variant), spec.id):
        handle = load_in_place(spec, variant, manager.device, manager.hardware.bf16, loading)
        return _measure(handle, variant, prompt, max_new_tokens, passages, started, report, stop), handle


def _measure(handle, variant: str, prompt: str, max_new_tokens: int, passages: dict, started: float,
             report: PhaseFn, stop: threading.Event | None) -> Row:
    def check_stop() -> None:
        if stop is not None and stop.is_set():
            raise Stopped()

    check_stop()
    v = VARIANTS[variant]
    row = Row(precision=variant, method=v.method, bits=v.bits)
    row.load_s = round(handle.load_seconds or (time.perf_counter() - started), 3)
    row.memory_mb = round(model_bytes(handle.model) / 1e6, 3)
    row.hf_footprint_mb = round(handle.model.get_memory_footprint() / 1e6, 3)
    report("generate", 0.0, "")
    run_greedy(handle, prompt, min(WARMUP_TOKENS, max_new_tokens), stop)  # first-call set-up is not speed
    report("generate", 0.2, "")
    ids, text, ttft, total, tps = run_greedy(handle, prompt, max_new_tokens, stop,
                                             lambda n: report("generate", 0.2 + 0.8 * n / max(1, max_new_tokens), ""))
    row.token_ids, row.output = ids, text
    row.tokens, row.seconds = len(ids), round(total, 4)
    row.ttft_s, row.tok_per_s = round(ttft, 4), round(tps, 3)
    report("perplexity", 0.0, "")
    row.ppl_en = round(perplexity(handle, passages["en"]), 3)
    check_stop()
    report("perplexity", 0.5, "")
    row.ppl_fr = round(perplexity(handle, passages["fr"]), 3)
    row.status = "ok"
    return row


def _fill_relative(rows: list[Row]) -> None:
    ref = next((r for r in rows if r.status == "ok"), None)
    if ref is None:
        return
    for r in rows:
        if r.status != "ok":
            continue
        r.agreement_pct, r.first_divergence = agreement(ref.token_ids, r.token_ids)
        r.agreement_pct = round(r.agreement_pct, 2)
        if ref.memory_mb:
            r.memory_ratio = round(r.memory_mb / ref.memory_mb, 3)
        if ref.tok_per_s:
            r.speed_ratio = round((r.tok_per_s or 0.0) / ref.tok_per_s, 3)


def compare(manager, spec: ModelSpec, variants: Sequence[str], prompt: str, *, max_new_tokens: int = 32,
            passages: dict | None = None, explain: Callable[[UserError], str] | None = None,
            progress: ProgressFn | None = None, stop: threading.Event | None = None,
            describe: Callable[[Stage], str] | None = None, on_stage: Callable[[Stage], None] | None = None,
            ) -> Iterator[list[Row]]:
    """Measure each variant in turn; yield the rows so far (table order) after each one, skipped
    ones included.

    ``progress(fraction, text)`` never goes backwards (``describe`` writes the text of a
    :class:`Stage`, ``on_stage`` gets the stage itself). A variant whose library is still being
    prepared in the background (:mod:`engine.quantization.warmup`) waits its turn: the ready ones
    are measured first. ``stop`` ends the comparison within a token or a phase: the rows measured
    so far are kept, the variant in flight is dropped.
    """
    from engine.quantization import warmup

    if not (prompt or "").strip():
        raise UserError("err.empty_prompt")
    keys = ordered(variants)
    if not keys:
        raise UserError("quant.err_no_precision")
    passages = passages or load_passages()["passages"]
    explain = explain or (lambda e: f"{e.key}: {e.params}")
    describe = describe or Stage.describe
    device = manager.device
    rows: list[Row] = []
    n = len(keys)
    best = 0.0
    pending = list(keys)

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    def report(i: int, key: str, phase: str, frac: float = 0.0, detail: str = "", seconds: float = 0.0) -> None:
        nonlocal best
        lo, hi = PHASES[phase]
        best = max(best, (i + lo + (hi - lo) * max(0.0, min(1.0, frac))) / n)
        stage = Stage(i + 1, n, key, phase, best, seconds, detail)
        if on_stage:
            on_stage(stage)
        if progress:
            progress(best, describe(stage))

    def table_order() -> list[Row]:
        return sorted(rows, key=lambda r: keys.index(r.precision))

    for i in range(n):
        if stopped():
            return
        # a variant whose library is still warming up waits; the ready ones go first
        key = next((k for k in pending if warmup.ready(VARIANTS[k].method, device)), pending[0])
        pending.remove(key)
        v = VARIANTS[key]
        report(i, key, "check")
        reason = unavailable_reason(key, device, manager.hardware.bf16)
        if reason is None:
            try:
                check_variant_fits(manager, spec, key)
            except UserError as exc:
                reason = exc
        if reason is not None:
            rows.append(Row(precision=key, method=v.method, bits=v.bits, status="skipped", note=explain(reason)))
            _fill_relative(table_order())
            report(i, key, "done")
            yield table_order()
            continue
        if not warmup.ready(v.method, device):
            warmup.wait(v.method, device, stop, lambda sec, i=i, key=key: report(i, key, "kernels", 0.0, "", sec))
            if stopped():
                return
        spec_v = spec.with_precision(key) if key in PRECISIONS else None
        was_loaded = spec_v is not None and manager.is_loaded(spec_v)
        handle = None
        try:
            row, handle = measure_variant(manager, spec, key, prompt, max_new_tokens, passages,
                                          lambda phase, frac, detail, i=i, key=key: report(i, key, phase, frac, detail),
                                          stop)
        except Stopped:
            return
        except Exception as exc:  # noqa: BLE001 - one variant failing must not stop the others
            user = as_user_error(exc, spec.id) or UserError("quant.why_failed", detail=f"{type(exc).__name__}: {exc}"[:240])
            row = Row(precision=key, method=v.method, bits=v.bits, status="failed", note=explain(user))
        finally:
            handle = None  # noqa: F841 - drop the last reference before freeing memory
            if spec_v is not None and not was_loaded:
                manager.release(spec_v)
            free_memory()
        if stop is not None and stop.is_set():
            return
        rows.append(row)
        _fill_relative(table_order())
        report(i, key, "done")
        yield table_order()


def run_comparison(manager, spec: ModelSpec, variants: Sequence[str], prompt: str, **kwargs) -> list[Row]:
    rows: list[Row] = []
    for rows in compare(manager, spec, variants, prompt, **kwargs):
        pass
    return rows
