"""Text → tokens for the tokenizer tab: real vocabularies, pieces with character spans.

Offline set: Mistral's v1 SentencePiece (Mistral-7B-v0.1, Instruct-v0.1/v0.2), v3 (Instruct-v0.3)
and Tekken (Nemo and later) — encoded by ``mistral-common`` itself — and CLIP's BPE (SDXL, FLUX).
With the Hub: any tokenizer by id (cached after the first load); tiktoken encodings when
their files can be fetched.

Every tokenizer gives token ids and each token's bytes. :func:`align` places the bytes on the
original text to get character spans (so views can highlight the same span), and marks
byte-fallback tokens (a token holding part of a UTF-8 character) so they are grouped under
the character they form.
"""
from __future__ import annotations

import json
import re
import threading
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.errors import UserError, as_user_error

MAX_CHARS = 100_000
SPECIAL_STRINGS = ("<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")
PRESETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "presets"


@dataclass
class Piece:
    id: int
    raw: bytes | None  # None for special tokens
    start: int = -1  # character span in the input (end exclusive); -1 when it has none
    end: int = -1
    special: str | None = None  # the special token's name, e.g. "<s>"
    group: int | None = None  # byte-fallback group index: tokens that together form one character

    @property
    def partial(self) -> bool:
        if self.raw is None:
            return False
        try:
            self.raw.decode("utf-8")
            return False
        except UnicodeDecodeError:
            return True

    @property
    def text(self) -> str:
        if self.special:
            return self.special
        return self.raw.decode("utf-8", errors="replace") if self.raw is not None else ""


@dataclass
class Encoding:
    key: str
    label: str
    text: str
    ids: list[int]
    pieces: list[Piece] = field(default_factory=list)
    vocab_size: int = 0
    note: str | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def n_chars(self) -> int:
        return len(self.text)

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / self.n_tokens if self.n_tokens else 0.0


class Tokenizer:
    """What the tab needs from a tokenizer."""

    key: str
    label: str
    short: str = ""
    casefold = False  # CLIP lower-cases its input
    window: int | None = None  # a hard input window (CLIP: 77)

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str, parse_special: bool = False) -> list[int]:
        raise NotImplementedError

    def token_bytes(self, token_id: int) -> bytes | None:
        """The token's bytes; None for special tokens."""
        raise NotImplementedError

    def special_name(self, token_id: int) -> str:
        return f"<{token_id}>"

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def encoding(self, text: str, parse_special: bool = False) -> Encoding:
        ids = self.encode(text, parse_special)
        pieces = [Piece(i, self.token_bytes(i)) for i in ids]
        for p in pieces:
            if p.raw is None:
                p.special = self.special_name(p.id)
        align(text, pieces, casefold=self.casefold)
        return Encoding(self.key, self.label, text, ids, pieces, self.vocab_size)


# ------------------------------------------------------------------ mistral-common
def _mistral_file(name: str) -> str:
    from engine.tiny import mistral_data_file

    return str(mistral_data_file(name))


class MistralTokenizer(Tokenizer):
    """A tokenizer file bundled with mistral-common, encoded by mistral-common itself."""

    def __init__(self, key: str, label: str, filename: str) -> None:
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer as MT

        self.key, self.label = key, label
        self.inner = MT.from_file(_mistral_file(filename)).instruct_tokenizer.tokenizer
        self.special_ids = set(self.inner.special_ids) if hasattr(self.inner, "special_ids") else {1, 2}
        self._specials = self._special_map()
        self.tekken = type(self.inner).__name__ == "Tekkenizer"

    def _special_map(self) -> dict[str, int]:
        found = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in SPECIAL_STRINGS:
                try:
                    found[name] = int(self.inner.get_special_token(name))
                except Exception:  # noqa: BLE001 - not a special token of this version
                    continue
        found.setdefault("<s>", self.inner.bos_id)
        found.setdefault("</s>", self.inner.eos_id)
        return found

    @property
    def vocab_size(self) -> int:
        return int(self.inner.n_words)

    def encode(self, text: str, parse_special: bool = False) -> list[int]:
        if not parse_special:
            return list(self.inner.encode(text, bos=False, eos=False))
        pattern = "(" + "|".join(re.escape(s) for s in sorted(self._specials, key=len, reverse=True)) + ")"
        ids: list[int] = []
        for part in re.split(pattern, text):
            if part in self._specials:
                ids.append(self._specials[part])
            elif part:
                ids.extend(self.inner.encode(part, bos=False, eos=False))
        return ids

    def token_bytes(self, token_id: int) -> bytes | None:
        if token_id in self.special_ids or token_id in self._specials.values():
            return None
        if self.tekken:
            return self.inner.id_to_byte_piece(token_id)
        piece = self.inner.id_to_piece(token_id)
        m = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
        if m:
            return bytes([int(m.group(1), 16)])
        return piece.replace("▁", " ").encode("utf-8")

    def special_name(self, token_id: int) -> str:
        for name, i in self._specials.items():
            if i == token_id:
                return name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return self.inner.id_to_piece(token_id)
            except Exception:  # noqa: BLE001
                return f"<{token_id}>"

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids)


