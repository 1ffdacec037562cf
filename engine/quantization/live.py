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
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator, Sequence

from engine.catalog import PRECISIONS, ModelSpec
from engine.errors import UserError, as_user_error
from engine.memory import free_memory
from engine.quantization import planner

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


# ---------------------------------------------------------------------------- results
@dataclass
class Row:
    precision: str
    method: str
    bits: float
    status: str = "pending"  # ok | skipped | failed
    memory_mb: float | None = None  # what the weights really take, quantization scales included
    hf_footprint_mb: float | None = None  # model.get_memory_footprint()
    memory_ratio: float | None = None  # vs the reference row
    load_s: float | None = None
    ttft_s: float | None = None
    tokens: int | None = None
    seconds: float | None = None
    tok_per_s: float | None = None
    speed_ratio: float | None = None
    ppl_en: float | None = None
    ppl_fr: float | None = None
    agreement_pct: float | None = None
    first_divergence: int | None = None
    note: str = ""
    output: str = ""
    token_ids: list[int] = field(default_factory=list, repr=False)

    def as_record(self) -> dict:
        rec = asdict(self)
        rec.pop("token_ids")
        return rec


COLUMNS = [f.name for f in fields(Row) if f.name != "token_ids"]
INT_COLUMNS = ("tokens", "first_divergence")
TEXT_COLUMNS = ("precision", "method", "status", "note", "output")


def to_frame(rows: Sequence[Row]):
    import pandas as pd

    df = pd.DataFrame([r.as_record() for r in rows], columns=COLUMNS)
    return normalize_frame(df)


def normalize_frame(df):
    """Column types a CSV round trip preserves: nullable ints, floats, plain strings."""
    import pandas as pd

    df = df.copy()
    for col in COLUMNS:
        if col in INT_COLUMNS:
            df[col] = pd.array(df[col], dtype="Int64")
        elif col in TEXT_COLUMNS:
            df[col] = df[col].fillna("").astype(str)
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    return df[COLUMNS]


def write_csv(rows: Sequence[Row], path: str | Path) -> Path:
    path = Path(path)
    to_frame(rows).to_csv(path, index=False)
    return path


def read_csv(path: str | Path):
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in COLUMNS if c not in TEXT_COLUMNS})
    return normalize_frame(df)


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


def run_greedy(handle, prompt_text: str, max_new_tokens: int):
    """(token ids, text, ttft s, total s, tokens/s) of one greedy generation.

    Runs on a private inline engine: the timing is this model's alone (not shared with other
    users' rows), and nothing keeps a reference to the variant once it is freed.
    """
    from engine.generation import DecodeEngine, SamplingParams, stream

    params = SamplingParams(max_new_tokens=max_new_tokens, greedy=True, temperature=0.0)
    prompt = prompt_for(handle, prompt_text)
    last = None
    for last in stream(handle, prompt, params, eng=DecodeEngine(background=False)):
        if last.error is not None:
            raise last.error
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
    need = estimate_variant_bytes(manager, spec, variant)
    # quanto/HQQ first load the model at its compute dtype, then quantize it in place
    full = estimate_variant_bytes(manager, spec, compute_precision(manager.device, manager.hardware.bf16))
    need = max(need, full)
    free = manager.budget - manager.used_bytes()
    if need > free:
        raise UserError("err.too_big", model=spec.id, precision=variant, need_gb=need / 1e9,
                        budget_gb=free / 1e9, device=manager.device.upper())
    return need


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
    """A quanto/HQQ variant: ``load_causal_lm`` at the compute dtype, then its linears quantized."""
    from engine.llm import load_causal_lm

    started = time.perf_counter()
    base_spec = spec.with_precision(compute_precision(device, bf16_ok))
    handle = load_causal_lm(base_spec, device, progress)
    _quantize_in_place(handle.model, variant, device)
    gc.collect()
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


