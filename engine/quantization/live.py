"""Part 3 — load one model at several precisions, one at a time, and measure what changes.

Per variant: the planner's estimate is checked first (what cannot fit is skipped with the
reason), then the model is loaded, measured (memory, load time, time to first token, tokens/s,
perplexity on two fixed passages, agreement of its greedy output with the reference) and
freed before the next one is loaded.

bitsandbytes and plain dtypes go through the app's :class:`~engine.models.ModelManager`.
optimum-quanto and HQQ are not precisions the manager knows, so they are loaded here: the
model at its compute dtype through :func:`engine.llm.load_causal_lm`, then its linear layers
(every one but ``lm_head``, like bitsandbytes) replaced in place.
"""
from __future__ import annotations

import gc
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from engine.catalog import PRECISIONS, ModelSpec
from engine.errors import UserError, as_user_error
from engine.memory import free_memory
from engine.stopping import LinkedStop
from engine.quantization import planner
# the results table and its CSV live in results.py; their names stay importable from here
from engine.quantization.results import (COLUMNS, INT_COLUMNS, TEXT_COLUMNS, Row, normalize_frame,  # noqa: F401
                                         read_csv, to_frame, write_csv)

PASSAGES_PATH = Path(__file__).resolve().parents[2] / "assets" / "quantization_passages.json"
ProgressFn = Callable[[float, str], None]
WARMUP_TOKENS = 3
# bitsandbytes logs this at every int8 matmul on CPU (fp32 activations): it says nothing new
logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    method: str  # dtype | bitsandbytes | optimum-quanto | hqq
    bits: float  # nominal bits per quantized weight


VARIANTS: dict[str, Variant] = {v.key: v for v in (
    Variant("fp32", "fp32", "dtype", 32),
    Variant("bf16", "bf16", "dtype", 16),
    Variant("fp16", "fp16", "dtype", 16),
    Variant("int8", "LLM.int8", "bitsandbytes", 8),
    Variant("nf4", "NF4", "bitsandbytes", 4),
    Variant("nf4-dq", "NF4 + double quant", "bitsandbytes", 4),
    Variant("fp4", "FP4", "bitsandbytes", 4),
    Variant("quanto-int4", "quanto int4", "optimum-quanto", 4),
    Variant("hqq-4", "HQQ 4-bit", "hqq", 4),
    Variant("hqq-3", "HQQ 3-bit", "hqq", 3),
    Variant("quanto-int2", "quanto int2", "optimum-quanto", 2),
    Variant("hqq-2", "HQQ 2-bit", "hqq", 2),
)}
PACKAGES = {"bitsandbytes": "bitsandbytes", "optimum-quanto": "optimum.quanto", "hqq": "hqq.core.quantize"}


def default_variants(device: str, bf16: bool) -> list[str]:
    """The precisions ticked by default; ``bf16`` is the hardware's answer (``Hardware.bf16``:
    False on a T4, where bf16 is only emulated)."""
    if device == "cuda":
        return ["bf16" if bf16 else "fp16", "int8", "nf4", "hqq-3", "hqq-2"]
    return ["fp32", "int8", "nf4", "quanto-int4", "hqq-3", "hqq-2"]


def load_passages() -> dict:
    return json.loads(PASSAGES_PATH.read_text(encoding="utf-8"))


# -------------------------------------------------------------------------- measuring
def tensor_bytes(t) -> int:
    """Real storage of a tensor; quanto's packed tensors are walked down to their inner buffers."""
    flatten = getattr(t, "__tensor_flatten__", None)
    if flatten is not None and type(t).__name__ not in ("Parameter", "Tensor"):
        try:
            names, _ = flatten()
            return sum(tensor_bytes(getattr(t, n)) for n in names)
        except Exception:  # noqa: BLE001 - a subclass that does not flatten like quanto's
            pass
    return int(t.nelement() * t.element_size())


