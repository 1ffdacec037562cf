"""Every benchmark script runs end to end (tiny settings) and prints its figures: benchmarks must not rot.

NF4 and all four image models run in ``gpu_check --smoke`` (through the same functions as
``decode.py`` and ``images.py``), so those two cases keep to one precision and two models."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT

CASES = {
    "decode": (["--tokens", "6", "--shape", "tiny", "--precisions", "fp32", "--fast", "eager", "--dir", "{tmp}"],
               ["fast path", "6/6", "÷ sum", "GB/tok"]),
    "side_by_side": (["--tokens", "6", "--prompt", "8", "--shape", "tiny"],
                     ["ratio side-by-side / sequential", "bandwidth limit"]),
    "class_load": (["--students", "1", "3", "--tokens", "4", "--shape", "tiny"],
                   ["one student alone", "one-at-a-time", "largest batch seen"]),
    "techniques": (["--samples", "1", "3", "--tokens", "4", "--repeats", "1", "--shape", "tiny"],
                   ["one sample", "N calls one by one"]),
    "quantization": (["--variants", "fp32,nf4", "--tokens", "4", "--shape", "tiny", "--dir", "{tmp}"],
                     ["fp32", "nf4", "tok/s"]),
    "tokenizer_views": (["--chars", "3000", "--repeat", "1"], ["whole request", "chars/s"]),
    "images": (["--size", "64", "--max-steps", "1", "--roles", "sdxl_turbo", "flux_dev"],
               ["SDXL Turbo", "FLUX.1 dev", "÷ (den.+VAE)"]),  # all four run in gpu_check --smoke
    "gpu_check": (["--smoke", "--dir", "{tmp}"],
                  ["| check | measured | goal | result |", "% of the bandwidth limit", "NF4 decode",
                   "FLUX.1 dev: pipeline ÷ (denoiser + VAE)", "FLUX.1 schnell: the app's loader",
                   "Base vs Instruct follow-up", "ask-me-anything N=3", "prompt fragility", "total wall time",
                   "first click: graphs compiled during that request | 0 | 0 | pass",
                   "identical tokens | 100.0% of 128 tokens; 8/8 answers identical",
                   "at once | 12 of 12 done", "T4: models in use evicted | none",
                   "ZeroGPU: Base vs Instruct through the fork, 16 greedy tokens | same tokens",
                   "ZeroGPU: one image through the fork | 64×64, identical pixels",
                   "LLM_STEP_S = ", "LOAD_LLM_S = "]),
    "quant_first_run": (["--variants", "fp32", "--tokens", "2"], ["cold  first click", "ratio warm / cold"]),
    "quant_histogram": (["--rounds", "1", "--methods", "absmax"], ["baseline drawing", "ratio app / baseline"]),
    "load_soak": (["--rounds", "1", "--compares", "2", "--tokens", "4", "--tokenize", "1", "--chars", "2000",
                   "--benchmarks", "1", "--sweeps", "1", "--images", "1", "--hostile", "6", "--soak", "8"],
                  ["total errors: 0", "first output p50/p95", "RSS"]),
    "kv_join_leave": (["--rows", "1", "3", "--length", "128", "--prompt", "16", "--repeats", "1"],
                      ["join before", "leave after"]),
    "class_fairness": (["--students", "2", "--clicks", "3", "--tokens", "4"],
                       ["completion ÷ alone with the ten clicks", "the clicker's comparisons that ran: ",
                        "every student's comparison completed: True"]),
    "streaming": (["--tokens", "10", "60", "--window", "5"], ["ratio 60 ÷ 10", "decode loop, per token and row"]),
    "memory_soak": (["--sessions", "20", "--tokens", "4", "--parallel", "4", "--checkpoints", "2"],
                    ["RSS after warm-up", "turns: owners remembered"]),
    "tokenizer_browser": (["--chars", "3000", "--keys", "3"],
                          ["counts shown in every view", "longest frozen moment", "tab return: tokenized again: no",
                           "1 message(s)"]),
    "retrieval": (["--chars", "5000", "--repeats", "1", "--k", "1"],
                  ["5,000 characters", "ratio cold / warm", "tokens added to the instruct prompt"]),
}
NEEDS_CHROMIUM = {"tokenizer_browser"}
TIMEOUT_S = {"gpu_check": 900}  # every GPU row with tiny shapes, the app started under ZeroGPU included


@pytest.mark.parametrize("name", list(CASES))
def test_benchmark_runs_and_prints_its_figures(name, tmp_path, tiny_dir):
    if name in NEEDS_CHROMIUM:
        from tests.browser import CHROMIUM

        if not Path(CHROMIUM).exists():
            pytest.skip("Chromium is not installed")
    args, expected = CASES[name]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    env = dict(os.environ, HF_HUB_OFFLINE="1", GENAI_TINY_DIR=str(tiny_dir))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S.get(name, 300))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for text in expected:
        assert text in done.stdout, (text, done.stdout[-2000:])
    assert "crashed" not in done.stdout and "skipped" not in done.stdout, done.stdout[-3000:]


@pytest.fixture(autouse=True)
def _process_state_restored():
    """gpu_check.main runs in this process in the tests below: what it sets for its own run (the
    fast path's mode, the tiny folder, the limits' profile) must not reach the tests that follow."""
    from engine import limits

    environ, profile = dict(os.environ), limits._active
    yield
    os.environ.clear()
    os.environ.update(environ)
    limits.set_profile(profile)


def test_gpu_check_reports_missing_packages_and_crashes_and_goes_on(monkeypatch, capsys):
    import importlib.util

    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_check

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a))

    def out_of_memory(settings, rows):
        raise RuntimeError("CUDA out of memory (injected)")

    monkeypatch.setattr(gpu_check, "run_nf4", out_of_memory)
    status = gpu_check.main(["--smoke", "--only", "nf4", "images"])
    table = capsys.readouterr().out
    assert status == 1, table  # a crash is an error
    assert "| NF4 decode: fast path ÷ plain generate() | — | ≥ 2.0× | crashed: RuntimeError: CUDA out of memory" in table
    assert table.count("skipped: diffusers not installed") == 16  # 4 models × 4 rows, the rest still ran
    assert "| total wall time of this check |" in table

    settings = gpu_check.settings_from(SimpleNamespace(smoke=False, dir=None, tokens=None, prompt=None, students=None))
    missed = gpu_check.Report(settings, [gpu_check.Row("x", "≥ 60%", "41%", ok=False)])
    assert gpu_check.exit_status(missed) == 3  # a missed goal on a GPU run: its own status, not a crash
    missed.settings.smoke = True
    assert gpu_check.exit_status(missed) == 0  # smoke runs judge no speed goal


def fill(rows, *, ok: bool = True, skip: str = "") -> None:
    """What a section body does: measure its rows (all to ``ok``), or skip the first."""
    for r in rows.values():
        r.measured, r.ok = "measured", (ok if r.goal != "—" else None)
    if skip:
        next(iter(rows.values())).problem = skip


@pytest.mark.parametrize("outcome, status", [("all pass", 0), ("one fails", 3), ("one skipped", 4),
                                             ("one crashes", 1)])
def test_gpu_check_exit_status(monkeypatch, capsys, outcome, status):
    """0 only when every row ran and met its goal; a skipped row is never a pass (4), even in a smoke
    run; a correctness goal (same tokens through the ZeroGPU fork) is judged in smoke runs too."""
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_check
    import gpu_zerogpu

    def run(settings, rows):
        if outcome == "one crashes":
            raise RuntimeError("injected")
        fill(rows)
        if outcome == "one fails":
            rows[next(r for r in rows if "through the fork" in r)].ok = False
        if outcome == "one skipped":
            fill(rows, skip="skipped: spaces not installed")

    monkeypatch.setattr(gpu_zerogpu, "run", run)
    assert gpu_check.main(["--smoke", "--only", "zerogpu"]) == status
    table = capsys.readouterr().out
    assert "| ZeroGPU: one image through the fork |" in table
    if outcome == "one fails":
        assert "| measured | = off-Space | MISS |" in table  # judged even in a smoke run


def test_gpu_check_skips_a_row_whose_package_is_missing_with_its_own_status(monkeypatch, capsys):
    import importlib.util

    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_check

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "spaces" else real(name, *a))
    assert gpu_check.main(["--smoke", "--only", "zerogpu"]) == 4
    assert capsys.readouterr().out.count("skipped: spaces not installed") == 3
