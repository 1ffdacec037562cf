"""A class clicking at once: K students each send a Base vs Instruct comparison.

    python bench/class_load.py [--students 1 5 30] [--tokens 256] [--shape small|7b]

For each K: time to first token and completion time (p50 / p95) and aggregate tok/s when the
engine batches everyone, against the same load served one request at a time (the k-th student
waits for the k-1 before). Both models of every comparison are generated.
"""
from __future__ import annotations

import argparse
import threading
import time

import torch

from common import device, prompt_ids, random_handle, sync

from engine.generation import DecodeEngine, SamplingParams, stream_many
from engine.llm import PreparedPrompt


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def one_comparison(eng, base, instr, ids, params, out: list, start: float) -> None:
    prompt = PreparedPrompt(text="", input_ids=ids)
    first = None
    last = None
    for last in stream_many([(base, prompt), (instr, prompt)], params, eng=eng):
        if first is None and all(u.n_tokens > 0 for u in last):
            first = time.perf_counter() - start
    out.append((first, time.perf_counter() - start, sum(u.n_tokens for u in last)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, nargs="+", default=[1, 5, 30])
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--shape", choices=("small", "7b"), default=None)
    args = parser.parse_args()
    dev = device()
    shape = args.shape or ("7b" if dev == "cuda" else "small")
    tokens = args.tokens or (256 if dev == "cuda" else 64)
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    base = random_handle("base", shape, dtype, dev, 0)
    instr = random_handle("instruct", shape, dtype, dev, 1)
    params = SamplingParams(max_new_tokens=tokens, greedy=True)
    eng = DecodeEngine(background=True)
    one_comparison(eng, base, instr, prompt_ids(32), SamplingParams(max_new_tokens=4, greedy=True), [], time.perf_counter())

    # one student alone: the unit of the "one at a time" baseline
    alone: list = []
    one_comparison(eng, base, instr, prompt_ids(48), params, alone, time.perf_counter())
    ttft1, total1, _ = alone[0]
    print(f"device: {dev}  shape: {shape}  tokens per pane: {tokens}")
    print(f"one student alone: TTFT {ttft1:.2f} s, done in {total1:.2f} s")
    print(f"{'K':>3} | {'batched TTFT p50/p95':>21} | {'done p50/p95':>15} | {'tok/s':>7} || "
          f"{'one-at-a-time done p50/p95':>27} | {'last/alone':>10}")
    for k in args.students:
        results: list = []
        start = time.perf_counter()
        threads = [threading.Thread(target=one_comparison,
                                    args=(eng, base, instr, prompt_ids(40 + i % 17, seed=i), params, results, start))
                   for i in range(k)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        sync(dev)
        wall = time.perf_counter() - start
        ttfts = [r[0] for r in results]
        done = [r[1] for r in results]
        tps = sum(r[2] for r in results) / wall
        seq_done = [total1 * (i + 1) for i in range(k)]
        print(f"{k:>3} | {pct(ttfts, .5):9.2f} / {pct(ttfts, .95):7.2f} s | {pct(done, .5):6.2f} / {pct(done, .95):5.2f} s"
              f" | {tps:7.1f} || {pct(seq_done, .5):12.2f} / {pct(seq_done, .95):9.2f} s | "
              f"{max(done) / total1:9.2f}×")
    print(f"largest batch seen: {eng.stats()['max_batch_seen']} rows per model")
    eng.close()


if __name__ == "__main__":
    main()
