"""Where tiny checkpoints live, and the tokenizer files they share.

Kept apart from :mod:`engine.models.tiny` (which builds the checkpoints) so that the builders of the
image pipelines and of CLIP's tokenizer can use them without importing each other in a circle.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def tiny_root() -> Path:
    root = os.environ.get("GENAI_TINY_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "genai-class-demo", "tiny"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def mistral_data_file(name: str) -> Path:
    import mistral_common

    return Path(mistral_common.__file__).resolve().parent / "data" / name


def write_mistral_v1_tokenizer(folder: Path, chat_template: str | None, max_length: int = 2048) -> None:
    """A transformers tokenizer folder around mistral-common's bundled v1 SentencePiece model."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mistral_data_file("tokenizer.model.v1"), folder / "tokenizer.model")
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "legacy": False,
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": max_length,
    }
    if chat_template:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    )
