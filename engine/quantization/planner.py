"""Part 2 — how much memory a model needs at each precision, and which machines it fits.

Parameter counts come from the model's config through ``engine.models.memory.param_counts`` (linear
layers that get quantized vs embeddings, ``lm_head`` and norms that stay in 16-bit). The same
functions give the estimate the live comparison checks before loading a variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from engine.models import arch, memory
from engine.errors import UserError, as_user_error

GB = 1e9


@dataclass(frozen=True)
class DeviceInfo:
    key: str
    label: str
    capacity_gb: float
    kind: str  # "cuda" or "cpu"

    @property
    def usable_bytes(self) -> int:
        """What a model may use: the app's own rule (92% of GPU memory, 70% of RAM)."""
        return int(self.capacity_gb * GB * (0.92 if self.kind == "cuda" else 0.70))


DEVICES: tuple[DeviceInfo, ...] = (
    DeviceInfo("t4", "T4 16 GB", 16, "cuda"),
    DeviceInfo("l4", "L4 24 GB", 24, "cuda"),
    DeviceInfo("a100-40", "A100 40 GB", 40, "cuda"),
    DeviceInfo("a100-80", "A100 80 GB", 80, "cuda"),
    DeviceInfo("h100", "H100 80 GB", 80, "cuda"),
    DeviceInfo("laptop", "Laptop 16 GB RAM", 16, "cpu"),
)

# Formats of the planner table: key → (label, bits per quantized weight before scales)
PLAN_FORMATS: dict[str, tuple[str, float]] = {
    "fp32": ("fp32", 32),
    "bf16": ("bf16 / fp16", 16),
    "int8": ("int8 (LLM.int8)", 8),
    "nf4": ("NF4", 4),
    "nf4-dq": ("NF4 + double quant", 4),
    "3bit": ("3-bit (group 64)", 3),
    "2bit": ("2-bit (group 64)", 2),
}
GROUP_LOW_BIT = 64  # 3/2-bit (HQQ, GPTQ style): a 16-bit scale and zero per group of 64 weights
QUANTO_GROUP = 128  # optimum-quanto's default group for qint4 / qint2


# ------------------------------------------------------------------------- configs
def _llama_config(**shape):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5, **shape)


def _mistral_7b():
    from transformers import MistralConfig

    # Mistral-7B-v0.1's config.json: MistralConfig's defaults are its shapes, but not its context
    # (transformers defaults to 131,072 positions; v0.1 has 32,768 with a 4,096-token sliding window)
    return MistralConfig(max_position_embeddings=32768, sliding_window=4096)


PRESETS = {
    "mistral-7b": ("Mistral 7B", _mistral_7b),
    # the published Llama-2 13B and 70B shapes
    "13b": ("13B (Llama-2 13B shapes)", lambda: _llama_config(
        hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
        num_key_value_heads=40)),
    "70b": ("70B (Llama-2 70B shapes)", lambda: _llama_config(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
        num_key_value_heads=8)),
}


def preset_choices() -> list[tuple[str, str]]:
    return [(label, key) for key, (label, _) in PRESETS.items()]


def resolve_config(model: str):
    """(label, config) for a preset key, a tiny id or any Hub id (its ``config.json`` only)."""
    model = (model or "").strip()
    if not model:
        raise UserError("quant.err_no_model")
    if model in PRESETS:
        label, make = PRESETS[model]
        return label, make()
    from transformers import AutoConfig

    try:
        if model.startswith("tiny/"):
            from engine.models.tiny import tiny_path

            return model, AutoConfig.from_pretrained(str(tiny_path(model)))
        return model, AutoConfig.from_pretrained(model)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        user = as_user_error(exc, model)
        if user is not None:
            raise user from exc
        raise UserError("err.unknown_model", model=model) from exc


@lru_cache(maxsize=32)
def counts_for(model: str) -> tuple[str, memory.ParamCounts, dict]:
    """(label, parameter counts, {"attention": its shapes and sliding window, "max_context"}) of a
    model, counted on the meta device."""
    label, config = resolve_config(model)
    text = arch.text_config(config)
    try:
        counts = memory.param_counts(config)
    except Exception as exc:  # noqa: BLE001 - not a causal LM (an image model, an encoder…)
        raise UserError("quant.err_not_causal_lm", model=model, kind=type(config).__name__) from exc
    shapes = {
        "attention": arch.attention(text),
        "max_context": int(getattr(text, "max_position_embeddings", 0) or 0),
    }
    return label, counts, shapes


def context_limits(model: str) -> tuple[int, int]:
    """(maximum context in tokens from the model's config — 0 if it does not say —, the sliding
    window when every layer slides, else 0)."""
    _, _, shapes = counts_for(model)
    return shapes["max_context"], shapes["attention"].every_layer_window


