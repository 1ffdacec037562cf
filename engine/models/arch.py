"""What a causal LM's config implies, before or after loading: its attention shapes, the KV-cache
bytes per token and per context, its sliding window.

The one home of these formulas: the decode engine (:mod:`engine.generation.kv`), the memory
planner (:mod:`engine.quantization.planner`), the fine-tuning estimate, the load-time estimates
and the bytes one decode step reads (:mod:`.memory`) and the benchmarks (``bench/``) all call them.

A sliding window is reported as it is, layers included (:class:`Attention`): the callers decide
what a mix of sliding and full-attention layers means for them. The batch cache cannot serve one
and refuses it (:func:`engine.generation.kv.sliding_window`); the planner counts each kind of
layer at what transformers' cache keeps for it (:meth:`Attention.kv_cache_bytes`).
"""
from __future__ import annotations

from dataclasses import dataclass

SLIDING, FULL = "sliding_attention", "full_attention"


def text_config(config):
    """The language model's part of a config (a multimodal model's ``text_config``), else itself."""
    get = getattr(config, "get_text_config", None)
    if callable(get):
        return get()
    return getattr(config, "text_config", None) or config


@dataclass(frozen=True)
class Attention:
    """A causal LM's attention shapes, read from its config."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    window: int = 0  # the sliding window in tokens; 0 when no layer slides
    sliding_layers: int = 0  # how many of ``layers`` use that window
    other_layers: int = 0  # layers of another kind in ``layer_types`` (chunked, linear attention…)

    @property
    def mixed(self) -> bool:
        """Layers of different kinds: some slide and some attend to the whole context (Gemma 2/3,
        Ministral), or some attend in another way (Llama 4's chunks)."""
        return 0 < self.sliding_layers < self.layers or self.other_layers > 0

    @property
    def every_layer_window(self) -> int:
        """The window when every layer slides (the cache then stops growing there), else 0."""
        return self.window if self.window and self.sliding_layers == self.layers else 0

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """Keys and values one position adds to a cache: 2 × layers × KV heads × head size × bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes

    def kv_cache_bytes(self, tokens: float, dtype_bytes: int, rows: int = 1) -> int:
        """Keys and values ``rows`` sequences of ``tokens`` tokens keep: a full-attention layer keeps
        every token, a sliding one at most its window (transformers' ``DynamicSlidingWindowLayer``:
        Mistral-7B-v0.1 keeps 4,096)."""
        tokens = max(0, tokens)
        kept = (self.layers - self.sliding_layers) * tokens
        if self.sliding_layers:
            kept += self.sliding_layers * min(tokens, self.window)
        per_layer_token = 2 * self.kv_heads * self.head_dim * dtype_bytes
        return int(per_layer_token * kept * max(1, rows))


def attention(config) -> Attention:
    """The attention shapes and sliding window of a causal LM's config (its text part).

    The window counts where ``sliding_window`` is set and ``use_sliding_window`` is not False
    (Qwen2 sets a window it does not use); ``layer_types`` then says which layers use it (no list:
    every layer, as Mistral-7B-v0.1)."""
    cfg = text_config(config)
    heads = int(getattr(cfg, "num_attention_heads", 0) or 0)
    layers = int(getattr(cfg, "num_hidden_layers", 0) or 0)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // max(heads, 1))
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    window = int(getattr(cfg, "sliding_window", None) or 0)
    if getattr(cfg, "use_sliding_window", True) is False:
        window = 0
    types = list(getattr(cfg, "layer_types", None) or [])
    sliding = 0 if not window else layers if not types else sum(kind == SLIDING for kind in types)
    return Attention(layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                     window=window if sliding else 0, sliding_layers=sliding,
                     other_layers=sum(kind not in (SLIDING, FULL) for kind in types))


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """Keys and values one position adds to a cache of this config's model (every layer)."""
    return attention(config).kv_bytes_per_token(dtype_bytes)


def compute_bytes(model) -> int:
    """Bytes per element of a loaded model's hidden states, hence of its keys and values: its
    input embeddings' dtype (a quantized model computes in it too)."""
    return model.get_input_embeddings().weight.element_size()
