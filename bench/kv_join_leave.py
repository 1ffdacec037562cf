"""What a request joining or leaving a running batch costs, before and after the slot cache.

    python bench/kv_join_leave.py [--shape small|7b] [--rows 1 8 31] [--length 512 2048] [--prompt 64]

A batch of ``rows`` requests, each with ``length`` positions in the KV cache (keys and values
of a Mistral of the given shape: 7B's on a GPU, small ones on CPU). Then:

* **join**: a newcomer's prefilled ``--prompt``-token cache enters the batch;
* **leave**: then one of the ``rows + 1`` requests leaves.

"before" runs the engine's previous code (commit 9717832, ``ModelBatch._merge`` /
``_drop_finished``, reproduced below line for line): every join left-pads and concatenates the
whole cache of every layer, every leave ``index_select``s it. "after" runs the engine's code
now: ``ModelBatch._place`` (the newcomer's keys and values copied into a free row of the
preallocated cache, and what the row's previous request left there cleared) and
``ModelBatch.drop_finished`` (the row is marked free). Both are timed here, on the
same shapes; the ratio is of the two measured times.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import device, mistral_config, random_handle, timed

from engine.generation.batch import ModelBatch
from engine.generation.admission import KVBudget
from engine.generation.kv import KVSpec, SlotCache
from engine.generation.types import Request, SamplingParams
from engine.models.arch import attention


# --------------------------------------------------------------- the engine before (9717832)
def _left_pad(t: torch.Tensor, length: int, dim: int, fill_first: bool = False) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    pad = t.narrow(dim, 0, 1).expand(*shape) if fill_first else torch.zeros(shape, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], dim=dim)


def old_join(layers, mask, history, new_layers, new_mask, new_history):
    length = max(mask.shape[1], new_mask.shape[1])
    merged = [(torch.cat([_left_pad(k, length, 2), _left_pad(nk, length, 2)], dim=0),
               torch.cat([_left_pad(v, length, 2), _left_pad(nv, length, 2)], dim=0))
              for (k, v), (nk, nv) in zip(layers, new_layers)]
    mask = torch.cat([_left_pad(mask, length, 1), _left_pad(new_mask, length, 1)], dim=0)
    hl = max(history.shape[1], new_history.shape[1])
    history = torch.cat([_left_pad(history, hl, 1, fill_first=True), _left_pad(new_history, hl, 1, fill_first=True)])
    return merged, mask, history


def old_leave(layers, mask, history, leaving: int):
    keep = [i for i in range(mask.shape[0]) if i != leaving]
    index = torch.tensor(keep, device=mask.device)
    layers = [(k.index_select(0, index), v.index_select(0, index)) for k, v in layers]
    mask = mask.index_select(0, index)
    history = history.index_select(0, index)
    real = mask.any(dim=0).nonzero()
    start = int(real[0]) if len(real) else 0
    if start > 0:
        layers = [(k[:, :, start:], v[:, :, start:]) for k, v in layers]
        mask = mask[:, start:]
    return layers, mask, history


# ------------------------------------------------------------------------------ timing
def median_time(fn, dev: str, repeats: int, reset=None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up (the allocator's), ``reset()``
    untimed before each: wall time on a GPU; on CPU the process's CPU time (one thread), which
    other jobs on the machine do not inflate."""
    clock = time.perf_counter if dev == "cuda" else time.process_time
    return timed(fn, dev, repeats, warmup=1, reset=reset, pick=statistics.median, clock=clock)


def kv_shape(shape: str, dtype: torch.dtype, dev: str) -> KVSpec:
    return KVSpec(attention(mistral_config(shape)), dtype=dtype, device=torch.device(dev))