# ---------------------------------------------------------------------- CLIP
class ClipTokenizer(Tokenizer):
    casefold = True

    def __init__(self) -> None:
        from engine.clip_bpe import CLIP_MAX_TOKENS, bytes_to_unicode, clip_tokenizer

        self.key, self.label = "clip", "CLIP BPE (SDXL, FLUX text encoder)"
        self.inner = clip_tokenizer(model_max_length=10**9)
        self.window = CLIP_MAX_TOKENS
        self.byte_decoder = {v: k for k, v in bytes_to_unicode().items()}
        self.bos, self.eos = self.inner.bos_token_id, self.inner.eos_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.inner)

    def encode(self, text: str, parse_special: bool = False) -> list[int]:
        return list(self.inner(text, add_special_tokens=True, truncation=False)["input_ids"])

    def token_bytes(self, token_id: int) -> bytes | None:
        if token_id in (self.bos, self.eos):
            return None
        token = self.inner.convert_ids_to_tokens(token_id)
        word_end = token.endswith("</w>")
        body = bytes(self.byte_decoder[c] for c in token.removesuffix("</w>"))
        return body + (b" " if word_end else b"")

    def special_name(self, token_id: int) -> str:
        return self.inner.convert_ids_to_tokens(token_id)

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids, skip_special_tokens=True)


# --------------------------------------------------------------- Hub / tiktoken
class HubTokenizer(Tokenizer):
    def __init__(self, model_id: str) -> None:
        from transformers import AutoTokenizer

        self.key = self.label = model_id
        try:
            self.inner = AutoTokenizer.from_pretrained(model_id)
        except Exception as exc:  # noqa: BLE001
            raise (as_user_error(exc, model_id) or UserError("err.unknown_model", model=model_id)) from exc
        self._special = set(self.inner.all_special_ids)

    @property
    def vocab_size(self) -> int:
        return len(self.inner)

    def encode(self, text: str, parse_special: bool = False) -> list[int]:
        return list(self.inner(text, add_special_tokens=False)["input_ids"])

    def token_bytes(self, token_id: int) -> bytes | None:
        if token_id in self._special:
            return None
        token = self.inner.convert_ids_to_tokens(token_id)
        m = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", token)
        if m:
            return bytes([int(m.group(1), 16)])
        if any(ch in token for ch in "ĠĊ") or _looks_byte_level(token):
            from engine.clip_bpe import bytes_to_unicode

            dec = {v: k for k, v in bytes_to_unicode().items()}
            try:
                return bytes(dec[c] for c in token)
            except KeyError:
                pass
        return token.replace("▁", " ").encode("utf-8")

    def special_name(self, token_id: int) -> str:
        return self.inner.convert_ids_to_tokens(token_id)

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids)


def _looks_byte_level(token: str) -> bool:
    return all(0x21 <= ord(c) <= 0x17F for c in token) and any(0x100 <= ord(c) <= 0x17F for c in token)


