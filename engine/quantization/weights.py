"""Part 1 — what quantization does to one weight matrix.

Every method quantizes then dequantizes the same matrix, so the error is measured on exactly
what a model would compute with. bitsandbytes (NF4, FP4, LLM.int8's row-wise int8) and GGUF
(``gguf.quants``) run their own code; the plain integer schemes are written here because they
are the textbook definitions the others refine.

Block formats work on the weights in row-major order cut into runs of the block size: for a
matrix whose row length is a multiple of 256 (every real LLM layer) these are exactly the
blocks the libraries use along rows.

The matrices come from :mod:`engine.quantization.matrices`; the histogram of the result is drawn
by :mod:`engine.quantization.histogram`.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from engine.errors import UserError
from engine.quantization.matrices import ROW_ALIGN, Matrix

OUTLIER_SIGMAS = 6.0
BLOCK_SIZES = (32, 64, 128, 256)
SWEEP_BITS = tuple(range(1, 9))


@dataclass(frozen=True)
class MethodInfo:
    key: str
    family: str  # series of the error-vs-bits chart
    label: str
    fixed_bits: int | None  # None: any width from 1 to 8 bits (the bits slider)
    uses_block_size: bool = False


def _methods() -> dict[str, MethodInfo]:
    m = [
        MethodInfo("absmax", "int absmax", "Symmetric absmax (one scale per tensor)", None),
        MethodInfo("zeropoint", "int zero-point", "Asymmetric zero-point (one scale per tensor)", None),
        MethodInfo("blockwise", "int blockwise", "Blockwise absmax (one fp16 scale per block)", None, True),
        MethodInfo("int8-rowwise", "bitsandbytes", "LLM.int8 weights (bitsandbytes, row-wise absmax)", 8),
        MethodInfo("nf4", "bitsandbytes", "NF4 (bitsandbytes)", 4, True),
        MethodInfo("nf4-dq", "bitsandbytes", "NF4 + double quantization (bitsandbytes)", 4, True),
        MethodInfo("fp4", "bitsandbytes", "FP4 (bitsandbytes)", 4, True),
        MethodInfo("Q8_0", "GGUF", "GGUF Q8_0", 8),
        MethodInfo("Q6_K", "GGUF", "GGUF Q6_K", 6),
        MethodInfo("Q5_1", "GGUF", "GGUF Q5_1", 5),
        MethodInfo("Q5_0", "GGUF", "GGUF Q5_0", 5),
        MethodInfo("Q4_1", "GGUF", "GGUF Q4_1", 4),
        MethodInfo("Q4_0", "GGUF", "GGUF Q4_0", 4),
        MethodInfo("MXFP4", "GGUF", "GGUF MXFP4", 4),
        MethodInfo("TQ2_0", "GGUF", "GGUF TQ2_0 (ternary)", 2),
    ]
    return {x.key: x for x in m}


METHODS: dict[str, MethodInfo] = _methods()
GGUF_PYTHON = ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "MXFP4", "TQ2_0")  # gguf.quants quantizes these
GGUF_BLOCK = {"Q8_0": 32, "Q6_K": 16, "Q5_1": 32, "Q5_0": 32, "Q4_1": 32, "Q4_0": 32, "MXFP4": 32, "TQ2_0": 256}


# ------------------------------------------------------------------------- quantizers
@dataclass
class Quantized:
    method: str
    bits: int
    dequantized: np.ndarray
    bits_per_weight: float  # storage per weight, scales included
    group: int  # how many weights share one scale (the whole tensor for per-tensor methods)


def _symmetric(blocks: np.ndarray, bits: int, scale_dtype=np.float32) -> np.ndarray:
    """absmax: the largest |w| of each row of ``blocks`` maps to the top level.

    With 1 bit the only symmetric grid that keeps that rule is {-absmax, +absmax} (the sign).
    """
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    qmax = 2 ** (bits - 1) - 1 if bits >= 2 else 1
    scale = (amax / qmax).astype(scale_dtype).astype(np.float32)
    if bits == 1:
        q = np.where(blocks >= 0, 1.0, -1.0).astype(np.float32)
    else:
        safe = np.where(scale == 0, 1.0, scale)
        q = np.clip(np.round(blocks / safe), -qmax, qmax)
    return (q * scale).astype(np.float32)


def _zeropoint_params(x: np.ndarray, bits: int) -> tuple[float, float, int]:
    lo, hi = float(x.min()), float(x.max())
    top = 2 ** bits - 1
    scale = (hi - lo) / top if hi > lo else 1.0
    zp = float(np.clip(np.round(-lo / scale), 0, top))
    return scale, zp, top


def _zeropoint(x: np.ndarray, bits: int) -> np.ndarray:
    scale, zp, top = _zeropoint_params(x, bits)
    q = np.clip(np.round(x / scale) + zp, 0, top)
    return ((q - zp) * scale).astype(np.float32)


def _bnb_4bit(flat: np.ndarray, quant_type: str, block: int, double: bool) -> tuple[np.ndarray, float]:
    import torch
    import bitsandbytes.functional as F

    t = torch.from_numpy(np.array(flat, dtype=np.float32, copy=True))
    q, state = F.quantize_4bit(t, blocksize=block, quant_type=quant_type, compress_statistics=double)
    deq = F.dequantize_4bit(q, state).numpy().reshape(flat.shape)
    stored = q.numel() * q.element_size() + state.absmax.numel() * state.absmax.element_size()
    if double:
        stored += state.state2.absmax.numel() * state.state2.absmax.element_size() + 4  # + the fp32 offset
    return deq.astype(np.float32), 8 * stored / flat.size


def _bnb_int8_rowwise(w2d: np.ndarray) -> tuple[np.ndarray, float]:
    import torch
    import bitsandbytes.functional as F

    cb, scb, _ = F.int8_vectorwise_quant(torch.from_numpy(np.array(w2d, dtype=np.float32, copy=True)))
    deq = cb.float() * (scb.float()[:, None] / 127.0)
    stored = cb.numel() * cb.element_size() + scb.numel() * scb.element_size()
    return deq.numpy().astype(np.float32), 8 * stored / w2d.size


def q6_k_quantize(rows: np.ndarray) -> np.ndarray:
    """GGUF Q6_K blocks (210 bytes per 256 weights) for ``rows`` of 256 weights.

    ``gguf`` only dequantizes K-quants, so the bytes are written here in llama.cpp's layout:
    16 groups of 16 weights, each with an int8 scale relative to one fp16 scale per block,
    6-bit codes split into low nibbles (``ql``) and 2 high bits (``qh``). The scale of a group
    maps its largest-magnitude weight to -32 (llama.cpp refines this with a small search,
    so its Q6_K error is a little lower).
    """
    x = np.asarray(rows, dtype=np.float32).reshape(-1, 256)
    n = x.shape[0]
    groups = x.reshape(n, 16, 16)
    idx = np.abs(groups).argmax(axis=-1)[..., None]
    vmax = np.take_along_axis(groups, idx, axis=-1)[..., 0]
    sub = vmax / -32.0
    big = np.take_along_axis(sub, np.abs(sub).argmax(axis=-1)[:, None], axis=-1)  # (n, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(big != 0, -128.0 / big, 0.0)
    scales = np.minimum(127, np.round(iscale * sub)).astype(np.int8)
    d = np.where(iscale != 0, 1.0 / np.where(iscale == 0, 1, iscale), 0.0).astype(np.float16)
    step = d.astype(np.float32) * scales.astype(np.float32)  # (n, 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        levels = np.where(step[..., None] != 0, np.round(groups / step[..., None]), 0)
    q = (np.clip(levels, -32, 31) + 32).astype(np.uint8).reshape(n, 256)
    halves = q.reshape(n, 2, 2, 64)
    ql = ((halves[:, :, 0, :] & 0x0F) | ((halves[:, :, 1, :] & 0x0F) << 4)).astype(np.uint8).reshape(n, 128)
    quarters = (q.reshape(n, 2, 4, 32) >> 4) & 0x03
    qh = np.zeros((n, 2, 32), dtype=np.uint8)
    for s in range(4):
        qh |= (quarters[:, :, s, :] << (2 * s)).astype(np.uint8)
    return np.concatenate([ql, qh.reshape(n, 64), scales.view(np.uint8), d.reshape(n, 1).view(np.uint8)], axis=1)


def gguf_quantize(flat: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, dequantized) for a GGUF format, through the ``gguf`` package."""
    from gguf import GGMLQuantizationType, quants

    rows = np.ascontiguousarray(flat, dtype=np.float32).reshape(-1, ROW_ALIGN)
    qtype = GGMLQuantizationType[fmt]
    data = q6_k_quantize(rows) if fmt == "Q6_K" else quants.quantize(rows, qtype)
    return data, quants.dequantize(data, qtype).astype(np.float32).reshape(flat.shape)


