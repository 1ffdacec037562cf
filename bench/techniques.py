"""Self-consistency cost: N sampled paths as one batch vs N separate calls vs one path.

    python bench/techniques.py [--samples 1 5 10] [--tokens 128] [--shape tiny|small|7b]

For each N, the exact call self-consistency makes — ``EngineGenerator.generate([prompt], params,
n_per_prompt=N)``, i.e. one ``generate_many`` batch — on a few-shot chain-of-thought prompt of
the bundled problems, rendered with the Mistral chat template; then the same N paths as N
separate one-sample calls run one after the other (what a naive loop costs). Both are timed
(best of ``--repeats``) and compared with one sample. Random weights (bench/common.py): 7B
shapes on a GPU, small shapes on CPU; EOS is disabled so every path has exactly ``--tokens``.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from common import SHAPES, device, device_name, random_handle, sync

from engine.generation import DecodeEngine, SamplingParams, generate_many
from engine.llm import LLMHandle
from engine.techniques import tasks as task_sets
from engine.techniques.records import Settings
from engine.techniques.techniques import few_shot_messages


class BenchGenerator:
    """What ``EngineGenerator.generate`` does, on a private decode engine (no other traffic in the measurement)."""

    def __init__(self, handle: LLMHandle) -> None:
        self.handle = handle
        self.eng = DecodeEngine(background=False)  # this thread drives the loop: no daemon thread at exit

    def generate(self, messages: list[dict], params: SamplingParams, n: int) -> list:
        prompt = self.handle.prepare_chat(messages)
        return generate_many(self.handle, [prompt], params, n_per_prompt=n, eng=self.eng)

    def separately(self, messages: list[dict], params: SamplingParams, n: int) -> list:
        """The N paths as N one-sample calls, one after the other (seeds as in the batch)."""
        out = []
        for j in range(n):
            out += self.generate(messages, replace(params, seed=params.seed + j), 1)
        return out


def cot_messages() -> list[dict]:
    task = task_sets.get_task("arith-20", "en")
    messages, _ = few_shot_messages(task, Settings(k_examples=3), cot=True)
    return messages


def timed(fn) -> float:
    sync(device())
    start = time.perf_counter()
    fn()
    sync(device())
    return time.perf_counter() - start


def best(fn, repeats: int) -> float:
    return min(timed(fn) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--shape", choices=SHAPES, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    dev = device()
    shape = args.shape or ("7b" if dev == "cuda" else "small")
    tokens = args.tokens or (256 if dev == "cuda" else 64)
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    handle = random_handle("bench", shape, dtype, dev)
    messages = cot_messages()
    gen = BenchGenerator(handle)
    prompt_tokens = handle.prepare_chat(messages).n_tokens
    params = SamplingParams(max_new_tokens=tokens, temperature=0.8, top_p=0.95, top_k=50, seed=1)
    gen.generate(messages, SamplingParams(max_new_tokens=8, temperature=0.8), max(args.samples))  # warm-up

    one = best(lambda: gen.generate(messages, params, 1), args.repeats)
    print(f"device: {device_name(dev)}  shape: {shape}  dtype: {str(dtype).replace('torch.', '')}")
    print(f"prompt: few-shot CoT (3 examples), {prompt_tokens} tokens · {tokens} new tokens per path · T=0.8")
    print(f"one sample: {one:.2f} s")
    print(f"{'N':>3} {'batched (s)':>12} {'vs 1 sample':>12} {'N calls one by one (s)':>24} {'vs 1 sample':>12} "
          f"{'batched tok/s':>14}")
    for n in args.samples:
        outs = gen.generate(messages, params, n)
        assert len(outs) == n and all(o.n_tokens == tokens for o in outs), [o.n_tokens for o in outs]
        assert n == 1 or len({o.text for o in outs}) == n, "the samples should differ"
        batched = best(lambda n=n: gen.generate(messages, params, n), args.repeats)
        sequential = best(lambda n=n: gen.separately(messages, params, n), args.repeats)
        print(f"{n:>3} {batched:>12.2f} {batched / one:>11.2f}× {sequential:>24.2f} {sequential / one:>11.2f}×"
              f" {n * tokens / batched:>14.1f}")
    print("every column is run: the batch (one generate_many call), N one-sample calls in a row, one sample alone")


if __name__ == "__main__":
    main()