class TiktokenTokenizer(Tokenizer):
    def __init__(self, name: str) -> None:
        import tiktoken

        self.key, self.label = f"tiktoken:{name}", f"tiktoken {name} (OpenAI)"
        try:
            self.inner = tiktoken.get_encoding(name)
        except Exception as exc:  # noqa: BLE001 - its files are downloaded on first use
            raise UserError("tok.err.tiktoken_offline", name=name) from exc

    @property
    def vocab_size(self) -> int:
        return self.inner.n_vocab

    def encode(self, text: str, parse_special: bool = False) -> list[int]:
        return self.inner.encode(text, allowed_special="all" if parse_special else set(), disallowed_special=())

    def token_bytes(self, token_id: int) -> bytes | None:
        return self.inner.decode_single_token_bytes(token_id)

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids)


# ------------------------------------------------------------------ registry
OFFLINE = {
    "mistral-v1": ("Mistral v1 · SentencePiece 32k (Mistral-7B-v0.1, Instruct v0.1/v0.2)", "tokenizer.model.v1"),
    "mistral-v3": ("Mistral v3 · SentencePiece 32,768 (Instruct v0.3)", "mistral_instruct_tokenizer_240323.model.v3"),
    "tekken": ("Mistral Tekken · ~131k (Nemo and later)", "tekken_240911.json"),
}
SHORT = {"mistral-v1": "Mistral v1", "mistral-v3": "Mistral v3", "tekken": "Tekken", "clip": "CLIP"}
DEFAULT_SET = ("mistral-v1", "mistral-v3", "tekken", "clip")
TIKTOKEN = ("cl100k_base", "o200k_base")
_lock = threading.Lock()
_cache: dict[str, Tokenizer] = {}


def choices() -> list[tuple[str, str]]:
    out = [(label, key) for key, (label, _) in OFFLINE.items()]
    out.append(("CLIP BPE · 49,408 (SDXL, FLUX text encoder)", "clip"))
    out += [(f"tiktoken {n} (OpenAI; needs internet once)", f"tiktoken:{n}") for n in TIKTOKEN]
    return out


def get(key: str) -> Tokenizer:
    """A tokenizer by key: an offline one, ``clip``, ``tiktoken:<name>`` or any Hub id."""
    key = key.strip()
    with _lock:
        if key in _cache:
            return _cache[key]
    if key in OFFLINE:
        label, filename = OFFLINE[key]
        tok: Tokenizer = MistralTokenizer(key, label, filename)
    elif key == "clip":
        tok = ClipTokenizer()
    elif key.startswith("tiktoken:"):
        tok = TiktokenTokenizer(key.split(":", 1)[1])
    elif "/" in key or re.fullmatch(r"[\w.-]+", key):
        tok = HubTokenizer(key)
    else:
        raise UserError("err.unknown_model", model=key)
    tok.short = SHORT.get(key) or key.split("/")[-1].removeprefix("tiktoken:")
    with _lock:
        _cache[key] = tok
    return tok


def check_text(text: str) -> None:
    if len(text) > MAX_CHARS:
        raise UserError("tok.err.too_long", n=len(text), limit=MAX_CHARS)


def encode_all(text: str, keys: list[str], parse_special: bool = False) -> list[Encoding]:
    check_text(text)
    return [get(k).encoding(text, parse_special) for k in keys]


# ------------------------------------------------------------------- alignment
def align(text: str, pieces: list[Piece], casefold: bool = False) -> None:
    """Give each piece the character span it covers in ``text`` (in place) and group
    byte-fallback pieces that form one character."""
    source = text.lower() if casefold else text
    data = source.encode("utf-8")
    if casefold and len(source) != len(text):  # lower() changed the length: spans are approximate
        data = text.encode("utf-8")
    lead = (np.frombuffer(data, dtype=np.uint8) & 0xC0) != 0x80
    char_at = np.concatenate([[0], np.cumsum(lead)]).astype(np.int64)  # chars before each byte offset
    pos = 0
    n = len(data)
    for p in pieces:
        if p.raw is None or not p.raw:
            continue
        raw = p.raw
        found = data.find(raw, pos, min(n, pos + len(raw) + 16))
        if found < 0 and raw[:1] == b" ":  # SentencePiece's dummy prefix / CLIP's end-of-word space
            raw = raw.lstrip(b" ")
            found = data.find(raw, pos, min(n, pos + len(raw) + 16)) if raw else pos
        if found < 0 and raw[-1:] == b" ":
            raw = raw.rstrip(b" ")
            found = data.find(raw, pos, min(n, pos + len(raw) + 16)) if raw else pos
        if found < 0:
            continue
        start, end = found, found + len(raw)
        # char_at[k] counts the characters that start before byte k: a span that starts inside a
        # character belongs to that character; one that ends inside it includes it.
        p.start = int(char_at[start]) - (0 if lead[start] else 1)
        p.end = int(char_at[end])
        pos = end
    _group_partials(pieces)


