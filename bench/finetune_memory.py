"""The fine-tuning planner beside real training steps: memory of one AdamW step, term by term.

    python bench/finetune_memory.py                          # CPU: a small Mistral-shaped model
    python bench/finetune_memory.py --shape tiny             # the test checkpoints' shapes (seconds)
    python bench/finetune_memory.py --batch 4 --seq 512 --methods full-fp32,lora-bf16 --checkpointing

Each setup builds a random-weight model of the shape, takes one warm-up step (the optimizer's
states appear), then one measured step under PyTorch's MemTracker (every tensor followed, by kind);
the planner (``engine.quantization.finetune``) computes the same setup from the config. Printed:
each term measured and planned, and the ratio planner / measured. Random weights change nothing
to memory. QLoRA and int8 bases need bitsandbytes' CUDA kernels to train: not measured here.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {
    "mid": dict(vocab_size=1024, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2),
    "small": dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=6,
                  num_attention_heads=12, num_key_value_heads=4),
    "tiny": None,  # the test checkpoints' shapes (engine/models/tiny.py)
}
METHODS = {"full-fp32": ("full", "fp32"), "lora-fp32": ("lora", "fp32"), "lora-bf16": ("lora", "bf16")}


def config_for(shape: str):
    from transformers import MistralConfig

    if SHAPES[shape] is None:
        from engine.models.tiny import tiny_mistral_config

        return tiny_mistral_config()
    return MistralConfig(max_position_embeddings=4096, sliding_window=None, tie_word_embeddings=False,
                         **SHAPES[shape])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=list(SHAPES), default="small", help="model shape (default: small)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, among {', '.join(METHODS)}")
    parser.add_argument("--batch", type=int, default=2, help="sequences per step (default: 2)")
    parser.add_argument("--seq", type=int, default=256, help="tokens per sequence (default: 256)")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (default: 8)")
    parser.add_argument("--targets", default="q_proj,v_proj", help="LoRA layers (default: q_proj,v_proj)")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on")
    args = parser.parse_args()

    from engine.quantization import finetune as ft
    from engine.quantization import finetune_measure as fm

    config = config_for(args.shape)
    print(f"shape {args.shape}: hidden {config.hidden_size}, {config.num_hidden_layers} layers, vocabulary "
          f"{config.vocab_size}; batch {args.batch} × {args.seq} tokens, checkpointing {args.checkpointing}")
    print("| setup | term | measured (MB) | planner (MB) | planner / measured |\n| --- | --- | --- | --- | --- |")
    for name in args.methods.split(","):
        method, precision = METHODS[name.strip()]
        setup = ft.Setup(method=method, precision=precision, batch_size=args.batch, seq_len=args.seq,
                         checkpointing=args.checkpointing, rank=args.rank, targets=tuple(args.targets.split(",")))
        started = time.perf_counter()
        m = fm.measure_step(config, setup)
        p = fm.planned(config, setup, args.shape)
        pairs = [("parameters", m.params, p.terms["weights"] + p.terms["adapters"]),
                 ("gradients", m.gradients, p.terms["gradients"]),
                 ("optimizer states", m.optimizer, p.terms["optimizer"]),
                 ("alive after forward", m.after_forward, fm.forward_bytes(p, config)),
                 ("peak of the step", m.peak, p.peak)]
        for term, measured, planned in pairs:
            ratio = f"{planned / measured:.3f}" if measured else "—"
            print(f"| {name} | {term} | {measured / 1e6:.2f} | {planned / 1e6:.2f} | {ratio} |")
        print(f"| {name} | (step measured in {time.perf_counter() - started:.1f} s) | | | |")


if __name__ == "__main__":
    main()
