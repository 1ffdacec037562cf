"""Batching of the techniques that make many calls: each is run as the app runs it, then with the very same
calls one prompt at a time (what a naive loop costs), both timed (best of ``--repeats``).

    python bench/techniques.py [--samples 1 5 10] [--chains 1 3 6] [--variants 6] [--problems 10]
                               [--tokens 128] [--shape tiny|small|7b] [--repeats 2]

* **Self-consistency**, N paths: ``EngineGenerator.generate([prompt], params, n_per_prompt=N)`` — one
  ``generate_many`` batch — on a few-shot chain-of-thought prompt, vs N one-sample calls, vs one sample.
* **Ask-me-anything**, N chains: the technique's own flow (``run_technique``: all reformulations in one
  call, all answers in another) vs the same 2N calls one by one, vs one call alone.
* **Prompt fragility**, K variants × P problems: ``run_fragility`` (rows in batches of whole problems)
  vs the same rows one by one.

Prompts are the bundled problems, rendered with the Mistral chat template; random weights
(bench/common.py): 7B shapes on a GPU, small shapes on CPU; EOS is disabled so every call generates
exactly ``--tokens`` tokens. Every column is run; none is computed from another.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from common import SHAPES, device, device_name, random_handle, timed

from engine.generation import DecodeEngine, SamplingParams, generate_many
from engine.models.llm import LLMHandle
from engine.techniques import tasks as task_sets
from engine.techniques.driver import run_technique
from engine.techniques.fragility import FragilitySettings, run_all
from engine.techniques.generator import EngineGenerator
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


class OneByOne(EngineGenerator):
    """The app's generator, but each prompt of a call is generated on its own, one after the other."""

    def generate(self, prompts, params, n_per_prompt=1, stop=None):
        out = []
        for i, messages in enumerate(prompts):
            out += [replace(g, prompt_index=i) for g in super().generate([messages], params, n_per_prompt, stop)]
        return out


def cot_messages() -> list[dict]:
    task = task_sets.get_task("arith-20", "en")
    messages, _ = few_shot_messages(task, Settings(k_examples=3), cot=True)
    return messages


def ama_run(generator: EngineGenerator, chains: int, params: SamplingParams):
    task = task_sets.get_task("arith-20", "en")
    return list(run_technique("ask_me_anything", task, generator, Settings(n_chains=chains, params=params)))[-1]


def time_ama(handle: LLMHandle, eng: DecodeEngine, chains: int, params: SamplingParams,
             repeats: int) -> tuple[float, float, float]:
    """(one call alone, the app's run: 2 batched calls, the same 2N calls one by one), in seconds
    (each the best of ``repeats`` runs)."""
    batched, single = EngineGenerator(handle, engine=eng), OneByOne(handle, engine=eng)
    run = ama_run(batched, chains, params)  # also the warm-up
    assert len(run.calls) == 2 * chains and run.batches == 2, (len(run.calls), run.batches)
    assert all(c.n_tokens == params.max_new_tokens for c in run.calls)
    one = timed(lambda: batched.generate([run.calls[0].messages], params), handle.device, repeats)
    app = timed(lambda: ama_run(batched, chains, params), handle.device, repeats)
    loop = timed(lambda: ama_run(single, chains, params), handle.device, repeats)
    return one, app, loop


def time_fragility(handle: LLMHandle, eng: DecodeEngine, variants: int, problems: int, params: SamplingParams,
                   repeats: int) -> tuple[int, float, float]:
    """(rows, the app's run: batches of whole problems, the same rows one by one), in seconds (each
    the best of ``repeats`` runs)."""
    tasks = task_sets.benchmark_tasks("en", ["number"], problems)
    settings = FragilitySettings(variants=variants, params=params)
    result = run_all(EngineGenerator(handle, engine=eng), tasks, settings)  # also the warm-up
    assert len(result.rows) == variants * len(tasks) and all(r.n_tokens == params.max_new_tokens for r in result.rows)
    app = timed(lambda: run_all(EngineGenerator(handle, engine=eng), tasks, settings), handle.device, repeats)
    loop = timed(lambda: run_all(OneByOne(handle, engine=eng), tasks, settings), handle.device, repeats)
    return len(result.rows), app, loop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--shape", choices=SHAPES, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 3, 6], help="ask-me-anything chains to time")
    parser.add_argument("--variants", type=int, default=6, help="prompt fragility: K variants")
    parser.add_argument("--problems", type=int, default=None, help="prompt fragility: problems (default 10; CPU 4)")
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

    one = timed(lambda: gen.generate(messages, params, 1), dev, args.repeats)
    print(f"device: {device_name(dev)}  shape: {shape}  dtype: {str(dtype).replace('torch.', '')}")
    print(f"prompt: few-shot CoT (3 examples), {prompt_tokens} tokens · {tokens} new tokens per path · T=0.8")
    print(f"one sample: {one:.2f} s")
    print(f"{'N':>3} {'batched (s)':>12} {'vs 1 sample':>12} {'N calls one by one (s)':>24} {'vs 1 sample':>12} "
          f"{'batched tok/s':>14}")
    for n in args.samples:
        outs = gen.generate(messages, params, n)
        assert len(outs) == n and all(o.n_tokens == tokens for o in outs), [o.n_tokens for o in outs]
        assert n == 1 or len({o.text for o in outs}) == n, "the samples should differ"
        batched = timed(lambda n=n: gen.generate(messages, params, n), dev, args.repeats)
        sequential = timed(lambda n=n: gen.separately(messages, params, n), dev, args.repeats)
        print(f"{n:>3} {batched:>12.2f} {batched / one:>11.2f}× {sequential:>24.2f} {sequential / one:>11.2f}×"
              f" {n * tokens / batched:>14.1f}")
    print("every column is run: the batch (one generate_many call), N one-sample calls in a row, one sample alone")

    greedy = SamplingParams(max_new_tokens=tokens, greedy=True)
    print(f"\nask-me-anything on arith-20 · {tokens} new tokens per call · greedy")
    print(f"{'N':>3} {'calls':>6} {'one call (s)':>13} {'app: 2 batched calls (s)':>25} {'vs 1 call':>10} "
          f"{'2N calls one by one (s)':>24} {'vs 1 call':>10} {'one by one ÷ app':>17}")
    for n in args.chains:
        one, app, loop = time_ama(handle, gen.eng, n, greedy, args.repeats)
        print(f"{n:>3} {2 * n:>6} {one:>13.2f} {app:>25.2f} {app / one:>9.2f}× {loop:>24.2f} {loop / one:>9.2f}× "
              f"{loop / app:>16.2f}×")
    problems = args.problems or (10 if dev == "cuda" else 4)
    rows, app, loop = time_fragility(handle, gen.eng, args.variants, problems, greedy, args.repeats)
    print(f"\nprompt fragility: {args.variants} variants × {rows // args.variants} problems = {rows} rows · "
          f"{tokens} new tokens per row · greedy")
    print(f"{'':>30} {'seconds':>9} {'rows/s':>8}")
    print(f"{'app: batches of whole problems':>30} {app:>9.2f} {rows / app:>8.2f}")
    print(f"{'the same rows one by one':>30} {loop:>9.2f} {rows / loop:>8.2f}")
    print(f"one by one ÷ app: {loop / app:.2f}×")


if __name__ == "__main__":
    main()
