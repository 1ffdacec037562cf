"""Text → tokens for the tokenizer tab: which tokenizers there are, and what the tab does with them.

Offline set: Mistral's v1 SentencePiece (Mistral-7B-v0.1, Instruct-v0.1/v0.2), v3 (Instruct-v0.3)
and Tekken (Nemo and later) — encoded by ``mistral-common`` itself — and CLIP's BPE (SDXL, FLUX).
With the Hub: any tokenizer by id (cached after the first load); tiktoken encodings when
their files can be fetched (or are in tiktoken's cache).

This module holds the registry (:func:`get`, loaded once per key, least recently used dropped) and
the operations on text: encoding with character spans (:func:`encode_all`, :func:`head_encoding`),
decoding ids, presets, the language-cost table and FLUX's T5 count. The tokenizer classes are in
:mod:`engine.tokenization.backends`; pieces and their character spans in :mod:`engine.tokenization.pieces`.
"""
from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.errors import UserError
from engine.tokenization.pieces import Encoding
from engine.tokenization.backends import ClipTokenizer, HubTokenizer, MistralTokenizer, TiktokenTokenizer, Tokenizer

MAX_CHARS = 100_000
PRESETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "presets"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


# ------------------------------------------------------------------ registry
OFFLINE = {
    "mistral-v1": ("Mistral v1 · SentencePiece 32,000 (Mistral-7B-v0.1, Instruct v0.1/v0.2)", "tokenizer.model.v1"),
    "mistral-v3": ("Mistral v3 · SentencePiece 32,768 (Instruct v0.3)", "mistral_instruct_tokenizer_240323.model.v3"),
    "tekken": ("Mistral Tekken · 131,072 (Nemo and later)", "tekken_240911.json"),
}
SHORT = {"mistral-v1": "Mistral v1", "mistral-v3": "Mistral v3", "tekken": "Tekken", "clip": "CLIP"}
CHOICE_LABELS = {"mistral-v1": "Mistral v1 · 32,000 (7B v0.1, v0.2)", "mistral-v3": "Mistral v3 · 32,768 (7B v0.3)",
                 "tekken": "Tekken · 131,072 (Nemo and later)", "clip": "CLIP · 49,408 (SDXL, FLUX)"}
DEFAULT_SET = ("mistral-v1", "mistral-v3", "tekken", "clip")
MAX_LOADED = 12  # Hub and tiktoken tokenizers kept in memory (least recently used dropped first)
_lock = threading.Lock()
_key_locks: dict[str, threading.Lock] = {}
_cache: OrderedDict[str, Tokenizer] = OrderedDict()


def offline_choices() -> list[tuple[str, str]]:
    return [(label, key) for key, label in CHOICE_LABELS.items()]


def _build(key: str) -> Tokenizer:
    if key in OFFLINE:
        label, filename = OFFLINE[key]
        return MistralTokenizer(key, label, filename)
    if key == "clip":
        return ClipTokenizer()
    if key.startswith("tiktoken:"):
        return TiktokenTokenizer(key.split(":", 1)[1])
    if HUB_ID.fullmatch(key):
        return HubTokenizer(key)
    raise UserError("err.unknown_model", model=key)


def get(key: str) -> Tokenizer:
    """A tokenizer by key: an offline one, ``clip``, ``tiktoken:<name>`` or a Hub id (loaded once,
    one load at a time per key; a load that fails is tried again next time)."""
    key = key.strip()
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        try:
            with _lock:
                if key in _cache:
                    return _cache[key]
            tok = _build(key)
            tok.short = SHORT.get(key) or key.split("/")[-1].removeprefix("tiktoken:")
            with _lock:
                _cache[key] = tok
                loaded = [k for k in _cache if k not in SHORT]
                for old in loaded[:max(0, len(loaded) - MAX_LOADED)]:
                    del _cache[old]
            return tok
        finally:
            with _lock:
                if _key_locks.get(key) is key_lock:
                    del _key_locks[key]


def is_loaded(key: str) -> bool:
    """True when ``key`` is in memory (using it costs no download or load)."""
    with _lock:
        return key in _cache


def check_text(text: str) -> None:
    if len(text) > MAX_CHARS:
        raise UserError("tok.err.too_long", n=len(text), limit=MAX_CHARS)


# Token ids of the last texts, per tokenizer: a long text is tokenized once, whatever is drawn of it
# afterwards (more pieces, another language, the tab shown again).
IDS_CACHE_SIZE = 32
_ids_cache: OrderedDict[tuple, list[int]] = OrderedDict()
_ids_lock = threading.Lock()


def token_ids(tok: Tokenizer, text: str, parse_special: bool = False) -> list[int]:
    """``tok.encode(text)``, remembered for the last few texts."""
    key = (tok.key, parse_special, len(text), hash(text), text[:64])
    with _ids_lock:
        if key in _ids_cache:
            _ids_cache.move_to_end(key)
            return _ids_cache[key]
    ids = tok.encode(text, parse_special)
    with _ids_lock:
        _ids_cache[key] = ids
        while len(_ids_cache) > IDS_CACHE_SIZE:
            _ids_cache.popitem(last=False)
    return ids


