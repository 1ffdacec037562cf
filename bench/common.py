"""Shared pieces of the benchmarks: random-weight Mistral models, the measured memory bandwidth,
the one timing helper (:func:`timed`) and the one plain ``generate()`` baseline. The bytes a decode
step reads are ``engine.models.memory.decode_read_bytes``.

Weight values do not change speed, so random weights built from Mistral's config stand in for
the real checkpoints: 7B shapes on a GPU, small shapes on CPU, tiny ones for smoke runs.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.models.catalog import ModelSpec  # noqa: E402
from engine.models.llm import LLMHandle  # noqa: E402

CONFIGS = Path(__file__).resolve().parent / "configs"
SHAPES = ("tiny", "small", "7b")


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(dev: str) -> str:
    return torch.cuda.get_device_name(0) if dev == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def mistral_config(shape: str, max_positions: int | None = None):
    """``7b``: Mistral-7B's published config (bench/configs/); ``small``: a 44.0 M-parameter model
    for CPU figures (32.8 M of them the embeddings and ``lm_head``); ``tiny``: the test checkpoints'
    shapes (engine/models/tiny.py), for smoke runs.

    ``max_positions`` lowers ``max_position_embeddings`` (no weight depends on it in Mistral):
    the fast path prepares one static cache per bucket that fits, so fewer buckets compile sooner."""
    from transformers import MistralConfig

    if shape == "7b":
        values = json.loads((CONFIGS / "mistral-7b.json").read_text())
        values.pop("model_type", None)
        config = MistralConfig(**values)
    elif shape == "tiny":
        from engine.models.tiny import tiny_mistral_config

        config = tiny_mistral_config()
    else:
        config = MistralConfig(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                               num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096)
    config.sliding_window = None  # prompts + answers stay far below Mistral's 4096-token window
    if max_positions:
        config.max_position_embeddings = max_positions
    return config


def tokenizer():
    from transformers import AutoTokenizer

    from engine.models.chat_templates import MISTRAL_V1
    from engine.models.tiny import write_mistral_v1_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="bench-tok-"))
    write_mistral_v1_tokenizer(folder, MISTRAL_V1)
    return AutoTokenizer.from_pretrained(folder)


class NoEosHandle(LLMHandle):
    """Random weights can produce EOS at any step: never stop early, so every run decodes exactly
    the tokens it asks for."""

    @property
    def eos_ids(self) -> set[int]:
        return set()


def random_handle(name: str, shape: str, dtype: torch.dtype, dev: str, seed: int = 0,
                  max_positions: int | None = None) -> NoEosHandle:
    """A random-weight Mistral built in place on ``dev`` (7B shapes build in seconds on a GPU)."""
    from transformers import MistralForCausalLM

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(dev):
            model = MistralForCausalLM(mistral_config(shape, max_positions)).eval()
    finally:
        torch.set_default_dtype(previous)
    tok = tokenizer()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.generation_config.eos_token_id = None  # plain generate() too decodes every token asked for
    spec = ModelSpec(role="bench", kind="causal_lm", id=name, precision=str(dtype).replace("torch.", ""))
    return NoEosHandle(spec=spec, model=model, tokenizer=tok, device=dev,
                       footprint_bytes=int(model.get_memory_footprint()))


def measure_bandwidth(dev: str, n_bytes: int = 1 << 30) -> float:
    """Memory bandwidth measured here: bytes per second of a large device-to-device copy (each
    byte is read once and written once, both counted), best of three rounds."""
    n_bytes = n_bytes if dev == "cuda" else n_bytes // 4
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    reps = 10 if dev == "cuda" else 3

    def copies() -> None:
        for _ in range(reps):
            dst.copy_(src)

    best = timed(copies, dev, repeats=3, warmup=1) / reps
    return 2 * n_bytes / best


def sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], dev: str = "cpu", repeats: int = 1, *, warmup: int = 0,
          reset: Callable[[], object] | None = None, pick: Callable[[list[float]], float] = min,
          clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds ``fn()`` takes, the device's queued work included (``dev="cuda"``: the GPU is waited for).

    The benchmarks' one timing helper. ``repeats`` timed runs after ``warmup`` untimed ones,
    ``reset()`` run untimed before each; ``pick`` gives the figure (``min``: the best run,
    ``statistics.median``). ``clock=time.process_time`` counts this process's CPU time instead of
    wall time: other jobs on a shared CPU do not inflate it."""
    times = []
    for run in range(warmup + repeats):
        if reset is not None:
            reset()
        sync(dev)
        start = clock()
        fn()
        sync(dev)
        if run >= warmup:
            times.append(clock() - start)
    return pick(times)


def plain_generate(handle, ids: list[int], n: int) -> list[int]:
    """transformers' own ``generate()``, greedy, exactly ``n`` new tokens after ``ids``: the
    baseline the engine is compared to. Returns the new tokens."""
    x = torch.tensor([ids], device=handle.model.device)
    out = handle.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n,
                                do_sample=False, pad_token_id=0, eos_token_id=None)
    return out[0, len(ids):].tolist()


def reset_peak(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_bytes(dev: str) -> int | None:
    """Peak GPU memory allocated since ``reset_peak`` (None on CPU: no allocator to ask)."""
    return int(torch.cuda.max_memory_allocated()) if dev == "cuda" else None


def build_checkpoint(folder: Path, config, dtype: torch.dtype) -> Path:
    """A random-weight Mistral written with ``save_pretrained`` (with Mistral's real v1 tokenizer), so
    the engine loads it through the same ``from_pretrained`` path (and quantization configs) as a Hub id."""
    from transformers import MistralForCausalLM

    if (folder / ".complete").exists():
        return folder
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = MistralForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return save_checkpoint(folder, model)


def save_checkpoint(folder: Path, model) -> Path:
    """``model`` (random weights) saved where ``load_causal_lm`` can read it as if it came from the Hub."""
    from engine.models.tiny import write_mistral_v1_tokenizer

    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    write_mistral_v1_tokenizer(folder, chat_template=None)
    (folder / ".complete").touch()
    return folder


def prompt_ids(n: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return [1] + torch.randint(100, 30000, (n - 1,), generator=g).tolist()


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]
