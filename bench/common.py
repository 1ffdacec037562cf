"""Shared pieces of the benchmarks: random-weight Mistral models and the bandwidth limit.

Weight values do not change speed, so random weights built from ``MistralConfig`` stand in
for the real checkpoints: 7B shapes on a GPU, small shapes on CPU.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.catalog import ModelSpec  # noqa: E402
from engine.llm import LLMHandle  # noqa: E402


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def mistral_config(shape: str):
    from transformers import MistralConfig

    if shape == "7b":
        return MistralConfig()  # the defaults are Mistral-7B's shapes
    return MistralConfig(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096)


def tokenizer():
    from transformers import AutoTokenizer

    from engine.chat_templates import MISTRAL_V1
    from engine.tiny import write_mistral_v1_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="bench-tok-"))
    write_mistral_v1_tokenizer(folder, MISTRAL_V1)
    return AutoTokenizer.from_pretrained(folder)


def random_handle(name: str, shape: str, dtype: torch.dtype, dev: str, seed: int = 0) -> LLMHandle:
    from transformers import MistralForCausalLM

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(dev):
            model = MistralForCausalLM(mistral_config(shape)).eval()
    finally:
        torch.set_default_dtype(previous)
    tok = tokenizer()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.generation_config.eos_token_id = None  # random weights: never stop early, time every token
    spec = ModelSpec(role="bench", kind="causal_lm", id=name, precision=str(dtype).replace("torch.", ""))
    handle = LLMHandle(spec=spec, model=model, tokenizer=tok, device=dev,
                       footprint_bytes=int(model.get_memory_footprint()))
    return handle


def no_eos(handle: LLMHandle) -> set[int]:
    return set()


def measure_bandwidth(dev: str, n_bytes: int = 1 << 30) -> float:
    """Bytes per second of a large device-to-device copy (read + write counted once each)."""
    n_bytes = n_bytes if dev == "cuda" else n_bytes // 4
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    sync(dev)
    reps = 10 if dev == "cuda" else 3
    start = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync(dev)
    seconds = (time.perf_counter() - start) / reps
    return 2 * n_bytes / seconds


def sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


def build_checkpoint(folder: Path, config, dtype: torch.dtype) -> Path:
    """A random-weight Mistral written with ``save_pretrained`` (with Mistral's real v1 tokenizer), so
    the engine loads it through the same ``from_pretrained`` path (and quantization configs) as a Hub id."""
    from transformers import MistralForCausalLM

    from engine.tiny import write_mistral_v1_tokenizer

    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = MistralForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder)
    write_mistral_v1_tokenizer(folder, chat_template=None)
    (folder / ".complete").touch()
    return folder


def prompt_ids(n: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return [1] + torch.randint(100, 30000, (n - 1,), generator=g).tolist()
