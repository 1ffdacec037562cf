"""A class clicking at once: K students each send a Base vs Instruct comparison.

    python bench/class_load.py [--students 1 5 30] [--tokens 256] [--shape tiny|small|7b]

For each K: time to first token and completion time (p50 / p95) and aggregate tok/s when the
engine batches everyone, against the same K comparisons really run one at a time (the k-th
student's starts when the (k-1)-th is done; its completion time counts from the common start).
Both models of every comparison are generated; EOS is disabled so every pane has ``--tokens``.
"""
from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass

import torch

from common import SHAPES, device, pct, prompt_ids, random_handle, sync

from engine.generation import DecodeEngine, SamplingParams, stream_many
from engine.models.llm import PreparedPrompt


@dataclass
class Student:
    ttft_s: float  # until both panes show a token
    done_s: float  # since the class's common start
    tokens: int


def one_comparison(eng, base, instr, ids: list[int], params: SamplingParams, start: float) -> Student:
    prompt = PreparedPrompt(text="", input_ids=ids)
    first = last = None
    for last in stream_many([(base, prompt), (instr, prompt)], params, eng=eng):
        if first is None and all(u.n_tokens > 0 for u in last):
            first = time.perf_counter() - start
    for u in last:
        if u.error is not None:
            raise u.error
    return Student(first or 0.0, time.perf_counter() - start, sum(u.n_tokens for u in last))


def student_prompt(i: int) -> list[int]:
    return prompt_ids(40 + i % 17, seed=i)


def batched(eng, base, instr, k: int, params: SamplingParams) -> tuple[list[Student], float]:
    """K students clicking at once (one thread each, as Gradio serves them); (students, wall time)."""
    results: list[Student] = []
    errors: list[BaseException] = []
    start = time.perf_counter()

    def run(i: int) -> None:
        try:
            results.append(one_comparison(eng, base, instr, student_prompt(i), params, start))
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    sync(base.device)
    if errors:
        raise errors[0]
    return results, time.perf_counter() - start


def one_at_a_time(eng, base, instr, k: int, params: SamplingParams) -> list[Student]:
    """The same K comparisons run one after the other, each alone in the engine."""
    start = time.perf_counter()
    return [one_comparison(eng, base, instr, student_prompt(i), params, start) for i in range(k)]


def warm_up(eng, base, instr) -> None:
    one_comparison(eng, base, instr, prompt_ids(32), SamplingParams(max_new_tokens=4, greedy=True), time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, nargs="+", default=[1, 5, 30])
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--shape", choices=SHAPES, default=None)
    args = parser.parse_args()
    dev = device()
    shape = args.shape or ("7b" if dev == "cuda" else "small")
    tokens = args.tokens or (256 if dev == "cuda" else 64)
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    base = random_handle("base", shape, dtype, dev, 0)
    instr = random_handle("instruct", shape, dtype, dev, 1)
    params = SamplingParams(max_new_tokens=tokens, greedy=True)
    eng = DecodeEngine(background=True)
    warm_up(eng, base, instr)

    alone = one_at_a_time(eng, base, instr, 1, params)[0]
    print(f"device: {dev}  shape: {shape}  tokens per pane: {tokens}")
    print(f"one student alone: TTFT {alone.ttft_s:.2f} s, done in {alone.done_s:.2f} s")
    print(f"{'K':>3} | {'batched TTFT p50/p95':>21} | {'done p50/p95':>15} | {'tok/s':>7} || "
          f"{'one-at-a-time done p50/p95':>27} | {'tok/s':>7} || {'last/alone':>10}")
    for k in args.students:
        together, wall = batched(eng, base, instr, k, params)
        serial = one_at_a_time(eng, base, instr, k, params)
        ttfts, done, seq_done = [s.ttft_s for s in together], [s.done_s for s in together], [s.done_s for s in serial]
        tps = sum(s.tokens for s in together) / wall
        seq_tps = sum(s.tokens for s in serial) / max(seq_done)
        print(f"{k:>3} | {pct(ttfts, .5):9.2f} / {pct(ttfts, .95):7.2f} s | {pct(done, .5):6.2f} / {pct(done, .95):5.2f} s"
              f" | {tps:7.1f} || {pct(seq_done, .5):12.2f} / {pct(seq_done, .95):9.2f} s | {seq_tps:7.1f} || "
              f"{max(done) / alone.done_s:9.2f}×")
    print(f"largest batch seen: {eng.stats()['max_batch_seen']} rows per model")
    print("last/alone: the batched class's last completion over one student's alone (goal on a GPU: ≤ 2×)")
    eng.close()


if __name__ == "__main__":
    main()