def measure_variant(manager, spec: ModelSpec, variant: str, prompt: str, max_new_tokens: int,
                    passages: dict, progress: ProgressFn | None = None) -> tuple[Row, object]:
    """Load (or reuse), measure and return the row; the caller frees the handle."""
    v = VARIANTS[variant]
    row = Row(precision=variant, method=v.method, bits=v.bits)
    step = (lambda f, d: progress(f, d)) if progress else None
    if variant in PRECISIONS:
        spec_v = spec.with_precision(variant)
        started = time.perf_counter()
        handle = manager.llm(spec_v, step)
        load_s = handle.load_seconds or (time.perf_counter() - started)
    else:
        handle = load_in_place(spec, variant, manager.device, manager.hardware.bf16, step)
        load_s = handle.load_seconds
    row.load_s = round(load_s, 3)
    row.memory_mb = round(model_bytes(handle.model) / 1e6, 3)
    row.hf_footprint_mb = round(handle.model.get_memory_footprint() / 1e6, 3)
    if progress:
        progress(0.6, "generate")
    run_greedy(handle, prompt, min(WARMUP_TOKENS, max_new_tokens))  # first-call kernel set-up is not speed
    ids, text, ttft, total, tps = run_greedy(handle, prompt, max_new_tokens)
    row.token_ids, row.output = ids, text
    row.tokens, row.seconds = len(ids), round(total, 4)
    row.ttft_s, row.tok_per_s = round(ttft, 4), round(tps, 3)
    if progress:
        progress(0.85, "perplexity")
    row.ppl_en = round(perplexity(handle, passages["en"]), 3)
    row.ppl_fr = round(perplexity(handle, passages["fr"]), 3)
    row.status = "ok"
    return row, handle


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
            progress: ProgressFn | None = None) -> Iterator[list[Row]]:
    """Measure each variant in turn; yield the rows so far after each one (skipped ones included)."""
    if not (prompt or "").strip():
        raise UserError("err.empty_prompt")
    keys = ordered(variants)
    if not keys:
        raise UserError("quant.err_no_precision")
    passages = passages or load_passages()["passages"]
    explain = explain or (lambda e: f"{e.key}: {e.params}")
    rows: list[Row] = []
    n = len(keys)
    for i, key in enumerate(keys):
        v = VARIANTS[key]

        def sub(frac: float, desc: str, i=i, key=key) -> None:
            if progress:
                progress((i + max(0.0, min(1.0, frac))) / n, f"{VARIANTS[key].label}: {desc}")

        sub(0.0, "check")
        reason = unavailable_reason(key, manager.device, manager.hardware.bf16)
        if reason is None:
            try:
                check_variant_fits(manager, spec, key)
            except UserError as exc:
                reason = exc
        if reason is not None:
            rows.append(Row(precision=key, method=v.method, bits=v.bits, status="skipped", note=explain(reason)))
            _fill_relative(rows)
            yield rows
            continue
        spec_v = spec.with_precision(key) if key in PRECISIONS else None
        was_loaded = spec_v is not None and manager.is_loaded(spec_v)
        handle = None
        try:
            row, handle = measure_variant(manager, spec, key, prompt, max_new_tokens, passages, sub)
        except Exception as exc:  # noqa: BLE001 - one variant failing must not stop the others
            user = as_user_error(exc, spec.id) or UserError("quant.why_failed", detail=f"{type(exc).__name__}: {exc}"[:240])
            row = Row(precision=key, method=v.method, bits=v.bits, status="failed", note=explain(user))
        finally:
            handle = None  # noqa: F841 - drop the last reference before freeing memory
            if spec_v is not None and not was_loaded:
                manager.release(spec_v)
            free_memory()
        rows.append(row)
        _fill_relative(rows)
        sub(1.0, "done")
        yield rows


def run_comparison(manager, spec: ModelSpec, variants: Sequence[str], prompt: str, **kwargs) -> list[Row]:
    rows: list[Row] = []
    for rows in compare(manager, spec, variants, prompt, **kwargs):
        pass
    return rows


__all__ = ["VARIANTS", "Row", "compare", "run_comparison", "to_frame", "read_csv", "write_csv",
           "model_bytes", "agreement", "default_variants"]
