"""A loaded causal LM with its tokenizer, and how to load one from the Hub or a tiny checkpoint."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.runtime.build_lock import BUILD_LOCK
from engine.models.catalog import ModelSpec
from engine.errors import UserError

ProgressFn = Callable[[float, str], None]


@dataclass
class PreparedPrompt:
    """Exactly what a model receives: the rendered text (special tokens visible) and its ids."""

    text: str
    input_ids: list[int]
    templated: bool = False
    note: str | None = None  # e.g. "system_merged": system prompt merged into the first user turn
    messages: list[dict] | None = None  # the chat turns (remote servers apply their own template)

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


@dataclass
class LLMHandle:
    spec: ModelSpec
    model: Any
    tokenizer: Any
    device: str
    load_seconds: float = 0.0
    footprint_bytes: int = 0
    extra: dict = field(default_factory=dict)  # per-engine state (compiled graphs, ...)

    @property
    def context_length(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "max_position_embeddings", None) or 4096)

    @property
    def eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if source is None:
                continue
            ids.update(source if isinstance(source, (list, tuple)) else [source])
        return ids

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def supports_system_role(self) -> bool:
        if not self.has_chat_template:
            return False
        try:
            self.tokenizer.apply_chat_template(
                [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], tokenize=False
            )
            return True
        except Exception:  # noqa: BLE001 - templates raise their own exceptions
            return False

    def prepare_chat(self, messages: list[dict], system: str | None = None) -> PreparedPrompt:
        """Apply the chat template. Without a system role (Mistral v0.1) the system text is merged
        into the first user turn, and the prompt says so in ``note``."""
        msgs = [dict(m) for m in messages]
        note = None
        if system and system.strip():
            if self.supports_system_role():
                msgs = [{"role": "system", "content": system.strip()}] + msgs
            else:
                first = next((m for m in msgs if m["role"] == "user"), None)
                if first is not None:
                    first["content"] = f"{system.strip()}\n\n{first['content']}"
                note = "system_merged"
        if not self.has_chat_template:
            text = "\n".join(m["content"] for m in msgs)
            return PreparedPrompt(text=text, input_ids=self._encode(text, add_special=True), templated=False,
                                  note="no_template", messages=msgs)
        text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        ids = self._encode(text, add_special=False)
        return PreparedPrompt(text=text, input_ids=ids, templated=True, note=note, messages=msgs)

    def prepare_raw(self, text: str) -> PreparedPrompt:
        """Plain continuation: the text as is, with the BOS token the tokenizer adds by itself."""
        ids = self._encode(text, add_special=True)
        shown = self.tokenizer.decode(ids, skip_special_tokens=False)
        return PreparedPrompt(text=shown, input_ids=ids, templated=False)

    def _encode(self, text: str, add_special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def check_length(self, prompt: PreparedPrompt, max_new_tokens: int) -> None:
        limit = self.context_length
        if prompt.n_tokens + max_new_tokens <= limit:
            return
        if prompt.n_tokens < limit:  # the prompt fits: it is the answer's budget that does not
            raise UserError("safety.err.new_tokens", model=self.spec.id, context=limit, tokens=prompt.n_tokens,
                            limit=limit - prompt.n_tokens)   # numbers: the message writes them the reader's way
        raise UserError("err.prompt_too_long", tokens=prompt.n_tokens, model=self.spec.id,
                        limit=limit - max_new_tokens)


def token_piece(tokenizer, token_id: int) -> str:
    """The text one token adds after other text, its leading space kept.

    Decoding a lone SentencePiece token drops its "▁" space (``'conservative'`` for
    ``'▁conservative'``), so decode it after an anchor token and keep the difference."""
    anchor = _anchor_id(tokenizer)
    if anchor is None:
        return tokenizer.decode([token_id], skip_special_tokens=False)
    before = tokenizer.decode([anchor], skip_special_tokens=False)
    both = tokenizer.decode([anchor, token_id], skip_special_tokens=False)
    return both[len(before):] if both.startswith(before) else tokenizer.decode([token_id], skip_special_tokens=False)


def _anchor_id(tokenizer) -> int | None:
    cached = getattr(tokenizer, "_genai_anchor_id", False)
    if cached is not False:
        return cached
    ids = tokenizer("a", add_special_tokens=False)["input_ids"]
    anchor = int(ids[-1]) if ids else None
    try:
        tokenizer._genai_anchor_id = anchor
    except AttributeError:  # a tokenizer that refuses new attributes: recompute next time
        pass
    return anchor


def torch_dtype(precision: str, device: str):
    import torch

    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    # quantized: the dtype of the unquantized modules and of the matmul compute (fp16 where
    # bf16 would only be emulated, e.g. a T4)
    if device == "cuda":
        from engine.models.hardware import cuda_bf16

        return torch.bfloat16 if cuda_bf16() else torch.float16
    return torch.float32


def quantization_config(precision: str, device: str):
    from transformers import BitsAndBytesConfig

    if precision == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if precision in ("nf4", "fp4", "nf4-dq"):
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="fp4" if precision == "fp4" else "nf4",
            bnb_4bit_use_double_quant=precision == "nf4-dq",
            bnb_4bit_compute_dtype=torch_dtype(precision, device),
        )
    return None


def context_length_of(spec: ModelSpec) -> int | None:
    """A causal LM's context length read from its config, without loading (or building, or downloading)
    anything: None when this machine cannot tell (an inference server, a Hub model not cached here)."""
    if spec.endpoint:
        return None
    try:
        if spec.is_tiny:
            from engine.models.tiny import tiny_mistral_config

            config = tiny_mistral_config()
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(spec.id, local_files_only=True)
    except Exception:  # noqa: BLE001 - unknown here: the engine still checks each request
        return None
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if value else None


def model_source(spec: ModelSpec) -> str:
    if spec.is_tiny:
        from engine.models.tiny import tiny_path

        return str(tiny_path(spec.id))
    return spec.id


def load_causal_lm(spec: ModelSpec, device: str, progress: ProgressFn | None = None,
                   fast_path: bool = True) -> LLMHandle:
    """``from_pretrained`` with a Hub id (or a tiny local checkpoint), at the spec's precision.

    ``fast_path=False`` leaves the fast path out: a caller that changes the model's layers
    afterwards (quantizing in place) prepares it itself once the layers are final."""
    with BUILD_LOCK:  # (a lazy first import racing another thread's fails too)
        from transformers import AutoModelForCausalLM, AutoTokenizer

    source = model_source(spec)
    started = time.perf_counter()
    if progress:
        progress(0.1, "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(source)
    if progress:
        progress(0.3, "weights")
    kwargs: dict[str, Any] = {"dtype": torch_dtype(spec.precision, device), "device_map": device}
    qconfig = quantization_config(spec.precision, device)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    with BUILD_LOCK:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    handle = LLMHandle(spec=spec, model=model, tokenizer=tokenizer, device=device,
                       load_seconds=time.perf_counter() - started,
                       footprint_bytes=int(model.get_memory_footprint()))
    if fast_path:
        from engine.models.fastpath import prepare

        prepare(handle, (lambda f, d: progress(0.9 + 0.1 * f, d)) if progress else None)
    if progress:
        progress(1.0, "ready")
    return handle
