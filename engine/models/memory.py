"""Memory estimates made *before* loading (parameters × bytes per weight + overhead) and measures
of a loaded model (:func:`model_bytes`, quantization state included; :func:`decode_read_bytes`,
what one decode step reads).

bitsandbytes quantizes the ``nn.Linear`` layers of the decoder blocks; embeddings, norms and
``lm_head`` stay in the compute dtype. On small models those dominate, so the two groups are
counted separately (this is what makes the estimate match ``get_memory_footprint()``).
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.models import arch
from engine.runtime.build_lock import BUILD_LOCK

# Bytes per quantized weight, block scales included:
#  int8 (LLM.int8): 1 byte + one fp32 scale per output row (negligible, added per row below)
#  nf4/fp4: 0.5 byte + one fp32 absmax per block of 64 weights
#  nf4-dq: 0.5 byte + one 8-bit absmax per 64 + one fp32 per 256 blocks
BYTES_PER_WEIGHT: dict[str, float] = {
    "fp32": 4.0,
    "fp16": 2.0,
    "bf16": 2.0,
    "int8": 1.0,
    "nf4": 0.5 + 4 / 64,
    "fp4": 0.5 + 4 / 64,
    "nf4-dq": 0.5 + 1 / 64 + 4 / (64 * 256),
}
QUANTIZED = {"int8", "nf4", "fp4", "nf4-dq"}
GB = 1e9


@dataclass(frozen=True)
class ParamCounts:
    quantizable: int  # weights of nn.Linear layers that bitsandbytes replaces
    other: int  # embeddings, lm_head, norms, biases
    linear_rows: int = 0  # output features of the quantizable layers (int8 keeps a scale per row)

    @property
    def total(self) -> int:
        return self.quantizable + self.other


def param_counts(config) -> ParamCounts:
    """Count a causal LM's parameters from its config, without allocating weights."""
    import torch
    from transformers import AutoModelForCausalLM

    # the meta device as a context is per thread; accelerate's init_empty_weights patches
    # nn.Module for the whole process, and two threads estimating at once left it patched
    # (every model built afterwards got meta parameters)
    with BUILD_LOCK, torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # a tied lm_head (Qwen2.5, SmolLM2) shares the embedding table: count it once
    skip = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    quantizable = other = rows = 0
    out_emb = model.get_output_embeddings()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not out_emb and not any(s in name for s in skip):
            quantizable += module.weight.numel()
            rows += module.weight.shape[0]
            if module.bias is not None:
                other += module.bias.numel()
    total = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    other = total - quantizable + buffers
    return ParamCounts(quantizable=quantizable, other=other, linear_rows=rows)


def weight_bytes(counts: ParamCounts, precision: str, compute_bytes: int | None = None) -> int:
    """Bytes of the weights at ``precision`` (unquantized modules kept at ``compute_bytes``)."""
    if precision not in BYTES_PER_WEIGHT:
        raise ValueError(f"unknown precision {precision!r}")
    if precision not in QUANTIZED:
        return int(counts.total * BYTES_PER_WEIGHT[precision])
    compute = compute_bytes if compute_bytes is not None else 2
    q = counts.quantizable * BYTES_PER_WEIGHT[precision]
    if precision == "int8":
        q += counts.linear_rows * 4
    return int(q + counts.other * compute)


GRAPH_POOL_MARGIN = 64 * 2**20  # the caching allocator's segments around a graph's buffers


def graph_pool_bytes(config, dtype_bytes: int, bucket: int) -> int:
    """The CUDA-graph pool a compiled decode step keeps (an estimate: ``bench/gpu_check.py`` prints
    the measured pool next to it). Its largest buffers: one layer's keys and values repeated to
    every attention head (transformers' sdpa path repeats them when a mask is passed, as the
    static cache does), the step's logits, the allocator's segments; the graphs of all buckets
    share one pool (one replay thread), so the largest bucket counts."""
    shape = arch.attention(config)
    vocab = arch.text_config(config).vocab_size
    return 2 * bucket * shape.heads * shape.head_dim * dtype_bytes + 2 * vocab * 4 + GRAPH_POOL_MARGIN


def fast_path_bytes(config, dtype_bytes: int, buckets: tuple[int, ...], compiled: bool) -> int:
    """What the fast path allocates at load time: one static cache per bucket (``buckets``
    positions in all) and, compiled, the graph pool."""
    if not buckets:
        return 0
    caches = sum(buckets) * arch.kv_bytes_per_token(config, dtype_bytes)
    return caches + (graph_pool_bytes(config, dtype_bytes, max(buckets)) if compiled else 0)


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


def decode_read_bytes(model, context_tokens: float) -> int:
    """Bytes one decode step of one sequence must read from memory: every weight used per token at
    its stored size (quantized layers: packed codes + scales) but only one row of the
    input-embedding table (a gather), plus the keys and values of ``context_tokens`` tokens.

    A step can never take less than this ÷ the memory bandwidth: the limit benchmarks compare to."""
    weights = model_bytes(model)
    table = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    if output is None or output.weight is not table:  # a tied lm_head reads the whole table anyway
        weights -= tensor_bytes(table) - table.shape[-1] * table.element_size()
    return int(weights + arch.attention(model.config).kv_cache_bytes(context_tokens, arch.compute_bytes(model)))


def load_overhead(weights: int, device: str) -> int:
    """Head-room for activations, the KV cache of a short chat and the CUDA context."""
    if device == "cuda":
        return int(weights * 0.10 + 0.8 * GB)
    return int(weights * 0.10 + 0.2 * GB)


def free_memory() -> None:
    """Give freed tensors back: Python's cycles first, then CUDA's cached blocks."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - freeing memory must never fail a request
        pass
