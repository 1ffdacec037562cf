"""Foundation: catalog, profiles, memory estimates and eviction, errors, i18n, the served app."""
from __future__ import annotations

import json
import threading
import urllib.request

import gradio as gr
import pytest
import torch

from engine.models.catalog import PROFILES, ROLES, load_catalog, parse_override
from engine.errors import UserError, as_user_error
from engine.models.hardware import GB, Hardware, resolve_profile
from engine.serving.manager import ModelManager


def hw(**kw) -> Hardware:
    base = dict(cpu_name="x86_64", cpu_cores=2, ram_bytes=24 * GB)
    base.update(kw)
    return Hardware(**base)


@pytest.mark.parametrize("hardware, expected", [
    (hw(), "cpu"),
    (hw(gpu_name="Tesla T4", gpu_bytes=15 * GB, bf16=False), "t4"),
    (hw(gpu_name="NVIDIA L4", gpu_bytes=23 * GB, bf16=True), "gpu"),
    (hw(gpu_name="NVIDIA H100 80GB HBM3", gpu_bytes=80 * GB, bf16=True), "gpu"),
    (hw(gpu_name="ZeroGPU (H200 slice)", gpu_bytes=70 * GB, bf16=True, space_id="u/app", zerogpu=True), "zerogpu"),
])
def test_auto_profile_from_hardware(hardware, expected):
    assert resolve_profile("auto", hardware) == expected
    assert resolve_profile("tiny", hardware) == "tiny"


def test_every_profile_defines_every_role():
    for profile in PROFILES:
        cat = load_catalog(profile, env={})
        assert set(cat.specs) == set(ROLES)
    t4 = load_catalog("t4", env={})
    assert t4.spec("base_llm").id == "mistralai/Mistral-7B-v0.1" and t4.spec("base_llm").precision == "nf4"
    assert t4.spec("instruct_llm").id == "mistralai/Mistral-7B-Instruct-v0.1"
    assert all(t4.spec(r).precision != "bf16" for r in ROLES), "a T4 has no bf16"
    assert t4.spec("flux_schnell").transformer_precision == "nf4" and t4.spec("flux_schnell").offload
    assert t4.spec("sdxl_base").vae == "madebyollin/sdxl-vae-fp16-fix"
    assert load_catalog("tiny", env={}).noise and load_catalog("cpu", env={}).stand_in


def test_role_override_from_environment():
    cat = load_catalog("gpu", env={"GENAI_INSTRUCT_LLM": "mistralai/Mistral-7B-Instruct-v0.3@nf4"})
    spec = cat.spec("instruct_llm")
    assert (spec.id, spec.precision) == ("mistralai/Mistral-7B-Instruct-v0.3", "nf4")
    assert parse_override("org/model") == ("org/model", None)
    with pytest.raises(ValueError):
        parse_override("org/model@int3")


@pytest.mark.parametrize("precision", ["fp32", "int8", "nf4"])
def test_estimate_matches_real_footprint(manager, precision):
    spec = manager.catalog.spec("base_llm").with_precision(precision)
    estimate = manager.weights_estimate(spec)
    handle = manager.llm(spec)
    measured = handle.model.get_memory_footprint()
    assert abs(estimate - measured) / measured < 0.10, (estimate, measured)
    assert manager.estimate_bytes(spec) >= estimate  # the fit check adds head-room
    manager.release(spec)


def test_lru_eviction_under_small_budget(manager):
    base = manager.catalog.spec("base_llm")
    instr = manager.catalog.spec("instruct_llm")
    one = manager.estimate_bytes(base)
    small = ModelManager(manager.catalog, manager.hardware, budget_bytes=int(one * 1.5))
    small.llm(base)
    assert small.is_loaded(base)
    small.llm(instr)
    assert small.is_loaded(instr) and not small.is_loaded(base)
    assert small.evictions >= 1


def test_refuses_before_loading_what_cannot_fit(manager):
    spec = manager.catalog.spec("base_llm")
    tiny_budget = ModelManager(manager.catalog, manager.hardware, budget_bytes=1_000_000)
    with pytest.raises(UserError) as err:
        tiny_budget.llm(spec)
    assert err.value.key == "err.too_big" and err.value.params["need_gb"] > 0
    assert not tiny_budget.is_loaded(spec) and tiny_budget.loads == 0


