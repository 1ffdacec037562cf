"""The live comparison's first click in a fresh process: cold vs after the start-up warm-up.

    python bench/quant_first_run.py                       # the CPU defaults: fp32, int8, nf4, quanto-int4, hqq-3, hqq-2
    python bench/quant_first_run.py --variants fp32,nf4   # only some precisions

Each mode runs in its own fresh Python process, with optimum-quanto's C++ extension built into
an empty folder, as on a fresh installation (the extension is compiled by ninja the first time
a packed weight is unpacked; that compile is what made the first comparison take minutes):

* ``cold``: the comparison starts at once, as the first click did before the warm-up existed;
* ``warm``: ``engine.quantization.warmup`` runs first (what the app does in the background at
  start-up, its time printed apart), then the comparison (what the student now waits for).

It prints both click times and their ratio. Uses the tiny random-weight Mistral (``--profile
tiny``); the compile time does not depend on the model.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT = "fp32,int8,nf4,quanto-int4,hqq-3,hqq-2"


def child(mode: str, variants: list[str], tokens: int, ext_dir: str) -> dict:
    """One fresh process: returns the seconds of the warm-up (warm mode) and of the click."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from engine.models.catalog import load_catalog
    from engine.models.hardware import detect
    from engine.serving.manager import ModelManager
    from engine.quantization import live, warmup
    from engine.quantization.variants import VARIANTS

    if any(VARIANTS[v].method == "optimum-quanto" for v in variants):
        from optimum.quanto.library.extensions import get_extension

        get_extension("quanto_cpp").build_directory = ext_dir  # an empty folder: compiled as on a fresh install
    manager = ModelManager(load_catalog("tiny", env={}), detect())
    spec = manager.catalog.spec("quant_subject")
    warm_s = 0.0
    if mode == "warm":
        began = time.perf_counter()
        for step in warmup.start([VARIANTS[v].method for v in variants], manager.device):
            step.done.wait()
        warm_s = time.perf_counter() - began
    prompt = live.load_passages()["prompts"]["en"]
    phases: dict[str, float] = {}
    last = [time.perf_counter(), ""]

    def on_stage(stage) -> None:  # seconds spent per (precision, phase)
        now = time.perf_counter()
        if last[1]:
            phases[last[1]] = phases.get(last[1], 0.0) + now - last[0]
        last[0], last[1] = now, f"{stage.variant}: {stage.phase}"

    began = time.perf_counter()
    first_row = None
    rows = []
    for rows in live.compare(manager, spec, variants, prompt, max_new_tokens=tokens, on_stage=on_stage):
        first_row = first_row or time.perf_counter() - began
    click_s = time.perf_counter() - began
    slowest = max(phases.items(), key=lambda kv: kv[1]) if phases else ("", 0.0)
    return {"warm_s": warm_s, "click_s": click_s, "first_row_s": first_row or 0.0,
            "slowest": f"{slowest[0]} {slowest[1]:.1f} s", "status": {r.precision: r.status for r in rows}}


def run_mode(mode: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="quanto-ext-") as ext_dir:
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--variants", args.variants,
                              "--tokens", str(args.tokens), "--ext-dir", ext_dir],
                             capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=DEFAULT)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--child", choices=("cold", "warm"), help=argparse.SUPPRESS)
    parser.add_argument("--ext-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.child:
        print(json.dumps(child(args.child, variants, args.tokens, args.ext_dir)))
        return
    cold, warm = run_mode("cold", args), run_mode("warm", args)
    print(f"precisions: {', '.join(variants)} · {args.tokens} tokens · statuses {warm['status']}")
    print(f"cold  first click: {cold['click_s']:7.1f} s (first row after {cold['first_row_s']:.1f} s; "
          f"slowest phase: {cold['slowest']})")
    print(f"warm  start-up warm-up (background): {warm['warm_s']:.1f} s")
    print(f"warm  first click: {warm['click_s']:7.1f} s (first row after {warm['first_row_s']:.1f} s; "
          f"slowest phase: {warm['slowest']})")
    print(f"ratio warm / cold click: {warm['click_s'] / cold['click_s']:.2f}")


if __name__ == "__main__":
    main()
