"""The decode engine's fast path vs plain ``generate()``: per precision, one model and side by side.

    python bench/decode.py [--tokens 256] [--shape tiny|small|7b] [--precisions bf16,nf4,int8] [--fast compile|eager]

For each precision, a random-weight Mistral (Mistral-7B's published config on a GPU, small shapes
on CPU) is written once with ``save_pretrained`` and loaded through the engine's own loader
(``engine.models.llm.load_causal_lm``: ``from_pretrained`` with the precision's quantization config, then
the fast path's load-time warm-up). Printed per precision:

* plain ``generate()`` at batch 1: tok/s and time to first token;
* the engine on its fast path (static KV cache, compiled decode step on CUDA): tok/s, time to first
  token, the warm-up paid at load time, and whether greedy tokens equal ``generate()``'s;
* the engine's batched (dynamic-cache) loop for the same lone request;
* side by side: two models of that precision decoded at once vs the sum of their single times;
* the ratio of decode tok/s (after the first token) to the memory-bandwidth limit: the copy
  bandwidth measured in the same run ÷ the bytes one step reads (weights used per token at their
  stored size, scales included, one row of the input embeddings, the KV cache so far).

Random weights never change speed; EOS is disabled so every run decodes exactly ``--tokens``.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from common import (SHAPES, build_checkpoint, device, device_name, measure_bandwidth, mistral_config,
                    plain_generate, prompt_ids, timed)

from engine.models.catalog import ModelSpec
from engine.generation import DecodeEngine, SamplingParams
from engine.models.llm import LLMHandle, load_causal_lm
from engine.models.memory import decode_read_bytes


@dataclass
class Timing:
    seconds: float
    ttft_s: float
    tokens: list[int]

    def tok_per_s(self, n: int) -> float:
        """What a user sees: ``n`` tokens over the whole call, prefill included."""
        return n / self.seconds

    def decode_tok_s(self, n: int) -> float:
        """Decoding alone: the tokens after the first over the time after the first."""
        return (n - 1) / max(self.seconds - self.ttft_s, 1e-9)


def plain_run(handle: LLMHandle, ids: list[int], n: int) -> Timing:
    """``plain_generate`` timed: once for its first token alone (TTFT), once for ``n`` tokens."""
    ttft = timed(lambda: plain_generate(handle, ids, 1), handle.device)
    tokens: list[list[int]] = []
    seconds = timed(lambda: tokens.append(plain_generate(handle, ids, n)), handle.device)
    return Timing(seconds, ttft, tokens[0])


def engine_run(eng: DecodeEngine, handles: list[LLMHandle], ids: list[int], n: int) -> list[Timing]:
    """Submit one greedy request per handle at once; wall time until the last one is done."""
    params = SamplingParams(max_new_tokens=n, greedy=True)
    reqs: list = []

    def run() -> None:
        reqs.extend(eng.submit(h, ids, params, eos_ids=set()) for h in handles)
        for _ in eng.wait(reqs):
            pass

    wall = timed(run, handles[0].device)
    updates = [r.update() for r in reqs]
    for u in updates:
        if u.error is not None:
            raise u.error
    return [Timing(wall, u.ttft_s or 0.0, list(u.token_ids)) for u in updates]


def load(folder: Path, precision: str, dev: str) -> LLMHandle:
    spec = ModelSpec(role="bench", kind="causal_lm", id=str(folder), precision=precision)
    handle = load_causal_lm(spec, dev)
    handle.model.generation_config.eos_token_id = None
    return handle


def free(*handles: LLMHandle) -> None:
    for h in handles:
        h.extra.clear()
        h.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def same_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def bench_precision(folder: Path, precision: str, dev: str, ids: list[int], n: int, bandwidth: float) -> dict:
    one = load(folder, precision, dev)
    fast = one.extra.get("fast_path")
    eng = DecodeEngine(background=True)
    engine_run(eng, [one], ids, 8)  # warm the engine's own kernels (not the fast path's: done at load)
    plain_generate(one, ids, 8)
    plain = plain_run(one, ids, n)
    fast_single = engine_run(eng, [one], ids, n)[0]
    one.extra.pop("fast_path", None)
    dynamic_single = engine_run(eng, [one], ids, n)[0]
    if fast is not None:
        one.extra["fast_path"] = fast
    two = load(folder, precision, dev)
    engine_run(eng, [two], ids, 8)
    single_two = engine_run(eng, [two], ids, n)[0]
    side = engine_run(eng, [one, two], ids, n)[0]
    eng.close()
    step_bytes = decode_read_bytes(one.model, len(ids) + n / 2)  # the KV cache at the run's mean length
    free(one, two)
    limit = bandwidth / step_bytes  # tok/s if every step read its bytes once at the measured bandwidth
    return {
        "precision": precision, "step_gb": step_bytes / 1e9, "limit_tok_s": limit,
        "warmup_s": fast.warmup_seconds if fast else None, "fast": fast is not None,
        "fast_error": None if fast else "off on this device (GENAI_FAST_PATH)",
        "plain_tok_s": plain.tok_per_s(n), "plain_ttft": plain.ttft_s,
        "fast_tok_s": fast_single.tok_per_s(n), "fast_ttft": fast_single.ttft_s,
        "fast_decode_tok_s": fast_single.decode_tok_s(n),
        "dynamic_tok_s": dynamic_single.tok_per_s(n),
        "same_tokens": same_prefix(plain.tokens, fast_single.tokens),
        "side_s": side.seconds, "sum_s": fast_single.seconds + single_two.seconds,
    }


def report(rows: list[dict], n: int, bandwidth: float, dev: str, shape: str) -> None:
    print(f"\ndevice {device_name(dev)} · shapes {shape} · {n} tokens per run · copy bandwidth {bandwidth / 1e9:.1f} GB/s"
          " (measured)")
    print(f"\n{'precision':<9} {'GB/tok':>6} {'limit':>7} │ {'generate()':>10} {'TTFT':>6} │ {'fast path':>9} {'TTFT':>6} "
          f"{'× gen':>6} {'% limit':>7} {'same':>6} {'warm-up':>8} │ {'batched':>8} │ {'2 models':>8} {'÷ sum':>6}")
    print(f"{'':<9} {'':>6} {'tok/s':>7} │ {'tok/s':>10} {'ms':>6} │ {'tok/s':>9} {'ms':>6} {'':>6} {'':>7} "
          f"{'tokens':>6} {'s':>8} │ {'tok/s':>8} │ {'s':>8} {'':>6}")
    for r in rows:
        warm = f"{r['warmup_s']:.1f}" if r["warmup_s"] is not None else "—"
        print(f"{r['precision']:<9} {r['step_gb']:>6.3f} {r['limit_tok_s']:>7.0f} │ {r['plain_tok_s']:>10.1f} "
              f"{1000 * r['plain_ttft']:>6.0f} │ {r['fast_tok_s']:>9.1f} {1000 * r['fast_ttft']:>6.0f} "
              f"{r['fast_tok_s'] / r['plain_tok_s']:>6.2f} {r['fast_decode_tok_s'] / r['limit_tok_s']:>7.0%} "
              f"{r['same_tokens']:>3}/{n:<3}{warm:>7} │ {r['dynamic_tok_s']:>8.1f} │ {r['side_s']:>8.2f} "
              f"{r['side_s'] / r['sum_s']:>6.2f}")
    print("\nGB/tok: bytes one decode step reads (weights used per token at their stored size, one row of the input "
          "embeddings, the KV cache at the run's mean length); limit = measured bandwidth ÷ GB/tok; % limit: the fast "
          "path's decode rate (after the first token) against it.")
    print("fast path: the engine's lone-request path (static KV cache; compiled step on CUDA); batched: the "
          "engine's dynamic-cache loop for the same request; 2 models: two of them decoded at once, ÷ sum = that "
          "wall time over the two models' times alone, one after the other (goal ≤ 1.10); same tokens: greedy tokens equal to generate()'s.")
    if not any(r["fast"] for r in rows):
        print("The fast path was off (default on CPU): run with --fast eager to time the static-cache path here.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=None, help="default: 256 on a GPU, 64 on CPU")
    parser.add_argument("--prompt", type=int, default=32, help="prompt length in tokens")
    parser.add_argument("--shape", choices=SHAPES, default=None)
    parser.add_argument("--precisions", default=None, help="default: bf16,nf4,int8 on a GPU, fp32,nf4,int8 on CPU")
    parser.add_argument("--fast", choices=("compile", "eager", "off"), default=None,
                        help="fast path mode (GENAI_FAST_PATH); default: compile on CUDA, off on CPU")
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "genai-bench-decode"))
    args = parser.parse_args()
    dev = device()
    if args.fast:
        os.environ["GENAI_FAST_PATH"] = args.fast
    shape = args.shape or ("7b" if dev == "cuda" else "small")
    n = args.tokens or (256 if dev == "cuda" else 64)
    if args.precisions:
        precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    elif dev == "cuda":
        from engine.models.hardware import cuda_bf16

        precisions = ["bf16" if cuda_bf16() else "fp16", "nf4", "int8"]
    else:
        precisions = ["fp32", "nf4", "int8"]
    config = mistral_config(shape)
    folder = build_checkpoint(Path(args.dir) / shape, config, torch.bfloat16 if shape == "7b" else torch.float32)
    bandwidth = measure_bandwidth(dev)
    ids = prompt_ids(args.prompt)
    rows = []
    for p in precisions:
        print(f"… {p}", file=sys.stderr, flush=True)
        rows.append(bench_precision(folder, p, dev, ids, n, bandwidth))
    report(rows, n, bandwidth, dev, shape)


if __name__ == "__main__":
    main()