def test_concurrent_requests_load_once(manager):
    fresh = ModelManager(manager.catalog, manager.hardware)
    spec = manager.catalog.spec("instruct_llm")
    handles = []
    threads = [threading.Thread(target=lambda: handles.append(fresh.llm(spec))) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(handles) == 4 and all(h is handles[0] for h in handles)
    assert fresh.loads == 1


def test_offline_uncached_model_gives_clear_message(manager, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = manager.catalog.spec("base_llm").with_id("someone/not-a-cached-model")
    with pytest.raises(UserError) as err:
        manager.llm(spec)
    assert err.value.key == "err.not_cached" and err.value.params["model"] == "someone/not-a-cached-model"


def test_gated_model_without_token_is_refused_before_download(manager, monkeypatch):
    from dataclasses import replace

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_TOKEN_PATH", "/nonexistent/token")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    spec = replace(manager.catalog.spec("base_llm").with_id("black-forest-labs/FLUX.1-dev"), gated=True)
    with pytest.raises(UserError) as err:
        manager.llm(spec)
    assert err.value.key == "err.gated"


def test_library_errors_map_to_user_errors():
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    import httpx

    response = httpx.Response(403, request=httpx.Request("GET", "https://huggingface.co/x"))
    assert as_user_error(GatedRepoError("gated", response=response), "m").key == "err.gated"
    response = httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co/x"))
    assert as_user_error(RepositoryNotFoundError("nope", response=response), "m").key == "err.unknown_model"
    assert as_user_error(torch.OutOfMemoryError("CUDA out of memory"), "m").key == "err.oom"
    assert as_user_error(ValueError("something else")) is None


def test_guard_turns_errors_into_translated_gr_error():
    from ui.feedback import guard
    from ui.i18n import set_forced_lang

    @guard
    def handler(x):
        raise UserError("err.unknown_model", model="a/b")

    set_forced_lang("fr")
    try:
        with pytest.raises(gr.Error) as err:
            handler(1)
        assert "n'existe pas" in err.value.message and "a/b" in err.value.message
    finally:
        set_forced_lang(None)


def test_strings_are_complete_in_both_languages():
    from ui.i18n import request_lang, t, tables

    tab = tables()
    assert set(tab["en"]) == set(tab["fr"]) and len(tab["en"]) > 40
    assert t("err.too_big", "en", model="m", precision="bf16", need_gb=14.5, budget_gb=8, device="CUDA").startswith("m at bf16")
    assert request_lang(None) == "en"


def test_our_strings_never_shadow_gradios_own_keys():
    """Our tables go to Gradio's i18n store, so a key it uses itself (its screen-reader status,
    "common.loading") would show our text, placeholders and all. Only deliberate overrides may."""
    import re
    from pathlib import Path

    from ui.i18n import tables

    assets = Path(gr.__file__).parent / "templates" / "frontend" / "assets"
    core = next(assets.glob("core-*.js")).read_text(encoding="utf-8")
    sections = {m.group(1): set(re.findall(r"(\w+):`", m.group(2)))
                for m in re.finditer(r"\b(\w+)=\{((?:\w+:`[^`]*`,?)+)\}", core)}
    gradio_keys = {f"{name}.{key}" for name, var in re.findall(r"\b(\w{3,}):(\w+)\b", core)
                   if var in sections for key in sections[var]}
    assert {"common.loading", "status.queue_position"} <= gradio_keys  # the parse still finds Gradio's table
    overrides = {"status.queue_position", "common.loading", "common.complete", "common.error", "common.run"}
    assert set(tables()["en"]) & gradio_keys <= overrides
    for key in overrides & gradio_keys:  # an override keeps Gradio's placeholders
        gradio_text = re.search(rf"{key.split('.')[1]}:`([^`]*)`", core).group(1)
        for lang in ("en", "fr"):
            assert set(re.findall(r"\{\w+\}", tables()[lang][key])) == set(re.findall(r"\{\w+\}", gradio_text)), key


def test_served_app_has_all_tabs_and_answers_the_api(app_url, client):
    with urllib.request.urlopen(app_url + "config", timeout=10) as resp:
        config = json.load(resp)
    tab_ids = {c["props"].get("elem_id") for c in config["components"] if c.get("type") == "tabitem"}
    top_level = {"tab-base_vs_instruct", "tab-tokenizers", "tab-quantization", "tab-techniques",
                 "tab-image_prompting", "tab-about"}
    assert top_level <= tab_ids, top_level - tab_ids
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for api in ("/compare", "/tokenize", "/quantize_weights", "/quantize_compare", "/memory_plan",
                "/run_technique", "/benchmark_techniques", "/generate_images", "/about"):
        assert api in named, api
    overview, table = client.predict(api_name="/about")
    assert "tiny" in overview
