"""One formula per figure (``engine/models/arch.py``): the KV-cache bytes per token, the sliding
window and the bytes a decode step reads, as the decode engine, the planner, the load-time
estimates and the benchmarks all use them; and what each does with a model that mixes
sliding-window and full-attention layers (the engine refuses it, the planner counts it)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM, MistralConfig, Qwen2Config

from engine.generation import DecodeEngine, SamplingParams
from engine.generation.kv import kv_spec, sliding_window
from engine.models import arch, memory
from engine.models.catalog import ModelSpec
from engine.models.llm import LLMHandle
from engine.quantization import planner

SHAPES = dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
              head_dim=8, max_position_embeddings=256)


def gemma_mixed() -> Gemma2Config:
    """Gemma 2's layout: sliding-window and full-attention layers alternate (4 layers, a 16-token window)."""
    return Gemma2Config(num_hidden_layers=4, sliding_window=16, **SHAPES)


def test_mistral_7b_every_layer_slides():
    config = MistralConfig(max_position_embeddings=32768, sliding_window=4096)  # Mistral-7B-v0.1's
    shape = arch.attention(config)
    assert (shape.layers, shape.kv_heads, shape.head_dim) == (32, 8, 128)
    assert shape.window == shape.every_layer_window == 4096 and not shape.mixed
    assert arch.kv_bytes_per_token(config, 2) == 2 * 32 * 8 * 128 * 2 == 131_072
    assert shape.kv_cache_bytes(10_000, 2) == 131_072 * 4096  # the cache stops growing at the window
    assert shape.kv_cache_bytes(1_000, 2, rows=3) == 131_072 * 1_000 * 3
    assert sliding_window(config) == 4096
    assert planner.context_limits("mistral-7b") == (32768, 4096)
    plan = planner.plan("mistral-7b", context_length=8192)
    assert plan.sliding_window == 4096 and plan.row("bf16").kv_cache_gb == 131_072 * 4096 / 1e9


def test_a_window_the_config_does_not_use_is_no_window():
    config = Qwen2Config(sliding_window=4096, use_sliding_window=False, **SHAPES, num_hidden_layers=2)
    shape = arch.attention(config)
    assert shape.window == shape.sliding_layers == 0 and not shape.mixed
    assert sliding_window(config) is None
    assert shape.kv_cache_bytes(1000, 2) == arch.kv_bytes_per_token(config, 2) * 1000


def test_mixed_layers_are_counted_by_the_planner(monkeypatch):
    """The planner's honest figure: each sliding layer keeps its window, each full layer the
    whole context; no window is announced (the cache does not stop growing)."""
    config = gemma_mixed()
    shape = arch.attention(config)
    assert shape.mixed and (shape.window, shape.sliding_layers, shape.layers) == (16, 2, 4)
    assert shape.every_layer_window == 0
    per_layer_token = 2 * 2 * 8 * 2  # keys and values × KV heads × head size × bf16 bytes
    assert shape.kv_cache_bytes(64, 2) == per_layer_token * (2 * 64 + 2 * 16)
    assert shape.kv_cache_bytes(64, 2) < arch.kv_bytes_per_token(config, 2) * 64
    monkeypatch.setitem(planner.PRESETS, "gemma-mixed", ("Gemma-2-shaped", gemma_mixed))
    planner.counts_for.cache_clear()
    try:
        plan = planner.plan("gemma-mixed", context_length=64, batch_size=2)
        assert plan.sliding_window == 0
        assert plan.row("bf16").kv_cache_gb * 1e9 == pytest.approx(per_layer_token * (2 * 64 + 2 * 16) * 2)
        assert planner.context_limits("gemma-mixed") == (256, 0)
    finally:
        planner.counts_for.cache_clear()


def test_mixed_layers_are_refused_by_the_engine(tiny_llms):
    """The batch cache masks one window for every layer: it refuses such a model with a message
    instead of serving wrong attention, and the request ends (nobody waits forever)."""
    config = gemma_mixed()
    with pytest.raises(NotImplementedError, match="mixing sliding-window and full-attention"):
        sliding_window(config)
    other = SimpleNamespace(sliding_window=16, layer_types=["sliding_attention", "chunked_attention"],
                            num_hidden_layers=2, **SHAPES)
    assert arch.attention(other).mixed  # a kind of layer the cache does not know is refused too
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = None
    handle = LLMHandle(spec=ModelSpec(role="test", kind="causal_lm", id="gemma-mixed", precision="fp32"),
                       model=model, tokenizer=AutoTokenizer.from_pretrained(tiny_llms["tiny/mistral-base"]),
                       device="cpu")
    eng = DecodeEngine(background=False)
    req = eng.submit(handle, [1, 2, 3], SamplingParams(max_new_tokens=4, greedy=True), eos_ids=set())
    list(eng.wait([req]))
    update = req.update()
    assert update.error is not None and "mixing sliding-window" in str(update.error.params.get("detail", ""))
    assert req.generated == []


def test_the_engine_the_estimates_and_the_benches_count_the_same_bytes(tiny_llms, manager):
    """The batch cache, the fast path's booking and the bytes a decode step reads all come from
    the one formula: on a loaded tiny model they agree with what the cache really allocates."""
    handle = manager.llm(manager.catalog.spec("base_llm"))
    model = handle.model
    per_token = arch.kv_bytes_per_token(model.config, arch.compute_bytes(model))
    assert kv_spec(model).bytes_per_token == per_token
    keys = [torch.zeros(1, kv_spec(model).kv_heads, 10, kv_spec(model).head_dim, dtype=model.dtype)
            for _ in range(2 * kv_spec(model).layers)]
    assert sum(k.nelement() * k.element_size() for k in keys) == 10 * per_token  # what a cache row holds
    assert memory.fast_path_bytes(model.config, arch.compute_bytes(model), (8, 16), compiled=False) == 24 * per_token
    step = memory.decode_read_bytes(model, 100) - memory.decode_read_bytes(model, 0)
    assert step == 100 * per_token
    table = model.get_input_embeddings().weight
    read_weights = memory.decode_read_bytes(model, 0)
    assert read_weights == memory.model_bytes(model) - (table.numel() - table.shape[-1]) * table.element_size()
