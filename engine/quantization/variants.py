"""The precisions part 3 compares, whether each can run here, what it needs, and how the ones the
model manager does not know are loaded.

bitsandbytes and plain dtypes go through the app's :class:`~engine.serving.manager.ModelManager`.
optimum-quanto and HQQ are not precisions the manager knows, so they are loaded here: the
model at its compute dtype through :func:`engine.models.llm.load_causal_lm`, then its linear layers
(every one but ``lm_head``, like bitsandbytes) replaced in place.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from engine.models.catalog import PRECISIONS, ModelSpec
from engine.errors import UserError
from engine.quantization import planner
from engine.models.memory import model_bytes

ProgressFn = Callable[[float, str], None]


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


def ordered(variants: Sequence[str]) -> list[str]:
    """Known variants in table order (highest precision first: the first one is the reference)."""
    chosen = set(variants)
    unknown = chosen - set(VARIANTS)
    if unknown:
        raise UserError("quant.err_unknown_precision", precision=", ".join(sorted(unknown)),
                        choices=", ".join(VARIANTS))
    return [k for k in VARIANTS if k in chosen]


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
    from engine.models import memory

    if variant in PRECISIONS:
        return manager.estimate_bytes(spec.with_precision(variant))
    _, counts, _ = planner.counts_for(spec.id)
    compute = 4 if manager.device == "cpu" else 2
    weights = planner.weights_bytes(counts, variant, compute)
    fast = manager.fast_path_estimate(spec.with_precision(compute_precision(manager.device, manager.hardware.bf16)))
    return weights + memory.load_overhead(weights, manager.device) + fast  # its fast path is prepared after quantizing


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
    from engine.models.fastpath import prepare
    from engine.models.llm import load_causal_lm

    started = time.perf_counter()
    base_spec = spec.with_precision(compute_precision(device, bf16_ok))
    handle = load_causal_lm(base_spec, device, progress, fast_path=False)
    _quantize_in_place(handle.model, variant, device)
    gc.collect()
    prepare(handle)
    handle.load_seconds = time.perf_counter() - started
    handle.footprint_bytes = model_bytes(handle.model)
    return handle
