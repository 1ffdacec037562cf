"""CLIP's tokenizer, built offline from the BPE merges that open-clip ships (assets/clip/)."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import uuid
from functools import lru_cache
from pathlib import Path

VOCAB_GZ = Path(__file__).resolve().parents[2] / "assets" / "clip" / "bpe_simple_vocab_16e6.txt.gz"
CLIP_MAX_TOKENS = 77  # including <|startoftext|> and <|endoftext|>
N_MERGES = 49152 - 256 - 2  # lines 1 … 48894 of the file


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def merges() -> list[tuple[str, str]]:
    with gzip.open(VOCAB_GZ, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")[1:N_MERGES + 1]
    return [tuple(line.split()) for line in lines]


def vocabulary() -> dict[str, int]:
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges()]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}


def write_clip_tokenizer(folder: Path, max_length: int = CLIP_MAX_TOKENS) -> Path:
    """A CLIPTokenizer folder (vocab.json, merges.txt) made from the bundled merges."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocabulary(), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges()) + "\n",
                                       encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length,
              "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
              "pad_token": "<|endoftext|>", "do_lower_case": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@lru_cache(maxsize=2)
def clip_tokenizer(model_max_length: int = CLIP_MAX_TOKENS):
    """CLIP's tokenizer; the tokenizer tab asks for a huge ``model_max_length`` to show what
    lies beyond the 77-token window without truncation warnings."""
    from transformers import CLIPTokenizer

    from engine.models.tiny_files import tiny_root

    folder = Path(os.environ.get("GENAI_CLIP_DIR") or tiny_root().parent / "clip-tokenizer")
    if not (folder / "merges.txt").exists():
        _write_once(folder)
    return CLIPTokenizer.from_pretrained(folder, model_max_length=model_max_length)


def _write_once(folder: Path) -> None:
    """Write into a private folder, then rename it into place: a process or thread that loses
    the race never reads half-written files."""
    tmp = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex}")
    write_clip_tokenizer(tmp)
    try:
        os.rename(tmp, folder)
    except OSError:  # another writer got there first
        shutil.rmtree(tmp, ignore_errors=True)