def quantize(values: np.ndarray, method: str, bits: int = 4, block_size: int = 64) -> Quantized:
    """Quantize then dequantize ``values`` (2-D, size a multiple of 256)."""
    if method not in METHODS:
        raise UserError("quant.err_unknown_method", method=method)
    info = METHODS[method]
    x = np.asarray(values, dtype=np.float32)
    bits = int(info.fixed_bits or bits)
    if not 1 <= bits <= 8:
        raise UserError("quant.err_bits", bits=bits)
    if info.uses_block_size and block_size not in BLOCK_SIZES:
        raise UserError("quant.err_block", block=block_size, choices=", ".join(map(str, BLOCK_SIZES)))
    flat = x.reshape(-1)
    n = flat.size
    if method == "absmax":
        deq = _symmetric(flat.reshape(1, -1), bits).reshape(x.shape)
        return Quantized(method, bits, deq, bits + 32 / n, n)
    if method == "zeropoint":
        return Quantized(method, bits, _zeropoint(x, bits), bits + 64 / n, n)
    if method == "blockwise":
        deq = _symmetric(flat.reshape(-1, block_size), bits, np.float16).reshape(x.shape)
        return Quantized(method, bits, deq, bits + 16 / block_size, block_size)
    if method in ("nf4", "nf4-dq", "fp4"):
        deq, bpw = _bnb_4bit(flat, "fp4" if method == "fp4" else "nf4", block_size, method == "nf4-dq")
        return Quantized(method, 4, deq.reshape(x.shape), bpw, block_size)
    if method == "int8-rowwise":
        deq, bpw = _bnb_int8_rowwise(x)
        return Quantized(method, 8, deq, bpw, x.shape[1])
    data, deq = gguf_quantize(flat, method)
    return Quantized(method, bits, deq.reshape(x.shape), 8 * data.nbytes / n, GGUF_BLOCK[method])


