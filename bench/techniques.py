"""Self-consistency cost: N sampled paths as one batch vs one path, through the tab's generator.

    python bench/techniques.py [--samples 1 5 10] [--tokens 128] [--shape small|7b]

For each N, the exact call self-consistency makes — ``EngineGenerator.generate([prompt], params,
n_per_prompt=N)``, i.e. one ``generate_many`` batch — on a few-shot chain-of-thought prompt of
the bundled problems, rendered with the Mistral chat template. Prints its wall time, its ratio to
one sample, and the ratio of N separate one-sample calls (what a naive loop would cost) for
comparison. Random weights (bench/common.py): 7B shapes on a GPU, small shapes on CPU; EOS is
disabled so every path generates exactly ``--tokens`` tokens.
"""
from __future__ import annotations

import argparse
import time

import torch

from common import device, random_handle, sync

from engine.generation import DecodeEngine, SamplingParams, generate_many
from engine.llm import LLMHandle
from engine.techniques import tasks as task_sets
from engine.techniques.techniques import Settings, few_shot_messages


class NoEosHandle(LLMHandle):
    """Random weights could sample EOS: never stop early, so every path has the same length."""

    @property
    def eos_ids(self) -> set[int]:
        return set()


class BenchGenerator:
    """What ``EngineGenerator.generate`` does, on a private decode engine (no other traffic in the measurement)."""

    def __init__(self, handle: LLMHandle) -> None:
        self.handle = handle
        self.eng = DecodeEngine(background=False)  # this thread drives the loop: no daemon thread at exit

    def generate(self, messages: list[dict], params: SamplingParams, n: int) -> list:
        prompt = self.handle.prepare_chat(messages)
        return generate_many(self.handle, [prompt], params, n_per_prompt=n, eng=self.eng)


def timed(fn) -> float:
    sync(device())
    start = time.perf_counter()
    fn()
    sync(device())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--shape", choices=("small", "7b"), default=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    dev = device()
    shape = args.shape or ("7b" if dev == "cuda" else "small")
    tokens = args.tokens or (256 if dev == "cuda" else 64)
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    base = random_handle("bench", shape, dtype, dev)
    handle = NoEosHandle(spec=base.spec, model=base.model, tokenizer=base.tokenizer, device=dev,
                         footprint_bytes=base.footprint_bytes)
    task = task_sets.get_task("arith-20", "en")
    messages, _ = few_shot_messages(task, Settings(k_examples=3), cot=True)
    gen = BenchGenerator(handle)
    prompt_tokens = handle.prepare_chat(messages).n_tokens
    params = SamplingParams(max_new_tokens=tokens, temperature=0.8, top_p=0.95, top_k=50, seed=1)
    gen.generate(messages, SamplingParams(max_new_tokens=8, temperature=0.8), max(args.samples))  # warm-up

    def best(fn) -> float:
        return min(timed(fn) for _ in range(args.repeats))

    counts = sorted(set(args.samples) | {1})
    times = {n: best(lambda n=n: gen.generate(messages, params, n)) for n in counts}
    one = times[1]
    name = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
    print(f"device: {name}  shape: {shape}  dtype: {str(dtype).replace('torch.', '')}")
    print(f"prompt: few-shot CoT (3 examples), {prompt_tokens} tokens · {tokens} new tokens per path · T=0.8")
    print(f"{'N':>3} {'batched (s)':>12} {'vs 1 sample':>12} {'N calls one by one (s)':>24} {'vs 1 sample':>12} {'tok/s':>9}")
    for n in args.samples:
        outs = gen.generate(messages, params, n)
        assert len(outs) == n and all(o.n_tokens == tokens for o in outs), [o.n_tokens for o in outs]
        assert n == 1 or len({o.text for o in outs}) == n, "the samples should differ"
        batched, sequential = times[n], n * one
        print(f"{n:>3} {batched:>12.2f} {batched / one:>11.2f}× {sequential:>24.2f} {sequential / one:>11.2f}×"
              f" {n * tokens / batched:>9.1f}")
    print("one-by-one = N × the one-sample time (N separate calls of the same length)")


if __name__ == "__main__":
    main()
