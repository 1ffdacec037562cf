"""Quantization tab: weight quantizers, memory planner, live comparison, and its three APIs."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine.quantization import live, matrices, planner, results, weights
from engine.models.memory import model_bytes
from engine.quantization.variants import PACKAGES

PROMPT = "Explain in two sentences why fewer bits per weight save memory."


# ------------------------------------------------------------------------------ part 1
@pytest.fixture(scope="session")
def tiny_layer(tiny_llms) -> matrices.Matrix:
    names = matrices.list_layers("tiny/mistral-instruct")
    return matrices.checkpoint_matrix("tiny/mistral-instruct", matrices.default_layer(names))


def _mse(values: np.ndarray, method: str, bits: int = 4, block: int = 64) -> float:
    return weights.measure(values, weights.quantize(values, method, bits, block)).mse


@pytest.mark.parametrize("method", ["absmax", "zeropoint", "blockwise"])
def test_integer_error_falls_as_bits_rise(tiny_layer, method):
    # a real (outlier-free) layer: every extra bit strictly lowers the error
    errors = [_mse(tiny_layer.values, method, b) for b in weights.SWEEP_BITS]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    # with outliers, per-tensor schemes waste their first bits (every weight rounds to 0) but never get worse
    synthetic = matrices.synthetic_matrix(8).values
    errors = [_mse(synthetic, method, b) for b in weights.SWEEP_BITS]
    assert all(a >= b * (1 - 1e-9) for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 50


def test_fixed_formats_error_falls_as_bits_rise(tiny_layer):
    x = tiny_layer.values
    gguf_order = ["TQ2_0", "Q4_0", "Q5_0", "Q6_K", "Q8_0"]
    errors = [_mse(x, f) for f in gguf_order]
    assert all(a > b for a, b in zip(errors, errors[1:])), dict(zip(gguf_order, errors))
    assert _mse(x, "Q4_1") > _mse(x, "Q5_1") > _mse(x, "Q8_0")
    assert min(_mse(x, "nf4"), _mse(x, "fp4")) > _mse(x, "int8-rowwise")
    # a smaller block gives each weight a tighter scale
    assert _mse(x, "nf4", block=256) > _mse(x, "nf4", block=32)


def test_outliers_hurt_per_tensor_scales_not_blocks():
    m = weights.measure
    x = matrices.synthetic_matrix(8).values
    per_tensor = m(x, weights.quantize(x, "absmax", 4))
    blocks = m(x, weights.quantize(x, "nf4", 4, 64))
    assert per_tensor.outliers == 8
    assert per_tensor.outlier_hurt_pct == 100.0 and per_tensor.zeroed_pct > 80
    assert blocks.outlier_hurt_pct == pytest.approx(100 * 8 * 64 / x.size)
    assert blocks.snr_db > per_tensor.snr_db + 15
    assert blocks.bits_per_weight == pytest.approx(4 + 32 / 64)
    assert m(x, weights.quantize(x, "nf4-dq", 4, 64)).bits_per_weight < 4.2


def test_nf4_levels_equal_bitsandbytes_table(tiny_layer):
    import bitsandbytes.functional as F

    table = F.get_4bit_type("nf4", device="cpu").numpy()
    # read back through bitsandbytes' own quantize/dequantize, not copied from it
    np.testing.assert_allclose(weights.probe_levels("nf4", 1.0), table, rtol=0, atol=1e-6)
    assert table[0] == -1.0 and table[7] == 0.0 and table[-1] == 1.0 and len(table) == 16
    np.testing.assert_allclose(weights.probe_levels("fp4", 1.0),
                               np.unique(F.get_4bit_type("fp4", device="cpu").numpy()), atol=1e-6)
    levels, scope = weights.levels(tiny_layer.values, "nf4", 4, 64)
    assert scope == "block" and len(levels) == 16
    np.testing.assert_allclose(levels / levels.max(), table, atol=1e-5)


@pytest.mark.parametrize("fmt,bpw,steps", [("Q8_0", 8.5, 0.5), ("Q4_0", 4.5, 1.0)])
def test_gguf_round_trip_matches_gguf_package(tiny_layer, fmt, bpw, steps):
    from gguf import GGMLQuantizationType, quants

    x = tiny_layer.values
    ours = weights.quantize(x, fmt)
    rows = x.reshape(-1, 256)
    qtype = GGMLQuantizationType[fmt]
    theirs = quants.dequantize(quants.quantize(rows, qtype), qtype).reshape(x.shape)
    np.testing.assert_array_equal(ours.dequantized, theirs)
    assert ours.bits_per_weight == pytest.approx(bpw)
    # each weight is within half a step of its block's scale (Q8_0: absmax / 127), or one step for
    # Q4_0 (codes -8…7: the side opposite the block's largest weight stops at 7 steps), plus what
    # storing the scale in fp16 (11-bit mantissa) adds at the top level
    qmax = 127 if fmt == "Q8_0" else 8
    step = np.abs(x.reshape(-1, 32)).max(axis=1, keepdims=True) / qmax
    err = np.abs(x.reshape(-1, 32) - ours.dequantized.reshape(-1, 32))
    assert np.all(err <= step * (steps + qmax * 2.0 ** -11) + 1e-8)
    assert err.mean() < step.mean() * 0.3


def q6_k_reference(rows: np.ndarray) -> np.ndarray:
    """What ``weights.q6_k_quantize`` encodes, computed without packing (to test the byte layout)."""
    blocks = weights.q6_k_quantize(rows)
    n = blocks.shape[0]
    scales = blocks[:, 192:208].view(np.int8).astype(np.float32)
    d = blocks[:, 208:210].copy().view(np.float16).astype(np.float32)
    groups = np.asarray(rows, dtype=np.float32).reshape(n, 16, 16)
    step = (d * scales)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(step != 0, np.clip(np.round(groups / step), -32, 31), 0)
    return (q * step).reshape(n, 256).astype(np.float32)


def test_q6_k_bytes_decode_with_gguf():
    from gguf import GGMLQuantizationType, quants

    x = matrices.synthetic_matrix(8).values.reshape(-1, 256)
    blocks = weights.q6_k_quantize(x)
    assert blocks.shape == (x.shape[0], 210)
    decoded = quants.dequantize(blocks, GGMLQuantizationType.Q6_K)
    np.testing.assert_array_equal(decoded, q6_k_reference(x))
    assert weights.measure(x, weights.quantize(x, "Q6_K")).snr_db > 30


def test_matrix_sources(tiny_layer):
    assert tiny_layer.values.size % 256 == 0 and tiny_layer.source == "tiny/mistral-instruct"
    emb = matrices.checkpoint_matrix("tiny/mistral-instruct", "model.embed_tokens.weight")
    assert emb.full_shape == (32000, 64) and emb.cropped and emb.values.size == matrices.MAX_WEIGHTS
    from engine.errors import UserError

    with pytest.raises(UserError) as err:
        matrices.checkpoint_matrix("tiny/mistral-instruct", "model.no_such.weight")
    assert err.value.key == "quant.err_unknown_layer"


# ------------------------------------------------------------------------------ part 2
def test_planner_gives_the_course_figures():
    p = planner.plan("mistral-7b", context_length=4096, batch_size=1)
    assert 7.1 < p.params_b < 7.4
    assert p.row("bf16").weights_gb == pytest.approx(14.5, abs=0.1)  # "≈ 14.5 GB in 16-bit"
    nf4 = p.row("nf4")
    assert nf4.weights_gb - nf4.scales_gb == pytest.approx(4.0, abs=0.1)  # "≈ 4 GB in 4-bit"
    assert nf4.weights_gb < 4.6 and p.row("nf4-dq").weights_gb < nf4.weights_gb
    assert p.row("int8").weights_gb == pytest.approx(7.5, abs=0.1)
    weights_gb = [r.weights_gb for r in p.rows]
    assert weights_gb == sorted(weights_gb, reverse=True)
    # K and V, 32 layers, 8 KV heads of 128, 2 bytes, 4096 tokens
    assert p.row("bf16").kv_cache_gb * 1e9 == 2 * 32 * 8 * 128 * 2 * 4096
    assert not p.row("bf16").fits["t4"] and p.row("bf16").fits["l4"] and p.row("nf4").fits["t4"]
    big = planner.plan("70b", 4096, 1)
    assert not big.row("nf4").fits["a100-40"] and big.row("nf4").fits["a100-80"]
    assert planner.plan("13b", 4096, 8).row("bf16").kv_cache_gb == pytest.approx(8 * 2 * 40 * 40 * 128 * 2 * 4096 / 1e9)


@pytest.mark.parametrize("precision", ["fp32", "int8", "nf4"])
def test_planner_estimate_matches_memory_footprint(manager, precision):
    spec = manager.catalog.spec("quant_subject").with_precision(precision)
    _, counts, _ = planner.counts_for(spec.id)
    estimate = planner.weights_bytes(counts, precision, compute_bytes=4)  # CPU keeps fp32 compute
    handle = manager.llm(spec)
    try:
        footprint = handle.model.get_memory_footprint()
        assert abs(estimate - footprint) / footprint < 0.10
        assert abs(estimate - model_bytes(handle.model)) / footprint < 0.01
    finally:
        handle = None
        manager.release(spec)


def test_planner_rejects_what_it_cannot_read(tiny_llms):
    from engine.errors import UserError

    with pytest.raises(UserError) as err:
        planner.plan("tiny/no-such-model")
    assert err.value.key == "err.unknown_model"
    with pytest.raises(UserError):
        planner.plan("mistral-7b", context_length=0)


# ------------------------------------------------------------------------------ part 3
@pytest.fixture(scope="module")
def comparison(manager) -> list[results.Row]:
    spec = manager.catalog.spec("quant_subject")
    return live.run_comparison(manager, spec, ["nf4", "int8", "fp32", "quanto-int4", "hqq-3"], PROMPT,
                               max_new_tokens=8)


def test_live_comparison_gives_a_full_row_per_precision(comparison, manager):
    assert [r.precision for r in comparison] == ["fp32", "int8", "nf4", "quanto-int4", "hqq-3"]
    numeric = ["memory_mb", "hf_footprint_mb", "memory_ratio", "load_s", "ttft_s", "tokens", "seconds",
               "tok_per_s", "speed_ratio", "ppl_en", "ppl_fr", "agreement_pct"]
    for r in comparison:
        assert r.status == "ok", r.note
        for col in numeric:
            value = getattr(r, col)
            assert value is not None and math.isfinite(value) and value >= 0, (r.precision, col, value)
        assert r.tokens == 8 and r.memory_mb > 0 and r.tok_per_s > 0 and r.ppl_en > 1
    ref = comparison[0]
    assert ref.agreement_pct == 100.0 and ref.first_divergence is None and ref.memory_ratio == 1.0
    # quantized linear layers are smaller, even where embeddings dominate
    assert all(r.memory_mb < ref.memory_mb for r in comparison[1:])
    # every variant the comparison loaded was freed after measuring
    spec = manager.catalog.spec("quant_subject")
    assert not any(manager.is_loaded(spec.with_precision(p)) for p in ("int8", "nf4"))


def test_results_csv_parses_back_to_the_same_table(comparison, tmp_path):
    tricky = results.Row(precision="hqq-2", method="hqq", bits=2, status="skipped",
                      note='needs "7.1 GB", only 2,5 GB\nleft', output="a, b\n\"c\"")
    rows = list(comparison) + [tricky]
    path = results.write_csv(rows, tmp_path / "results.csv")
    back = results.read_csv(path)
    pd.testing.assert_frame_equal(back, results.to_frame(rows))
    assert list(back.columns[:4]) == ["precision", "method", "bits", "status"]
    assert {"tokens", "seconds", "tok_per_s"} <= set(back.columns)


def test_variant_that_cannot_fit_is_skipped_with_the_message(manager):
    from engine.serving.manager import ModelManager
    from ui.i18n import t

    small = ModelManager(manager.catalog, manager.hardware, budget_bytes=2_000_000)
    spec = small.catalog.spec("quant_subject")
    rows = live.run_comparison(small, spec, ["fp32", "quanto-int4"], PROMPT, max_new_tokens=4,
                               explain=lambda e: t(e.key, "en", **e.params))
    assert [r.status for r in rows] == ["skipped", "skipped"]
    for r in rows:
        assert "needs about" in r.note and "nothing was loaded" in r.note and r.tokens is None
    assert small.status() == []


def test_method_that_cannot_run_here_says_why(manager, monkeypatch):
    monkeypatch.setitem(PACKAGES, "hqq", "no_such_quantization_package")
    spec = manager.catalog.spec("quant_subject")
    rows = live.run_comparison(manager, spec, ["hqq-3"], PROMPT, max_new_tokens=4)
    assert rows[0].status == "skipped" and "quant.why_no_package" in rows[0].note


# ------------------------------------------------------------------------------ the APIs
def test_quantize_weights_api(client):
    summary_by_format = {}
    for fmt in ("Q8_0", "Q4_0"):
        plot, summary, chart, table = client.predict(source="synthetic", model="", layer="", method=fmt, bits=4,
                                                     block_size="64", outliers=8, api_name="/quantize_weights")
        summary_by_format[fmt] = summary
        assert plot and "plot" in plot
        assert len(table["data"]) == len(weights.sweep_points())
    assert "8.500 bits" in summary_by_format["Q8_0"] and "4.500 bits" in summary_by_format["Q4_0"]
    plot, summary, chart, table = client.predict(source="model", model="tiny/mistral-instruct",
                                                 layer="model.layers.0.mlp.up_proj.weight", method="blockwise",
                                                 bits=3, block_size="32", outliers=0, api_name="/quantize_weights")
    assert "model.layers.0.mlp.up_proj.weight" in summary and "3.500 bits" in summary


def test_memory_plan_api(client):
    summary, chart, table = client.predict(model="mistral-7b", context_length=4096, batch_size=1,
                                           api_name="/memory_plan")
    assert "14.5" in summary and "4.0" in summary
    assert len(table["data"]) == len(planner.PLAN_FORMATS)
    assert "T4 16 GB" in table["headers"]
    from gradio_client.exceptions import ValidationError

    with pytest.raises(ValidationError, match="tiny/nope"):  # not a catalog model: refused before it is queued
        client.predict(model="tiny/nope", context_length=4096, batch_size=1, api_name="/memory_plan")


def test_quantize_compare_api_and_its_csv(client):
    from ui.i18n import t

    status, table, *_charts, html, csv_path = client.predict(
        model="tiny/mistral-instruct", precisions=["fp32", "int8", "nf4"], prompt=PROMPT, max_new_tokens=6,
        api_name="/quantize_compare")
    # the table shows translated headers; the CSV keeps the machine-readable column names
    names = {t(f"ux.quant.col_{c}", "en"): c for c in results.COLUMNS}
    assert "Memory (MB)" in table["headers"] and "memory_mb" not in table["headers"]
    written = results.read_csv(csv_path)
    assert list(written.columns) == results.COLUMNS
    shown = pd.DataFrame(table["data"], columns=[names[h] for h in table["headers"]])
    shown["output"] = written["output"]  # the outputs are in the cards, not in the table
    shown = results.normalize_frame(shown)
    assert list(shown["precision"]) == ["fp32", "int8", "nf4"] and set(shown["status"]) == {"ok"}
    assert shown["tokens"].tolist() == [6, 6, 6]
    pd.testing.assert_frame_equal(written, shown)
    assert "fp32" in status and html.count('class="quant-card"') == 3
