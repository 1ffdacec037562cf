"""Memory and decode speed per precision, and their ratio to full precision.

    python bench/quantization.py                 # CPU: a small random-weight Mistral (86.9 M parameters)
    python bench/quantization.py --shape 7b      # GPU: random weights in Mistral-7B's shapes
    python bench/quantization.py --shape tiny    # the test checkpoints' shapes (seconds)

It runs the Quantization tab's own code (``engine.quantization.live``): each precision is loaded
from a checkpoint written once, measured (memory with scales included, tokens/s of a greedy
decode at batch 1) and freed before the next. Random weights change nothing to memory or speed.
Every figure printed is measured in this run; ratios are to the first (highest) precision.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {
    "small": dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=6,
                  num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=2048),
    "7b": None,  # Mistral-7B's published config (bench/configs/)
    "tiny": None,  # the test checkpoints' shapes (engine/models/tiny.py)
}


def build_checkpoint(folder: Path, shape: str) -> Path:
    import torch
    from transformers import MistralConfig

    from common import build_checkpoint as write

    if SHAPES[shape] is None:
        from common import mistral_config

        config = mistral_config(shape)
    else:
        config = MistralConfig(sliding_window=None, tie_word_embeddings=False, **SHAPES[shape])
    return write(folder, config, torch.bfloat16 if shape == "7b" else torch.float32)


def run(shape: str, variants: list[str], tokens: int, folder: Path) -> list:
    from engine.models.catalog import load_catalog
    from engine.models.hardware import detect
    from engine.serving.manager import ModelManager
    from engine.quantization import live

    hardware = detect()
    catalog = load_catalog("cpu" if hardware.device == "cpu" else "gpu", env={})
    spec = replace(catalog.spec("quant_subject"), id=str(build_checkpoint(folder, shape)), params_b=None)
    manager = ModelManager(catalog, hardware)
    prompt = live.load_passages()["prompts"]["en"]

    def progress(frac: float, desc: str) -> None:
        print(f"\r  {frac:5.0%} {desc:<40}", end="", file=sys.stderr, flush=True)

    rows = live.run_comparison(manager, spec, variants, prompt, max_new_tokens=tokens, progress=progress)
    print(file=sys.stderr)
    return rows


def report(rows: list) -> None:
    print(f"\n{'precision':<12} {'memory MB':>10} {'× ref':>6} {'tok/s':>8} {'× ref':>6} {'TTFT ms':>8} "
          f"{'ppl EN':>10} {'agree %':>8}")
    for r in rows:
        if r.status != "ok":
            print(f"{r.precision:<12} {r.status}: {r.note}")
            continue
        print(f"{r.precision:<12} {r.memory_mb:>10.1f} {r.memory_ratio:>6.3f} {r.tok_per_s:>8.1f} "
              f"{r.speed_ratio:>6.3f} {1000 * r.ttft_s:>8.1f} {r.ppl_en:>10.1f} {r.agreement_pct:>8.1f}")


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=tuple(SHAPES), default=None,
                        help="model shapes (default: small on CPU, 7b on a GPU)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per precision")
    parser.add_argument("--variants", default=None, help="comma-separated precisions (default: per device)")
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "genai-bench-quant"),
                        help="where the random checkpoint is written (reused between runs)")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = args.shape or ("7b" if device == "cuda" else "small")
    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    elif device == "cuda":
        variants = ["bf16", "fp16", "int8", "nf4", "nf4-dq", "fp4", "hqq-4", "hqq-3", "hqq-2"]
    else:
        variants = ["fp32", "bf16", "int8", "nf4", "nf4-dq", "fp4", "quanto-int4", "hqq-4", "hqq-3",
                    "quanto-int2", "hqq-2"]
    started = time.perf_counter()
    print(f"device {device}, shapes {shape}, {args.tokens} tokens per precision, torch threads {torch.get_num_threads()}")
    rows = run(shape, variants, args.tokens, Path(args.dir) / shape)
    report(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
