"""A 16 GB T4, simulated on CPU: detected without bf16, fp16 compute, GPU memory counted right, defaults that fit.

The simulated T4 answers like torch on a real one: ``torch.cuda.is_bf16_supported()`` says True
(emulated bf16 counts by default) and False only with ``including_emulation=False``. Model sizes
come from the published configs in ``bench/configs/`` (the Hub is not reachable here).
"""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import gradio as gr
import pytest
import torch

from engine.models.catalog import load_catalog
from engine.models.hardware import GB, detect, resolve_profile
from engine.serving.manager import ModelManager
from tests.conftest import ROOT

# What torch reports for a Colab / class T4 ("GPU 0 has a total capacity of 14.75 GiB" in its
# out-of-memory messages): 92% of it is the 14.57 GB budget the model cache works with.
T4_BYTES = int(14.75 * GB)
CONFIGS = ROOT / "bench" / "configs"
PUBLISHED = {  # Hub id → its config.json, copied into bench/configs/
    "mistralai/Mistral-7B-v0.1": "mistral-7b.json",
    "mistralai/Mistral-7B-Instruct-v0.1": "mistral-7b.json",
    "Qwen/Qwen2.5-0.5B-Instruct": "qwen2.5-0.5b-instruct.json",
}
KV_BYTES_PER_TOKEN = 2 * 32 * 8 * 128 * 2  # Mistral-7B in fp16: K and V × 32 layers × 8 KV heads × 128 dims


@pytest.fixture
def simulated_t4(monkeypatch):
    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return including_emulation  # a T4 (sm_75) has no bf16 units; torch counts emulation unless told not to

    props = SimpleNamespace(name="Tesla T4", total_memory=T4_BYTES, major=7, minor=5, multi_processor_count=40)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.delenv("SPACE_ID", raising=False)
    return detect(env={})


@pytest.fixture
def published_configs(monkeypatch):
    """``AutoConfig.from_pretrained(hub_id)`` answers with the published config, as it would online."""
    from transformers import AutoConfig

    from engine.quantization import planner

    real = AutoConfig.from_pretrained.__func__

    def from_pretrained(cls, name, *args, **kwargs):
        if name in PUBLISHED:
            values = json.loads((CONFIGS / PUBLISHED[name]).read_text())
            return AutoConfig.for_model(values.pop("model_type"), **values)
        return real(cls, name, *args, **kwargs)

    monkeypatch.setattr(AutoConfig, "from_pretrained", classmethod(from_pretrained))
    planner.counts_for.cache_clear()
    yield
    planner.counts_for.cache_clear()


def test_t4_is_detected_without_bf16_and_computes_in_fp16(simulated_t4):
    from engine.models.llm import quantization_config, torch_dtype

    hw = simulated_t4
    assert (hw.gpu_name, hw.gpu_bytes, hw.bf16) == ("Tesla T4", T4_BYTES, False)
    assert resolve_profile("auto", hw) == "t4" and "no bf16" in hw.summary()
    # NF4 compute, embeddings and lm_head (the dtype of the unquantized modules) in fp16, not emulated bf16
    for precision in ("nf4", "nf4-dq", "fp4", "int8"):
        assert torch_dtype(precision, "cuda") == torch.float16, precision
    assert quantization_config("nf4", "cuda").bnb_4bit_compute_dtype == torch.float16


def test_quantization_tab_does_not_offer_bf16_on_a_t4(simulated_t4):
    import tabs.quantization as tab
    from engine.quantization import variants
    from ui.context import AppContext

    catalog = load_catalog("t4", env={})
    ctx = AppContext(manager=ModelManager(catalog, simulated_t4), catalog=catalog, hardware=simulated_t4)
    with gr.Blocks() as demo, gr.Tabs(), gr.Tab("quantization", id="quantization"):  # as app.py builds it
        tab.build(ctx)
    ticked = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "quant-l-precisions").value
    assert "bf16" not in ticked and "fp16" in ticked
    reason = variants.unavailable_reason("bf16", "cuda", simulated_t4.bf16)  # ticked by hand: skipped, with the reason
    assert reason is not None and reason.key == "quant.why_no_bf16"
    assert variants.compute_precision("cuda", simulated_t4.bf16) == "fp16"  # what HQQ / quanto rows load before quantizing