# ---------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metrics:
    mse: float
    max_abs_error: float
    snr_db: float
    outliers: int  # weights beyond OUTLIER_SIGMAS standard deviations
    outlier_hurt_pct: float  # weights sharing their scale with an outlier
    zeroed_pct: float  # non-zero weights that came back as exactly 0
    bits_per_weight: float


def outlier_mask(x: np.ndarray) -> np.ndarray:
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    std = flat.std()
    return np.abs(flat - flat.mean()) > OUTLIER_SIGMAS * std if std > 0 else np.zeros(flat.shape, bool)


def hurt_share(x: np.ndarray, group: int) -> float:
    """Percentage of weights whose scale group contains an outlier (its step is stretched by it)."""
    mask = outlier_mask(x)
    if not mask.any():
        return 0.0
    if group >= mask.size:
        return 100.0
    usable = mask.size // group * group
    hit = mask[:usable].reshape(-1, group).any(axis=1)
    return float(100.0 * hit.sum() * group / mask.size)


def measure(x: np.ndarray, q: Quantized) -> Metrics:
    ref = np.asarray(x, dtype=np.float64).reshape(-1)
    err = ref - q.dequantized.astype(np.float64).reshape(-1)
    signal, noise = float((ref ** 2).sum()), float((err ** 2).sum())
    snr = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else 300.0
    nonzero = ref != 0
    zeroed = float(100.0 * ((q.dequantized.reshape(-1) == 0) & nonzero).sum() / max(1, nonzero.sum()))
    return Metrics(
        mse=float((err ** 2).mean()),
        max_abs_error=float(np.abs(err).max()),
        snr_db=float(min(snr, 300.0)),
        outliers=int(outlier_mask(x).sum()),
        outlier_hurt_pct=hurt_share(x, q.group),
        zeroed_pct=zeroed,
        bits_per_weight=float(q.bits_per_weight),
    )


# ----------------------------------------------------------------------------- levels
def _group_absmax(x: np.ndarray, method: str, block_size: int) -> float:
    """The median over scale groups of their largest |w|: the scale of a typical group."""
    info = METHODS[method]
    if method == "int8-rowwise":
        return float(np.median(np.abs(x).max(axis=1)))
    group = block_size if info.uses_block_size else GGUF_BLOCK.get(method, x.size)
    flat = np.abs(np.asarray(x).reshape(-1))
    usable = flat.size // group * group
    return float(np.median(flat[:usable].reshape(-1, group).max(axis=1)))