def model_bytes(model) -> int:
    """Parameters + buffers + the quantization state bitsandbytes and HQQ keep outside them."""
    import torch

    seen: set[int] = set()
    total = 0

    def add(t) -> None:
        nonlocal total
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            total += tensor_bytes(t)

    for p in model.parameters():
        add(p)
        state = getattr(p, "quant_state", None)  # bitsandbytes 4-bit
        if state is not None:
            add(state.absmax)
            if getattr(state, "state2", None) is not None:
                add(state.state2.absmax)
        add(getattr(p, "SCB", None))  # bitsandbytes int8 row scales
    for b in model.buffers():
        add(b)
    for module in model.modules():
        meta = getattr(module, "meta", None)  # HQQ keeps scale and zero here
        if isinstance(meta, dict):
            for v in meta.values():
                add(v)
    return total


def perplexity(handle, text: str) -> float:
    import torch

    ids = handle.prepare_raw(text).input_ids
    device = next(handle.model.parameters()).device
    t = torch.tensor([ids], device=device)
    with torch.inference_mode():
        loss = handle.model(input_ids=t, labels=t).loss
    return float(math.exp(float(loss)))


def agreement(reference: Sequence[int], ids: Sequence[int]) -> tuple[float, int | None]:
    """(% of positions with the same token, first position where they differ or None)."""
    n = max(len(reference), len(ids))
    if n == 0:
        return 100.0, None
    same = sum(a == b for a, b in zip(reference, ids))
    first = next((i for i, (a, b) in enumerate(zip(reference, ids)) if a != b), None)
    if first is None and len(reference) != len(ids):
        first = min(len(reference), len(ids))
    return 100.0 * same / n, first


def prompt_for(handle, text: str):
    if handle.has_chat_template:
        return handle.prepare_chat([{"role": "user", "content": text}])
    return handle.prepare_raw(text)


class Stopped(Exception):
    """The student pressed Stop: the variant being measured is dropped, the rows so far are kept."""


def run_greedy(handle, prompt_text: str, max_new_tokens: int, stop: threading.Event | None = None,
               on_token: Callable[[int], None] | None = None):
    """(token ids, text, ttft s, total s, tokens/s) of one greedy generation.

    Runs on a private inline engine: the timing is this model's alone (not shared with other
    users' rows), and nothing keeps a reference to the variant once it is freed. ``stop`` ends
    it after the current token (:class:`Stopped`); ``on_token(tokens so far)`` follows it.
    """
    from engine.generation import DecodeEngine, SamplingParams, stream
    params = SamplingParams(max_new_tokens=max_new_tokens, greedy=True, temperature=0.0)
    prompt = prompt_for(handle, prompt_text)
    last = None
    # stream() sets the event it is given when it ends: give it one of its own that also reads ours
    for last in stream(handle, prompt, params, stop=LinkedStop(stop), eng=DecodeEngine(background=False)):
        if last.error is not None:
            raise last.error
        if on_token:
            on_token(len(last.token_ids))
    if stop is not None and stop.is_set():
        raise Stopped()
    if last is None:
        return [], "", 0.0, 0.0, 0.0
    return list(last.token_ids), last.text, last.ttft_s or 0.0, last.elapsed_s, last.tokens_per_s


# ---------------------------------------------------------------------------- loading
def unavailable_reason(variant: str, device: str, bf16_ok: bool) -> UserError | None:
    """Why a variant cannot run here (package missing, dtype unsupported), or None."""
    v = VARIANTS[variant]
    module = PACKAGES.get(v.method)
    if module:
        try:
            __import__(module)
        except Exception as exc:  # noqa: BLE001 - ImportError or a broken native library
            return UserError("quant.why_no_package", package=v.method, detail=f"{type(exc).__name__}: {exc}"[:160])
    if variant == "bf16" and device == "cuda" and not bf16_ok:
        return UserError("quant.why_no_bf16")
    return None


def compute_precision(device: str, bf16_ok: bool) -> str:
    if device == "cuda":
        return "bf16" if bf16_ok else "fp16"
    return "fp32"