def time_before(spec: KVSpec, rows: int, length: int, prompt: int, dev: str, repeats: int, new_layers) -> tuple:
    """The previous engine: a left-padded batch of ``rows`` rows × ``length`` columns."""
    def rand(*shape):
        return torch.randn(*shape, dtype=spec.dtype, device=dev)

    layers = [(rand(rows, spec.kv_heads, length, spec.head_dim), rand(rows, spec.kv_heads, length, spec.head_dim))
              for _ in range(spec.layers)]
    mask = torch.ones((rows, length), dtype=torch.long, device=dev)
    history = torch.ones((rows, length), dtype=torch.long, device=dev)
    new_mask = torch.ones((1, prompt), dtype=torch.long, device=dev)
    new_history = torch.ones((1, prompt + 1), dtype=torch.long, device=dev)
    join = median_time(lambda: old_join(layers, mask, history, new_layers, new_mask, new_history), dev, repeats)
    joined = old_join(layers, mask, history, new_layers, new_mask, new_history)  # rows + 1 rows, as after
    leave = median_time(lambda: old_leave(*joined, rows // 2), dev, repeats)
    return join, leave


def case(handle, spec: KVSpec, rows: int, length: int, prompt: int, dev: str, repeats: int) -> dict:
    params = SamplingParams(max_new_tokens=8, greedy=True)
    new_layers = [(torch.randn(1, spec.kv_heads, prompt, spec.head_dim, dtype=spec.dtype, device=dev),
                   torch.randn(1, spec.kv_heads, prompt, spec.head_dim, dtype=spec.dtype, device=dev))
                  for _ in range(spec.layers)]
    old_in, old_out = time_before(spec, rows, length, prompt, dev, repeats, new_layers)

    # after: the engine's batch with a preallocated cache of rows + 1 rows, `rows` of them taken
    batch = ModelBatch(handle, KVBudget(), "bench", rows + 1)
    batch.kv = spec
    batch.cache = SlotCache(spec, rows + 1, length)
    requests = [Request(handle, [1] * (length - 1), params, seed=0) for _ in range(rows + 1)]
    batch.slots = requests[:rows] + [None]
    batch.lens, batch.hist_lens, batch.pending = [length - 1] * rows + [0], [length] * rows + [0], [0] * (rows + 1)
    newcomer = requests[rows]
    newcomer.input_ids = [1] * prompt
    prefilled = [(k[0], v[0]) for k, v in new_layers]

    def free_last() -> None:  # the row was used before by a request as long as the others: cleared on reuse
        batch.slots[rows] = None
        batch.cache.written[rows] = length

    new_in = median_time(lambda: batch._place(newcomer, prefilled, prompt, 7), dev, repeats, reset=free_last)
    leaver = requests[rows // 2]

    def finish_one() -> None:
        batch.slots[rows // 2] = leaver
        leaver.reason = "length"

    new_out = median_time(batch.drop_finished, dev, repeats, reset=finish_one)
    return {"rows": rows, "length": length, "cache_mb": rows * length * spec.bytes_per_token / 2**20,
            "old_in": old_in, "new_in": new_in, "old_out": old_out, "new_out": new_out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=("small", "7b"), default=None)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8, 31])
    parser.add_argument("--length", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dev = device()
    if dev == "cpu":
        torch.set_num_threads(1)  # CPU time then measures the work, not the other jobs on the machine
    shape = args.shape or ("7b" if dev == "cuda" else "small")
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    handle = random_handle("bench", "small", dtype, dev)
    spec = kv_shape(shape, dtype, dev)
    print(f"device: {dev}  KV shape: {shape} ({spec.layers} layers × {spec.kv_heads} KV heads × {spec.head_dim}, "
          f"{str(dtype).replace('torch.', '')}, {spec.bytes_per_token / 1024:.0f} KiB per token)  "
          f"newcomer prompt: {args.prompt} tokens  "
          f"times: {'wall' if dev == 'cuda' else 'CPU time, one thread'}, median of {args.repeats}")
    print(f"{'rows':>4} | {'positions':>9} | {'cache MB':>8} || {'join before':>11} | {'join after':>10} | "
          f"{'ratio':>6} || {'leave before':>12} | {'leave after':>11} | {'ratio':>7}")
    for length in args.length:
        for rows in args.rows:
            r = case(handle, spec, rows, length, args.prompt, dev, args.repeats)
            print(f"{r['rows']:>4} | {r['length']:>9} | {r['cache_mb']:>8.1f} || {r['old_in'] * 1e3:>8.2f} ms | "
                  f"{r['new_in'] * 1e3:>7.2f} ms | {r['old_in'] / r['new_in']:>5.1f}× || "
                  f"{r['old_out'] * 1e3:>9.2f} ms | {r['new_out'] * 1e3:>8.3f} ms | {r['old_out'] / r['new_out']:>6.0f}×")


if __name__ == "__main__":
    main()