def head_encoding(tok: Tokenizer, text: str, parse_special: bool = False, pieces: int = 2_000) -> Encoding:
    """The whole text's ids (exact counts) with character spans for its first ``pieces`` tokens only.

    Spans are what costs on a long text; a view draws only its first tokens. They come from
    encoding a prefix of the text, long enough that its first ids equal the whole text's: only
    the tokens both encodings share are kept, so every piece is exactly the whole text's."""
    ids = token_ids(tok, text, parse_special)
    if len(ids) <= pieces:
        enc = tok.encoding(text, parse_special)
        return Encoding(tok.key, tok.label, text, ids, enc.pieces, tok.vocab_size)
    chars = max(256, int(len(text) * (pieces + 64) / len(ids) * 1.25))
    while True:
        head = tok.encoding(text[:chars], parse_special)
        same = 0
        for a, b in zip(head.ids, ids):
            if a != b:
                break
            same += 1
        if same >= pieces or chars >= len(text):
            break
        chars = min(len(text), chars * 2)
    return Encoding(tok.key, tok.label, text, ids, head.pieces[:min(same, pieces)], tok.vocab_size)


def encode_all(text: str, keys: list[str], parse_special: bool = False) -> list[Encoding]:
    check_text(text)
    return [get(k).encoding(text, parse_special) for k in keys]


# ------------------------------------------------------------------ decode
@dataclass
class Decoded:
    label: str
    text: str | None
    bad_ids: list[int]
    vocab_size: int


def parse_ids(raw: str) -> list[int]:
    """``"1, 22 333"`` or ``"[1, 22, 333]"`` → ``[1, 22, 333]``."""
    parts = [x for x in re.split(r"[\s,;\[\]()]+", (raw or "").strip()) if x]
    if not parts or not all(re.fullmatch(r"-?\d{1,12}", x) for x in parts):
        raise UserError("tok.err.bad_ids")
    return [int(x) for x in parts]


def decode_ids(raw: str, keys: list[str]) -> list[Decoded]:
    """Per tokenizer: the decoded text, or the ids that are outside its vocabulary."""
    ids = parse_ids(raw)
    out = []
    for key in keys:
        tok = get(key)
        bad = [i for i in ids if i < 0 or i >= tok.vocab_size]
        out.append(Decoded(tok.label, None if bad else tok.decode(ids), bad, tok.vocab_size))
    return out


# ------------------------------------------------------------------ presets
@lru_cache(maxsize=1)
def presets() -> list[dict]:
    return json.loads((PRESETS_DIR / "tokenizer_presets.json").read_text(encoding="utf-8"))["presets"]


@lru_cache(maxsize=1)
def language_sentences() -> list[dict]:
    return json.loads((PRESETS_DIR / "language_cost.json").read_text(encoding="utf-8"))["sentences"]


def language_cost(keys: list[str]) -> list[dict]:
    """Token counts of the same meaning in several languages, and the ratio to English.
    CLIP's start and end tokens are left out so that counts compare."""
    rows = []
    english = {}
    for key in keys:
        tok = get(key)
        for s in language_sentences():
            n = len(tok.encode(s["text"])) - tok.framing
            if s["lang"] == "en":
                english[key] = n
            rows.append({"language": s["name"], "lang": s["lang"], "tokenizer": tok.short, "key": key,
                         "tokens": n, "chars": len(s["text"])})
    for r in rows:
        r["ratio_to_english"] = round(r["tokens"] / english[r["key"]], 2) if english.get(r["key"]) else None
    return rows


CHAT_MESSAGES = "chat_messages"


@lru_cache(maxsize=1)
def chat_preset_text() -> str:
    """The chat preset's conversation rendered through Mistral-7B-Instruct-v0.1's chat template
    (special tokens kept as text: ``<s>[INST] … [/INST] …</s>``)."""
    import tempfile

    from transformers import AutoTokenizer

    from engine.models.chat_templates import MISTRAL_V1
    from engine.models.tiny import write_mistral_v1_tokenizer

    messages = next(p for p in presets() if p["id"] == "chat")[CHAT_MESSAGES]
    with tempfile.TemporaryDirectory(prefix="mistral-v1-chat-") as folder:
        write_mistral_v1_tokenizer(Path(folder), MISTRAL_V1)
        tok = AutoTokenizer.from_pretrained(folder)
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def preset_text(preset_id: str) -> tuple[str, bool]:
    """A preset's text and whether special tokens should be read as such."""
    p = next((p for p in presets() if p["id"] == preset_id), None)
    if p is None:
        raise UserError("tok.err.unknown_preset", preset=preset_id)
    if CHAT_MESSAGES in p:
        return chat_preset_text(), True
    return p["text"], False


# ------------------------------------------------------------------ T5 (FLUX)
@lru_cache(maxsize=1)
def _t5_tokenizer():
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained("google/t5-v1_1-xxl", local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the local cache
        return None


def t5_count(text: str) -> tuple[int, bool]:
    """Tokens for FLUX's T5 encoder (end token included) and whether the count is exact: exact
    with a cached T5 tokenizer, else estimated with Mistral v1's SentencePiece (the same
    algorithm, a vocabulary of similar size)."""
    tok = _t5_tokenizer()
    if tok is not None:
        return len(tok(text)["input_ids"]), True
    return len(get("mistral-v1").encode(text)) + 1, False