# -------------------------------------------------------------------------- bytes
def quantized_bytes_per_weight(fmt: str, compute_bytes: int = 2) -> float:
    """Bytes per weight of a quantized linear layer, scales included."""
    if fmt in ("3bit", "2bit"):
        bits = 3 if fmt == "3bit" else 2
        return bits / 8 + 2 * 2 / GROUP_LOW_BIT
    if fmt.startswith("hqq-"):
        bits = int(fmt.split("-")[1])
        packed = 32 / 10 if bits == 3 else bits  # HQQ packs ten 3-bit codes in an int32
        return packed / 8 + 2 * compute_bytes / GROUP_LOW_BIT
    if fmt.startswith("quanto-int"):
        bits = int(fmt.removeprefix("quanto-int"))
        return bits / 8 + 2 * compute_bytes / QUANTO_GROUP
    return memory.BYTES_PER_WEIGHT[fmt]


def scale_bytes(counts: memory.ParamCounts, fmt: str, compute_bytes: int = 2) -> int:
    """The part of the weights that is block/row scales rather than codes."""
    if fmt == "int8":
        return counts.linear_rows * 4
    if fmt in ("nf4", "fp4", "nf4-dq"):
        return int(counts.quantizable * (memory.BYTES_PER_WEIGHT[fmt] - 0.5))
    if fmt in ("3bit", "2bit"):
        return int(counts.quantizable * 4 / GROUP_LOW_BIT)
    if fmt.startswith("hqq-"):
        return int(counts.quantizable * 2 * compute_bytes / GROUP_LOW_BIT)
    if fmt.startswith("quanto-int"):
        return int(counts.quantizable * 2 * compute_bytes / QUANTO_GROUP)
    return 0


def weights_bytes(counts: memory.ParamCounts, fmt: str, compute_bytes: int = 2) -> int:
    """Bytes of all weights at ``fmt``; modules that are not quantized stay at ``compute_bytes``."""
    if fmt in memory.BYTES_PER_WEIGHT:
        return memory.weight_bytes(counts, fmt, compute_bytes=compute_bytes)
    per = quantized_bytes_per_weight(fmt, compute_bytes)
    return int(counts.quantizable * per + counts.other * compute_bytes)


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class PlanRow:
    format: str
    label: str
    bits_per_weight: float  # of the quantized layers, scales included
    weights_gb: float
    scales_gb: float
    kv_cache_gb: float
    overhead_gb: float
    total_gb: float
    fits: dict  # device key → bool


@dataclass(frozen=True)
class Plan:
    model: str
    label: str
    params_b: float
    quantizable_b: float
    context_length: int
    batch_size: int
    max_context: int
    rows: list[PlanRow]
    sliding_window: int = 0

    def row(self, fmt: str) -> PlanRow:
        return next(r for r in self.rows if r.format == fmt)


def plan(model: str = "mistral-7b", context_length: int = 4096, batch_size: int = 1,
         formats: tuple[str, ...] = tuple(PLAN_FORMATS)) -> Plan:
    """Weights + KV cache + runtime overhead per format, and whether each device holds it."""
    context_length, batch_size = int(context_length), int(batch_size)
    if context_length < 1 or batch_size < 1:
        raise UserError("quant.err_plan_args")
    label, counts, shapes = counts_for(model)
    if shapes["max_context"] and context_length > shapes["max_context"]:
        raise UserError("ux.plan.err_context", model=label, context=context_length, max_context=shapes["max_context"])
    rows = []
    for fmt in formats:
        compute = 4 if fmt == "fp32" else 2
        weights = weights_bytes(counts, fmt, compute)
        kv = shapes["attention"].kv_cache_bytes(context_length, compute, rows=batch_size)
        fits = {}
        for dev in DEVICES:
            overhead = memory.load_overhead(weights, dev.kind)
            fits[dev.key] = weights + kv + overhead <= dev.usable_bytes
        overhead = memory.load_overhead(weights, "cuda")
        bpw = 32.0 if fmt == "fp32" else 16.0 if fmt == "bf16" else 8 * quantized_bytes_per_weight(fmt, compute)
        rows.append(PlanRow(
            format=fmt, label=PLAN_FORMATS.get(fmt, (fmt, 0))[0], bits_per_weight=round(bpw, 3),
            weights_gb=weights / GB, scales_gb=scale_bytes(counts, fmt, compute) / GB, kv_cache_gb=kv / GB,
            overhead_gb=overhead / GB, total_gb=(weights + kv + overhead) / GB, fits=fits,
        ))
    return Plan(model=model, label=label, params_b=counts.total / 1e9, quantizable_b=counts.quantizable / 1e9,
                context_length=context_length, batch_size=batch_size, max_context=shapes["max_context"], rows=rows,
                sliding_window=shapes["attention"].every_layer_window)
