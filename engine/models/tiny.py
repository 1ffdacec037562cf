"""Random-weight checkpoints built locally from real configs (the ``tiny`` profile).

They are written with ``save_pretrained`` and read back with the same ``from_pretrained``
code as the Hub models, so tests exercise the real loading path with no network. The LLM
tokenizer is Mistral's real v1 SentencePiece model shipped inside ``mistral-common``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from filelock import FileLock

from engine.runtime.build_lock import BUILD_LOCK
from engine.models.tiny_files import mistral_data_file, tiny_root, write_mistral_v1_tokenizer

TINY_PREFIX = "tiny/"
__all__ = ["TINY_PREFIX", "is_tiny", "mistral_data_file", "tiny_path", "tiny_root", "write_mistral_v1_tokenizer"]


def tiny_mistral_config():
    from transformers import MistralConfig

    return MistralConfig(
        vocab_size=32000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )


def build_tiny_mistral(folder: Path, instruct: bool) -> None:
    import torch
    from transformers import MistralForCausalLM

    from engine.models.chat_templates import MISTRAL_V1

    torch.manual_seed(1 if instruct else 0)
    model = MistralForCausalLM(tiny_mistral_config())
    model.generation_config.bos_token_id = 1
    model.generation_config.eos_token_id = 2
    model.save_pretrained(folder)
    write_mistral_v1_tokenizer(folder, MISTRAL_V1 if instruct else None)


def _build_diffusion(kind: str):
    def build(folder: Path) -> None:
        from engine.models import tiny_pipelines

        getattr(tiny_pipelines, f"build_tiny_{kind}")(folder)
    return build


def _builders():
    return {
        "tiny/mistral-base": lambda p: build_tiny_mistral(p, instruct=False),
        "tiny/mistral-instruct": lambda p: build_tiny_mistral(p, instruct=True),
        "tiny/sdxl": _build_diffusion("sdxl"),
        "tiny/flux": _build_diffusion("flux"),
    }


def _refresh_chat_template(model_id: str, folder: Path) -> None:
    """A checkpoint built before its chat template changed gets the current one (no rebuild)."""
    if model_id != "tiny/mistral-instruct":
        return
    import json

    from engine.models.chat_templates import MISTRAL_V1

    config = folder / "tokenizer_config.json"
    if json.loads(config.read_text()).get("chat_template") == MISTRAL_V1:
        return
    with FileLock(str(folder) + ".lock"):
        data = json.loads(config.read_text())
        if data.get("chat_template") != MISTRAL_V1:
            data["chat_template"] = MISTRAL_V1
            tmp = config.with_name(config.name + ".partial")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(config)


def is_tiny(model_id: str) -> bool:
    return model_id.startswith(TINY_PREFIX)


def tiny_path(model_id: str) -> Path:
    """The local folder of a tiny checkpoint, built on first use (process- and thread-safe)."""
    builders = _builders()
    if model_id not in builders:
        from engine.errors import UserError

        raise UserError("err.unknown_model", model=model_id)
    root = tiny_root()
    folder = root / model_id.removeprefix(TINY_PREFIX)
    done = folder / ".complete"
    if done.exists():
        _refresh_chat_template(model_id, folder)
        return folder
    with FileLock(str(folder) + ".lock"):
        if not done.exists():
            if folder.exists():
                shutil.rmtree(folder)
            tmp = folder.with_name(folder.name + ".partial")
            if tmp.exists():
                shutil.rmtree(tmp)
            with BUILD_LOCK:  # the builders construct models (engine/runtime/build_lock.py)
                builders[model_id](tmp)
            tmp.rename(folder)
            done.touch()
    return folder
