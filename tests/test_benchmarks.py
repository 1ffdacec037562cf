"""Every benchmark script runs end to end (tiny settings) and prints its figures: benchmarks must not rot."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CASES = {
    "decode": (["--tokens", "6", "--precisions", "fp32,nf4", "--fast", "eager", "--dir", "{tmp}"],
               ["fast path", "6/6", "÷ 2×1"]),
    "side_by_side": (["--tokens", "6", "--prompt", "8"], ["ratio side-by-side / sequential", "bandwidth limit"]),
    "class_load": (["--students", "1", "3", "--tokens", "4"], ["one student alone", "one-at-a-time", "largest batch seen"]),
    "techniques": (["--samples", "1", "3", "--tokens", "4", "--repeats", "1"], ["N"]),
    "quantization": (["--variants", "fp32,nf4", "--tokens", "4", "--dir", "{tmp}"], ["fp32", "nf4", "tok/s"]),
    "quant_first_run": (["--variants", "fp32", "--tokens", "2"], ["cold  first click", "ratio warm / cold"]),
    "quant_histogram": (["--rounds", "1", "--methods", "absmax"], ["baseline drawing", "ratio app / baseline"]),
    "tokenizer_views": (["--chars", "3000", "--repeat", "1"], ["whole request", "chars/s"]),
    "images": (["--sizes", "64"], ["64"]),
    "load_soak": (["--rounds", "1", "--compares", "2", "--tokens", "4", "--tokenize", "1", "--chars", "2000",
                   "--benchmarks", "1", "--sweeps", "1", "--images", "1", "--hostile", "6", "--soak", "8"],
                  ["total errors: 0", "first output p50/p95", "RSS"]),
    "kv_join_leave": (["--rows", "1", "3", "--length", "128", "--prompt", "16", "--repeats", "1"],
                      ["join before", "leave after"]),
    "tokenizer_browser": (["--chars", "3000", "--keys", "3"],
                          ["counts shown in every view", "longest frozen moment", "tab return: tokenized again: no",
                           "1 message(s)"]),
}
NEEDS_CHROMIUM = {"tokenizer_browser"}


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
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for text in expected:
        assert text in done.stdout, (text, done.stdout[-2000:])
