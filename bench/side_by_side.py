"""Base vs Instruct: the tab's side-by-side generation vs the two models one after the other.

    python bench/side_by_side.py [--tokens 256] [--shape tiny|small|7b]

Prints the wall time of the tab's path (both models in the engine's one decode loop), of
plain ``generate()`` run for one model then the other, their ratio, and the ratio to the
memory-bandwidth limit: tokens × the bytes one decode step of each model reads (weights used per
token, one row of the input embeddings, the KV cache so far) ÷ the copy bandwidth measured here.
"""
from __future__ import annotations

import argparse

import torch

from common import SHAPES, device, device_name, measure_bandwidth, plain_generate, prompt_ids, random_handle, timed

from engine.generation import DecodeEngine, SamplingParams, stream_many
from engine.models.llm import PreparedPrompt
from engine.models.memory import decode_read_bytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--shape", choices=SHAPES, default=None)
    args = parser.parse_args()
    dev = device()
    shape = args.shape or ("7b" if dev == "cuda" else "small")
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    base = random_handle("base", shape, dtype, dev, seed=0)
    instr = random_handle("instruct", shape, dtype, dev, seed=1)
    ids = prompt_ids(args.prompt)
    params = SamplingParams(max_new_tokens=args.tokens, greedy=True)
    prompt = PreparedPrompt(text="", input_ids=ids)

    for h in (base, instr):  # warm-up
        plain_generate(h, ids, 8)
    warm = DecodeEngine(background=True)
    list(stream_many([(base, prompt), (instr, prompt)], SamplingParams(max_new_tokens=8, greedy=True), eng=warm))
    warm.close()

    def sequentially() -> None:
        for h in (base, instr):
            plain_generate(h, ids, args.tokens)

    sequential = timed(sequentially, dev)

    eng = DecodeEngine(background=True)
    updates: list = []
    side = timed(lambda: updates.extend(stream_many([(base, prompt), (instr, prompt)], params, eng=eng)), dev)
    last = updates[-1]
    eng.close()
    assert all(u.n_tokens == args.tokens for u in last), [u.n_tokens for u in last]

    bandwidth = measure_bandwidth(dev)
    context = args.prompt + args.tokens / 2  # the KV cache at the run's mean length
    step_bytes = decode_read_bytes(base.model, context) + decode_read_bytes(instr.model, context)
    limit = step_bytes * args.tokens / bandwidth
    print(f"device: {device_name(dev)}  shape: {shape}  dtype: {dtype}")
    print(f"read per step (both models): {step_bytes / 1e9:.3f} GB   copy bandwidth: {bandwidth / 1e9:.1f} GB/s (measured)")
    print(f"tokens per model: {args.tokens}")
    print(f"one after the other, plain generate(): {sequential:8.2f} s")
    print(f"side by side, the tab's engine:        {side:8.2f} s")
    print(f"ratio side-by-side / sequential:       {side / sequential:8.2f}")
    print(f"bandwidth limit for both:              {limit:8.2f} s   (side-by-side at {limit / side:.0%} of the limit)")


if __name__ == "__main__":
    main()