def test_offloaded_components_are_not_counted_as_gpu_memory(manager):
    """With model CPU offload only one component at a time is on the GPU: the measurement after
    load counts the largest one, not the sum (FLUX on a T4 was booked at ≈ 18 GB)."""
    from engine.images import imagegen
    from engine.serving.manager import _measured_bytes

    spec = manager.catalog.spec("flux_schnell")
    pipe = imagegen.load_pipeline(spec, "cpu")  # a private copy: the shared one stays as it is
    sizes = {name: sum(t.numel() * t.element_size() for t in (*c.parameters(), *c.buffers()))
             for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
    assert _measured_bytes(pipe) == sum(sizes.values())
    pipe.enable_model_cpu_offload(device="cpu")  # diffusers' own offload: accelerate CpuOffload hooks
    assert _measured_bytes(pipe) == max(sizes.values()) < sum(sizes.values())
    image = imagegen.generate(pipe, imagegen.settings_for(spec, "a cat", tiny=True)).image  # still generates
    assert image.size == (imagegen.TINY_SIZE, imagegen.TINY_SIZE)


def graph_pool(config: dict, bucket: int) -> int:
    """What the estimate books for a compiled step's CUDA-graph pool (engine.models.memory.graph_pool_bytes),
    written out: one layer's keys and values repeated to every head in fp16, the fp32 logits, 64 MiB."""
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    return 2 * bucket * config["num_attention_heads"] * head_dim * 2 + 2 * config["vocab_size"] * 4 + 64 * 2**20


def test_the_estimate_books_the_fast_path_before_loading(simulated_t4, published_configs):
    """On CUDA each LLM compiles its decode step at load time: its static caches and the graph pool
    are in the estimate the budget is checked against, not only measured after the load."""
    from engine.models import memory

    catalog = load_catalog("t4", env={})
    manager = ModelManager(catalog, simulated_t4)
    spec = catalog.spec("base_llm")
    assert spec.fast_path_buckets == (1024,)  # the t4 profile prepares one 1024-token static cache per model
    mistral = json.loads((CONFIGS / "mistral-7b.json").read_text())
    fast = 1024 * KV_BYTES_PER_TOKEN + graph_pool(mistral, 1024)
    assert manager.fast_path_estimate(spec) == fast  # 0.13 GB of static cache + 0.08 GB of graph pool
    weights = manager.weights_estimate(spec)
    assert manager.estimate_bytes(spec) == weights + memory.load_overhead(weights, "cuda") + fast
    # the default buckets (1,024 + 4,096 tokens) would book 0.81 GB per 7B model
    both = replace(spec, fast_path_buckets=None)
    assert manager.fast_path_estimate(both) == 5120 * KV_BYTES_PER_TOKEN + graph_pool(mistral, 4096)


def test_t4_defaults_fit_with_both_llms_resident(simulated_t4, published_configs):
    from engine.quantization import variants

    catalog = load_catalog("t4", env={})
    manager = ModelManager(catalog, simulated_t4)
    assert manager.budget == pytest.approx(14.57e9, rel=0.01)
    llms = sum(manager.estimate_bytes(catalog.spec(role)) for role in ("base_llm", "instruct_llm"))
    # Mistral-7B NF4: 4.45 GB of weights + head-room + its fast path (0.22 GB), each
    assert llms == pytest.approx(2 * 5.91e9, rel=0.01)
    free = manager.budget - llms
    assert free >= 2 * 8192 * KV_BYTES_PER_TOKEN, "both LLMs should keep room for 8k tokens of KV cache each"

    # The quantization tab loads its subject one precision at a time beside the two LLMs: every
    # default row fits without evicting them, and leaves room for one more 4k-token conversation.
    subject = catalog.spec("quant_subject")
    rows = variants.default_variants(simulated_t4.device, simulated_t4.bf16)
    need = {v: variants.estimate_variant_bytes(manager, subject, v) for v in rows}
    need["load"] = variants.estimate_variant_bytes(manager, subject, variants.compute_precision("cuda", False))  # HQQ's load
    assert max(need.values()) + 4096 * KV_BYTES_PER_TOKEN <= free, need
    qwen = json.loads((CONFIGS / "qwen2.5-0.5b-instruct.json").read_text())
    qwen_fast = 1024 * 2 * 24 * 2 * 64 * 2 + graph_pool(qwen, 1024)  # 24 layers × 2 KV heads × 64 dims, fp16
    assert need["fp16"] == pytest.approx(0.494e9 * 2 * 1.1 + 0.8e9 + qwen_fast, rel=0.02)  # the reference row: 1.97 GB

    # The image tab's default selection fits the budget (alone: moving to it may release the LLMs).
    defaults = [catalog.spec(role) for role in catalog.image_defaults]
    assert sum(manager.estimate_bytes(s) for s in defaults) <= manager.budget
    pair = [catalog.spec("sdxl_turbo"), catalog.spec("flux_schnell")]  # the old default pair does not fit
    assert sum(manager.estimate_bytes(s) for s in pair) > manager.budget


def test_two_buckets_per_model_would_not_leave_the_quantization_tab_room_on_a_t4(simulated_t4, published_configs):
    """Why the t4 profile keeps one static-cache bucket: with the default two (1,024 + 4,096 tokens,
    0.81 GB per 7B model counted), the quantization tab's reference row no longer fits beside the LLMs."""
    from engine.quantization import variants

    catalog = load_catalog("t4", env={})
    manager = ModelManager(catalog, simulated_t4)
    specs = {role: replace(catalog.spec(role), fast_path_buckets=None) for role in ("base_llm", "instruct_llm")}
    llms = sum(manager.estimate_bytes(s) for s in specs.values())
    subject = replace(catalog.spec("quant_subject"), fast_path_buckets=None)
    assert llms + variants.estimate_variant_bytes(manager, subject, "fp16") > manager.budget


def test_mistral_7b_as_the_t4_subject_would_not_fit(simulated_t4, published_configs):
    """Why the subject changed: Mistral-7B's fp16 reference cannot load on a T4, and its int8 row
    would push the class's LLMs out."""
    from engine.quantization import variants

    catalog = load_catalog("t4", env={})
    manager = ModelManager(catalog, simulated_t4)
    mistral = replace(catalog.spec("quant_subject"), id="mistralai/Mistral-7B-Instruct-v0.1")
    assert variants.estimate_variant_bytes(manager, mistral, "fp16") > manager.budget
    llms = sum(manager.estimate_bytes(catalog.spec(role)) for role in ("base_llm", "instruct_llm"))
    assert llms + variants.estimate_variant_bytes(manager, mistral, "int8") > manager.budget


def test_image_tab_ticks_the_profile_defaults(simulated_t4):
    import tabs.image_prompting as tab
    from ui.context import AppContext

    for profile, expected in (("t4", ["sdxl_turbo"]), ("gpu", ["sdxl_turbo", "flux_schnell"])):
        catalog = load_catalog(profile, env={})
        ctx = AppContext(manager=ModelManager(catalog, simulated_t4), catalog=catalog, hardware=simulated_t4)
        with gr.Blocks() as demo:
            tab.build(ctx)
        ticked = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "img-models").value
        assert ticked == expected, profile


def test_component_sizes_match_the_published_configs():
    """The estimate's per-component table (engine/images/imagegen.py) is what the published configs build."""
    import sys

    from engine.images import imagegen

    sys.path.insert(0, str(ROOT / "bench"))
    import images  # bench/images.py builds the real-shape pipelines

    for role in ("sdxl_base", "flux_dev"):
        pipe = images.build(role, "real", "meta", torch.bfloat16)  # shapes only: no memory
        kind = images.FILES[role][0]
        for name, billions in imagegen.COMPONENTS_B[kind].items():
            counted = sum(p.numel() for p in getattr(pipe, name).parameters()) / 1e9
            assert counted == pytest.approx(billions, abs=0.0005), (role, name)  # the table rounds to millions