def estimate_variant_bytes(manager, spec: ModelSpec, variant: str) -> int:
    """The planner's estimate (weights + runtime overhead) of a variant on the manager's device."""
    from engine import memory

    if variant in PRECISIONS:
        return manager.estimate_bytes(spec.with_precision(variant))
    _, counts, _ = planner.counts_for(spec.id)
    compute = 4 if manager.device == "cpu" else 2
    weights = planner.weights_bytes(counts, variant, compute)
    return weights + memory.load_overhead(weights, manager.device)


def check_variant_fits(manager, spec: ModelSpec, variant: str) -> int:
    """Raise ``err.too_big`` if the variant cannot be loaded now; return the bytes it needs."""
    if variant in PRECISIONS:
        return manager.check_fits(spec.with_precision(variant))
    need = in_place_bytes(manager, spec, variant)
    free = manager.free_bytes()
    if need > free:
        raise UserError("err.too_big", model=spec.id, precision=variant, need_gb=need / 1e9,
                        budget_gb=free / 1e9, device=manager.device.upper())
    return need


def in_place_bytes(manager, spec: ModelSpec, variant: str) -> int:
    """quanto/HQQ first load the model at its compute dtype, then quantize it in place: the
    larger of the two is what the run books."""
    full = estimate_variant_bytes(manager, spec, compute_precision(manager.device, manager.hardware.bf16))
    return max(estimate_variant_bytes(manager, spec, variant), full)


def _quantize_in_place(model, variant: str, device: str) -> None:
    import torch

    v = VARIANTS[variant]
    skip = model.get_output_embeddings()
    if v.method == "optimum-quanto":
        from optimum.quanto import freeze, qint2, qint4, quantize

        qtype = {4: qint4, 2: qint2}[int(v.bits)]
        names = [n for n, m in model.named_modules() if m is skip]
        # quantized under inference mode: the decode loop runs in it, and quanto's packed
        # weights made outside it cannot be viewed inside it
        with torch.inference_mode():
            quantize(model, weights=qtype, exclude=names or None)
            freeze(model)
        return
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    cfg = BaseQuantizeConfig(nbits=int(v.bits), group_size=planner.GROUP_LOW_BIT)
    targets = [(name, m) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and m is not skip]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, HQQLinear(linear, cfg, compute_dtype=linear.weight.dtype, device=device, del_orig=True))


def load_in_place(spec: ModelSpec, variant: str, device: str, bf16_ok: bool, progress: ProgressFn | None = None):
    """A quanto/HQQ variant: ``load_causal_lm`` at the compute dtype, its linears quantized, then
    the fast path prepared on the quantized layers (compiling first would recompile on the
    first decode, i.e. on a student's click)."""
    from engine.fastpath import prepare
    from engine.llm import load_causal_lm

    started = time.perf_counter()
    base_spec = spec.with_precision(compute_precision(device, bf16_ok))
    handle = load_causal_lm(base_spec, device, progress, fast_path=False)
    _quantize_in_place(handle.model, variant, device)
    gc.collect()
    prepare(handle)
    handle.load_seconds = time.perf_counter() - started
    handle.footprint_bytes = model_bytes(handle.model)
    return handle


# ---------------------------------------------------------------------------- compare
def ordered(variants: Sequence[str]) -> list[str]:
    """Known variants in table order (highest precision first: the first one is the reference)."""
    chosen = set(variants)
    unknown = chosen - set(VARIANTS)
    if unknown:
        raise UserError("quant.err_unknown_precision", precision=", ".join(sorted(unknown)),
                        choices=", ".join(VARIANTS))
    return [k for k in VARIANTS if k in chosen]


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


__all__ = ["VARIANTS", "Row", "Stage", "Stopped", "compare", "run_comparison", "to_frame", "read_csv", "write_csv",
           "model_bytes", "agreement", "default_variants"]
