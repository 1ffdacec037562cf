"""Fine-tuning memory planner: each term against hand-computed values, the formulas against real
training steps measured on CPU, the API, a link, and the section in Chromium (French)."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from engine.errors import UserError
from engine.quantization import finetune as ft
from tests.conftest import ROOT

MISTRAL_PARAMS = 7_241_732_096  # Mistral-7B-v0.1: embeddings and lm_head untied
H, I, KV, HEADS, LAYERS, VOCAB = 4096, 14336, 1024, 32, 32, 32000


# ------------------------------------------------------------------------------ terms, by hand
def test_mistral_7b_terms_by_hand():
    s = ft.structure("mistral-7b")
    assert (s.params, s.layers, s.hidden, s.intermediate, s.kv_dim, s.vocab) == (MISTRAL_PARAMS, LAYERS, H, I, KV,
                                                                                 VOCAB)
    # LoRA r = 8 on q_proj (4096 → 4096) and v_proj (4096 → 1024), 32 layers
    qv = ft.Setup(method="lora", precision="bf16", rank=8, targets=("q_proj", "v_proj"))
    assert ft.adapter_params(s, qv) == 32 * (8 * (4096 + 4096) + 8 * (4096 + 1024)) == 3_407_872
    # full fine-tuning, bf16 mixed precision: 2 (weights) + 2 (gradients) + 12 (fp32 master + 2 moments) bytes
    full = ft.plan("mistral-7b", method="full", precision="bf16", optimizer="adamw", batch_size=1, seq_len=512)
    assert full.terms["weights"] == 2 * MISTRAL_PARAMS and full.terms["gradients"] == 2 * MISTRAL_PARAMS
    assert full.terms["optimizer"] == 12 * MISTRAL_PARAMS and full.terms["adapters"] == 0
    # activations of one layer per token, 16-bit: norms 2·(4h + 4) + weight-gradient and linear inputs 2·2·2h
    # + q, k, v, out 2·(2·4096 + 2·1024) + log-sum-exp 4·32 + SwiGLU 4·2·I
    per_layer = 2 * (4 * H + 4) + 2 * 2 * 2 * H + 2 * (2 * H + 2 * KV) + 4 * HEADS + 4 * 2 * I
    assert per_layer == 200_840 == full.layer_per_token
    assert full.terms["activations"] == (LAYERS * per_layer + 4 * H + 4 + 2 * 2 * H) * 512
    assert full.terms["logits"] == 512 * VOCAB * (2 + 4 + 8)
    assert full.peak == full.terms["weights"] + full.terms["optimizer"] + full.terms["gradients"]  # gradients win
    assert full.peak_gb == pytest.approx(16 * MISTRAL_PARAMS / 1e9)  # the textbook 16 bytes per parameter
    # QLoRA r = 16 on q, v: frozen NF4 base, fp32 adapters; the SwiGLU product and the frozen layers'
    # inputs are not kept; each adapter keeps an fp32 copy of its input and its r-wide output
    q = ft.plan("mistral-7b", method="qlora", precision="nf4", batch_size=4, seq_len=512, rank=16)
    n = 32 * (16 * (4096 + 4096) + 16 * (4096 + 1024))
    assert q.trainable == n and q.terms["adapters"] == 4 * n and q.terms["gradients"] == 4 * n
    assert q.terms["optimizer"] == 8 * n
    lora_layer = 2 * (4 * H + 4) + 2 * (2 * H + 2 * KV) + 4 * HEADS + 3 * 2 * I + 2 * 4 * H + 2 * 4 * 16
    assert q.layer_per_token == lora_layer == 172_296
    quantized = 0.5 + 4 / 64  # NF4 codes + an fp32 absmax per 64
    assert q.terms["weights"] == int(s.quantizable * quantized + (MISTRAL_PARAMS - s.quantizable) * 4)
    tokens = 4 * 512
    assert q.terms["activations"] == (LAYERS * lora_layer - (4 * H + 4) + 4 * H + 4) * tokens
    assert q.peak == sum(q.terms.values()) - q.terms["gradients"]  # activations + logits win over gradients


def test_8bit_optimizer_and_checkpointing_by_hand():
    s = ft.structure("mistral-7b")
    # bitsandbytes: 2 bytes + 2 fp32 absmax per 256 values; a tensor under 4,096 values keeps 32-bit states
    assert ft.optimizer_bytes_per_tensor(65_536, "adamw-8bit") == 2 * 65_536 + 2 * 4 * 256
    assert ft.optimizer_bytes_per_tensor(512, "adamw-8bit") == 8 * 512
    assert ft.optimizer_bytes_per_tensor(512, "adamw") == 8 * 512
    lora8 = ft.plan("mistral-7b", method="lora", precision="bf16", optimizer="adamw-8bit", rank=8)
    sizes = ft.adapter_sizes(s, lora8.setup)
    assert lora8.terms["optimizer"] == sum(2 * n + 8 * math.ceil(n / 256) for n in sizes)
    # gradient checkpointing keeps each layer's input, plus one layer recomputed during the backward pass
    ck = ft.plan("mistral-7b", method="lora", precision="bf16", rank=8, batch_size=2, seq_len=1024,
                 checkpointing=True)
    tokens = 2 * 1024
    assert ck.recompute == ck.layer_per_token * tokens
    assert ck.terms["activations"] == (LAYERS * 2 * H + 4 * H + 4) * tokens + ck.recompute
    saved = ck.terms["activations"] - ck.recompute
    steady = ck.terms["weights"] + ck.terms["adapters"] + ck.terms["optimizer"]
    assert ck.peak == steady + saved + max(ck.terms["logits"], ck.recompute + tokens * VOCAB * 2 + ck.terms["gradients"])
    no_ck = ft.plan("mistral-7b", method="lora", precision="bf16", rank=8, batch_size=2, seq_len=1024)
    assert ck.terms["activations"] < no_ck.terms["activations"] / 10 and ck.peak < no_ck.peak


def test_course_reference_rows():
    rows = {r.key: r for r in ft.course_reference("mistral-7b")}
    assert [r.course_gb for r in rows.values()] == [32.0, 5.0, 10.0, 26.0, 20.0]
    assert rows["fp32"].planner_gb == pytest.approx(32, rel=0.05)  # LoRA on fp32 weights at 256 tokens
    assert rows["nf4-b4"].planner_gb == pytest.approx(10, rel=0.15)
    assert rows["nf4-b16"].planner_gb == pytest.approx(26, rel=0.15)
    assert rows["nf4-b1"].matching_seq is None  # the planner's NF4 weights alone are near 5 GB
    for key in ("fp32", "nf4-b4", "nf4-b16", "int8"):  # the stated sequence length reproduces the course
        r = rows[key]
        setup = ft.course_setup(r.method, r.precision, r.batch_size, r.matching_seq)
        assert ft.plan_for(ft.structure("mistral-7b"), setup).peak_gb == pytest.approx(r.course_gb, rel=0.02)


@pytest.mark.parametrize("settings,key", [
    ({"method": "full", "precision": "nf4"}, "ft.err_precision_full"),
    ({"method": "qlora", "precision": "bf16"}, "ft.err_precision_qlora"),
    ({"method": "lora", "precision": "nf4"}, "ft.err_precision_lora"),
    ({"method": "lora", "precision": "bf16", "targets": []}, "ft.err_no_targets"),
    ({"method": "lora", "precision": "bf16", "targets": ["c_attn"]}, "ft.err_targets_unknown"),
    ({"method": "lora", "precision": "bf16", "rank": 0}, "ft.err_rank"),
    ({"method": "full", "precision": "fp32", "seq_len": 40_000}, "ux.plan.err_context"),
    ({"method": "full", "precision": "fp32", "batch_size": 0}, "ft.err_sizes"),
])
def test_bad_settings_are_refused_with_a_reason(settings, key):
    with pytest.raises(UserError) as err:
        ft.plan("mistral-7b", **settings)
    assert err.value.key == key


# ------------------------------------------------------------------------------ the formulas vs reality
def _mid_config():
    from transformers import MistralConfig

    # layers dominate here (the tiny checkpoint's 32,000-entry vocabulary dominates there)
    return MistralConfig(vocab_size=1024, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         sliding_window=None, tie_word_embeddings=False)


def _tiny_config(tiny_llms):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(tiny_llms["tiny/mistral-base"]))


CASES = [(method, precision, ck) for method, precision in (("full", "fp32"), ("lora", "fp32"), ("lora", "bf16"))
         for ck in (False, True)]


@pytest.mark.parametrize("shape", ["tiny", "mid"])
@pytest.mark.parametrize("method,precision,checkpointing", CASES)
def test_planner_matches_a_measured_training_step(tiny_llms, shape, method, precision, checkpointing):
    """One real AdamW step (peft for LoRA), every tensor followed by PyTorch's MemTracker. Parameters,
    gradients and optimizer states are exact; what is alive after the forward pass and the step's
    peak within 2% — with gradient checkpointing 5% and 10%: the planner approximates what the
    recomputation and ``enable_input_require_grads`` add."""
    pytest.importorskip("peft")
    from engine.quantization import finetune_measure as fm

    config = _tiny_config(tiny_llms) if shape == "tiny" else _mid_config()
    setup = ft.Setup(method=method, precision=precision, batch_size=2, seq_len=128, checkpointing=checkpointing,
                     rank=8, targets=("q_proj", "v_proj", "down_proj"))
    measured = fm.measure_step(config, setup)
    plan = fm.planned(config, setup)
    assert measured.params == plan.terms["weights"] + plan.terms["adapters"]
    assert measured.gradients == plan.terms["gradients"]
    assert measured.optimizer == plan.terms["optimizer"]
    assert measured.after_forward == pytest.approx(fm.forward_bytes(plan, config), rel=0.05 if checkpointing else 0.02)
    assert measured.peak == pytest.approx(plan.peak, rel=0.10 if checkpointing else 0.02)


def test_bench_prints_planner_and_measured():
    pytest.importorskip("peft")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "finetune_memory.py"), "--shape", "mid",
                          "--methods", "lora-bf16", "--seq", "64"], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "planner / measured" in out.stdout and "lora-bf16" in out.stdout


# ------------------------------------------------------------------------------ through the running app
def test_finetune_plan_api_and_bad_input(client):
    from gradio_client.exceptions import AppError, ValidationError

    summary, table, chart, intro, course = client.predict(
        model="mistral-7b", method="qlora", precision="nf4", optimizer="adamw", batch_size=4, seq_len=512,
        checkpointing=False, rank=16, targets=["q_proj", "v_proj"], api_name="/finetune_plan")
    expected = ft.plan("mistral-7b", method="qlora", precision="nf4", batch_size=4, seq_len=512, rank=16)
    assert f"≈ {expected.peak_gb:.1f} GB" in summary and "T4 16 GB" in summary
    rows = {r[0]: r for r in table["data"]}
    assert set(rows) == {"weights", "LoRA adapters", "gradients", "optimizer states", "activations",
                         "logits and loss", "peak of one step"}
    assert rows["activations"][1] == pytest.approx(expected.terms["activations"] / 1e9, abs=1e-3)
    assert "172,296 bytes per token" in rows["activations"][2]
    assert len(course["data"]) == len(ft.COURSE_ROWS) + 1 and "256 tokens" in intro
    assert [r[1] for r in course["data"][:5]] == [32.0, 5.0, 10.0, 26.0, 20.0]
    with pytest.raises(AppError, match="Full fine-tuning trains every weight"):
        client.predict(model="mistral-7b", method="full", precision="nf4", optimizer="adamw", batch_size=1,
                       seq_len=512, checkpointing=False, rank=16, targets=[], api_name="/finetune_plan")
    with pytest.raises(AppError, match="at least one layer"):
        client.predict(model="mistral-7b", method="lora", precision="bf16", optimizer="adamw", batch_size=1,
                       seq_len=512, checkpointing=False, rank=16, targets=[], api_name="/finetune_plan")
    with pytest.raises(AppError, match="at most 2048 tokens"):  # the tiny model's context
        client.predict(model="tiny/mistral-instruct", method="full", precision="fp32", optimizer="adamw",
                       batch_size=1, seq_len=4096, checkpointing=False, rank=16, targets=[],
                       api_name="/finetune_plan")
    with pytest.raises(ValidationError, match="(?i)batch"):  # refused before it is queued
        client.predict(model="mistral-7b", method="full", precision="fp32", optimizer="adamw", batch_size=0,
                       seq_len=512, checkpointing=False, rank=16, targets=[], api_name="/finetune_plan")
    with pytest.raises(ValidationError, match="tiny/nope"):
        client.predict(model="tiny/nope", method="full", precision="fp32", optimizer="adamw", batch_size=1,
                       seq_len=512, checkpointing=False, rank=16, targets=[], api_name="/finetune_plan")


def test_finetune_plan_round_trips_through_a_link(client):
    inputs = {"model": "13b", "method": "lora", "precision": "int8", "optimizer": "adamw-8bit", "batch_size": 2,
              "seq_len": 1024, "checkpointing": True, "rank": 32, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    summary, table, *_ = client.predict(**inputs, api_name="/finetune_plan")
    shared = client.predict("finetune_plan", inputs, {"summary": {"type": "markdown", "value": summary},
                                                      "table": {"type": "table", "headers": table["headers"],
                                                                "data": table["data"]}},
                            api_name="/share_experiment")
    opened = client.predict(shared["id"], api_name="/open_experiment")
    assert opened["api"] == "/finetune_plan" and opened["inputs"] == inputs
    assert opened["outputs"]["summary"]["value"] == summary
    assert client.predict(**opened["inputs"], api_name=opened["api"])[0] == summary
    # on the class wall: the card shows the terms table
    room = client.predict("", api_name="/wall_open_room")["room"]
    client.predict(room, "Zoé", shared["id"], api_name="/wall_post")
    card = client.predict(room, api_name="/wall")["entries"][0]
    assert card["title"] == "13b · lora · int8 · 2 × 1024" and card["tab"] == "quantization"
    part = card["card"]["parts"][0]
    assert part["label"] == "ft.card" and part["rows"][0][0] == table["data"][0][0] == "weights"


# ------------------------------------------------------------------------------ in the browser
def test_finetune_section_in_french_link_and_screenshot(browser, app_url, client):
    from tests.browser import LONG, open_tab, screenshot, toast_text
    from tests.lang_check import find_foreign, visible_text
    from tests.test_languages import open_page
    from ui.i18n import t

    page = open_page(browser, app_url, "fr")
    try:
        open_tab(page, "quantization")
        page.click("#quant-planner-button")
        # filled when the tab opens, in French: the default QLoRA plan and the course's rows
        page.wait_for_function("document.querySelector('#ft-summary')?.innerText?.includes('Pic d')", timeout=LONG)
        page.wait_for_function("document.querySelector('#ft-course')?.innerText?.includes('QLoRA')", timeout=LONG)
        assert "poids" in page.inner_text("#ft-table") and "Go" in page.inner_text("#ft-table")
        # full fine-tuning: the weights switch to a trainable precision, the LoRA controls are disabled
        page.locator("#ft-method label", has_text=t("ft.method_full", "fr")).click()
        page.wait_for_function("document.querySelector('#ft-summary')?.innerText?.includes(%r)"
                               % t("ft.method_full", "fr"), timeout=LONG)
        assert page.locator("#ft-precision input").input_value() == t("ft.prec_fp32", "fr")
        assert page.locator("#ft-rank input[type=range]").is_disabled()
        assert "115,9 Go" in page.inner_text("#ft-summary")  # 16 bytes per parameter, French decimals
        hits = find_foreign(visible_text(page), "fr")
        assert not hits, "\n".join(sorted(set(hits)))
        # a weight precision that full fine-tuning cannot train: the reason, in French
        page.locator("#ft-precision input").click()
        page.locator("[role=option]", has_text=t("ft.prec_nf4", "fr")).first.click()
        assert "L'affinage complet entraîne tous les poids" in toast_text(page)
        # QLoRA with gradient checkpointing at batch 16: the screenshot for the README
        page.locator(".toast-close").first.click()
        page.locator("#ft-method label", has_text=t("ft.method_qlora", "fr")).click()
        page.wait_for_function("document.querySelector('#ft-summary')?.innerText?.includes('QLoRA')", timeout=LONG)
        page.locator("#ft-checkpointing input").check()
        page.wait_for_function("document.querySelector('#ft-summary')?.innerText?.includes('recalcul')", timeout=LONG)
        screenshot(page, "finetune_planner", focus="#ft-summary")
        # presentation mode: the headline readable from the back of the room
        page.locator("#presentation-toggle input").check()
        sizes = page.evaluate("[...document.querySelectorAll('#ft-summary h3, #ft-summary p')]"
                              ".map(e => parseFloat(getComputedStyle(e).fontSize))")
        assert min(sizes) >= 26, sizes
        page.locator("#presentation-toggle input").uncheck()
        # its link restores the same settings elsewhere
        page.click("#share-finetune_plan-copy")
        page.wait_for_function("(document.querySelector('#share-finetune_plan-link textarea, "
                               "#share-finetune_plan-link input') || {}).value?.includes('?x=')", timeout=LONG)
        link = page.locator("#share-finetune_plan-link textarea, #share-finetune_plan-link input").first.input_value()
        other = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US").new_page()
        other.goto(link)
        other.wait_for_selector("#share-banner", state="visible", timeout=LONG)
        # the saved (French) result, or the same settings recomputed in this page's language
        other.wait_for_function("/recalcul|with gradient checkpointing/.test(document.querySelector('#ft-summary')"
                                ".innerText)", timeout=LONG)
        assert other.locator("#ft-checkpointing input").is_checked()
        other.context.close()
    finally:
        page.context.close()