def probe_levels(method: str, amax: float, bits: int = 4, block_size: int = 64, row: int = 256) -> np.ndarray:
    """The values a block format can output when its block's largest |w| is ``amax``.

    Every group of a probe matrix holds -amax and +amax (so all groups get the same scale) plus
    a slice of a fine ramp over [-amax, amax]; the method's own quantizer maps the ramp onto
    all of its levels, which are then read back.
    """
    info = METHODS[method]
    if method == "int8-rowwise":
        group = row
    elif info.uses_block_size:
        group = block_size
    else:
        group = GGUF_BLOCK[method]
    per_group = group - 2
    chunks = -(-4096 // per_group)
    align = max(1, ROW_ALIGN // math.gcd(group, ROW_ALIGN))
    chunks = -(-chunks // align) * align
    ramp = np.linspace(-amax, amax, chunks * per_group, dtype=np.float32).reshape(chunks, per_group)
    ends = np.tile(np.array([-amax, amax], dtype=np.float32), (chunks, 1))
    probe = np.concatenate([ends, ramp], axis=1)
    if method == "int8-rowwise":
        probe = probe.reshape(-1, row)
    else:
        probe = probe.reshape(-1, ROW_ALIGN)
    deq = quantize(probe, method, bits, block_size).dequantized
    return np.unique(deq)


def levels(x: np.ndarray, method: str, bits: int = 4, block_size: int = 64) -> tuple[np.ndarray, str]:
    """The quantization levels to draw: exact for per-tensor methods, a typical block's otherwise."""
    x = np.asarray(x, dtype=np.float32)
    bits = int(METHODS[method].fixed_bits or bits)
    if method == "absmax":
        amax = float(np.abs(x).max())
        if bits == 1:
            return np.array([-amax, amax], dtype=np.float32), "tensor"
        qmax = 2 ** (bits - 1) - 1
        return (np.arange(-qmax, qmax + 1) * (amax / qmax)).astype(np.float32), "tensor"
    if method == "zeropoint":
        scale, zp, top = _zeropoint_params(x, bits)
        return ((np.arange(0, top + 1) - zp) * scale).astype(np.float32), "tensor"
    row = x.shape[1] if x.ndim == 2 else ROW_ALIGN
    return probe_levels(method, _group_absmax(x, method, block_size), bits, block_size, row=row), "block"


# ---------------------------------------------------------------------- whole analysis
@dataclass
class Analysis:
    matrix: Matrix
    method: str
    bits: int
    block_size: int
    quantized: Quantized
    metrics: Metrics
    levels: np.ndarray
    levels_scope: str  # "tensor" or "block" (a typical block's levels)
    sweep: list[dict] = field(default_factory=list)


def analyze(matrix: Matrix, method: str, bits: int = 4, block_size: int = 64) -> Analysis:
    q = quantize(matrix.values, method, bits, block_size)
    lv, scope = levels(matrix.values, method, q.bits, block_size)
    return Analysis(matrix, method, q.bits, block_size, q, measure(matrix.values, q), lv, scope,
                    sweep(matrix, block_size))


def sweep_points(block_size: int = 64) -> list[tuple[str, int]]:
    """(method, bits) for the error-vs-bits chart: every width for the integer schemes, each format once."""
    points = [(m, b) for m in ("absmax", "zeropoint", "blockwise") for b in SWEEP_BITS]
    points += [(k, int(info.fixed_bits)) for k, info in METHODS.items() if info.fixed_bits is not None]
    return points


def _sweep_cached(matrix: Matrix, block_size: int) -> tuple[tuple, ...]:
    key = (matrix.key, block_size)
    with _SWEEPS_LOCK:
        hit = _SWEEPS.get(key)
    if hit is not None:
        return hit
    rows = []
    for method, bits in sweep_points(block_size):
        q = quantize(matrix.values, method, bits, block_size)
        m = measure(matrix.values, q)
        info = METHODS[method]
        rows.append((method, info.family, info.label, bits, m))
    result = tuple(rows)
    with _SWEEPS_LOCK:
        if len(_SWEEPS) >= 16:
            _SWEEPS.pop(next(iter(_SWEEPS)))
        _SWEEPS[key] = result
    return result


_SWEEPS: dict[tuple, tuple] = {}  # (matrix, block size) → sweep rows: the chart costs ~1 s per matrix
_SWEEPS_LOCK = threading.Lock()


def sweep(matrix: Matrix, block_size: int = 64) -> list[dict]:
    """One row per (method, bits): the data of the error-vs-bits chart and of the metrics table."""
    out = []
    for method, family, label, bits, m in _sweep_cached(matrix, block_size):
        out.append({
            "method": method, "family": family, "label": label, "bits": bits,
            "bits_per_weight": round(m.bits_per_weight, 4), "mse": m.mse, "max_abs_error": m.max_abs_error,
            "snr_db": round(m.snr_db, 2), "outlier_hurt_pct": round(m.outlier_hurt_pct, 2),
            "zeroed_pct": round(m.zeroed_pct, 2),
        })
    return out