def _group_partials(pieces: list[Piece]) -> None:
    """Consecutive pieces holding parts of UTF-8 characters share a group until their bytes
    form whole characters again (e.g. an emoji spread over 3 byte tokens)."""
    group = 0
    acc = b""
    for p in pieces:
        if p.raw is None:
            acc = b""
            continue
        if acc or p.partial:
            p.group = group
            acc += p.raw
            try:
                acc.decode("utf-8")
            except UnicodeDecodeError:
                continue
            acc = b""
            group += 1


# ------------------------------------------------------------------ decode
def decode_ids(raw: str, keys: list[str]) -> list[tuple[str, str | None, str | None]]:
    """``"1, 22 333"`` → per tokenizer (label, text, error message key)."""
    try:
        ids = [int(x) for x in re.split(r"[\s,;\[\]]+", raw.strip()) if x]
    except ValueError:
        raise UserError("tok.err.bad_ids")
    if not ids:
        raise UserError("tok.err.bad_ids")
    out = []
    for key in keys:
        tok = get(key)
        bad = [i for i in ids if i < 0 or i >= tok.vocab_size]
        if bad:
            out.append((tok.label, None, f"{', '.join(map(str, bad[:10]))}|{tok.vocab_size}"))
        else:
            out.append((tok.label, tok.decode(ids), None))
    return out


# ------------------------------------------------------------------ presets
@lru_cache(maxsize=1)
def presets() -> list[dict]:
    return json.loads((PRESETS_DIR / "tokenizer_presets.json").read_text(encoding="utf-8"))["presets"]


@lru_cache(maxsize=1)
def language_sentences() -> list[dict]:
    return json.loads((PRESETS_DIR / "language_cost.json").read_text(encoding="utf-8"))["sentences"]


def language_cost(keys: list[str]) -> list[dict]:
    """Token counts of the same meaning in several languages, and the ratio to English."""
    rows = []
    english = {}
    sentences = language_sentences()
    for key in keys:
        tok = get(key)
        for s in sentences:
            n = len(tok.encode(s["text"]))
            if tok.window:  # CLIP counts its start/end tokens: drop them for a fair count
                n -= 2
            if s["lang"] == "en":
                english[key] = n
            rows.append({"language": s["name"], "lang": s["lang"], "tokenizer": tok.short, "key": key,
                         "tokens": n, "chars": len(s["text"])})
    for r in rows:
        r["ratio_to_english"] = round(r["tokens"] / english[r["key"]], 2) if english.get(r["key"]) else None
    return rows


def chat_preset_text() -> str:
    """A short conversation rendered through Mistral v0.1's chat template (special tokens kept)."""
    from transformers import AutoTokenizer

    from engine.chat_templates import MISTRAL_V1
    from engine.tiny import tiny_root, write_mistral_v1_tokenizer

    folder = tiny_root().parent / "mistral-v1-chat-tokenizer"
    if not (folder / "tokenizer_config.json").exists():
        write_mistral_v1_tokenizer(folder, MISTRAL_V1)
    tok = AutoTokenizer.from_pretrained(folder)
    messages = [
        {"role": "user", "content": "Bonjour ! Peux-tu me conseiller un livre pour apprendre Python ?"},
        {"role": "assistant", "content": "Avec plaisir : « Automate the Boring Stuff » est un bon début."},
        {"role": "user", "content": "Merci ! Et en français ?"},
    ]
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def t5_count(text: str) -> tuple[int, bool]:
    """Tokens for FLUX's T5 encoder: exact with a cached T5 tokenizer, else estimated with
    Mistral v1's SentencePiece (same family, similar granularity)."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained("google/t5-v1_1-xxl", local_files_only=True)
        return len(tok(text)["input_ids"]), True
    except Exception:  # noqa: BLE001 - not cached: estimate
        return len(get("mistral-v1").encode(text)) + 1, False
