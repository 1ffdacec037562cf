"""Text → tokens for the tokenizer tab: real vocabularies, pieces with character spans.

Offline set: Mistral's v1 SentencePiece (Mistral-7B-v0.1, Instruct-v0.1/v0.2), v3 (Instruct-v0.3)
and Tekken (Nemo and later) — encoded by ``mistral-common`` itself — and CLIP's BPE (SDXL, FLUX).
With the Hub: any tokenizer by id (cached after the first load); tiktoken encodings when
their files can be fetched (or are in tiktoken's cache).

Every tokenizer gives token ids and each token's bytes. Character spans come from the
tokenizer's own offsets when it has them (Hugging Face fast tokenizers, CLIP included), else
:func:`align` places the bytes on the text. Byte-fallback tokens (a token holding part of a UTF-8
character) are grouped so that views can show them under the character they form.
"""
from __future__ import annotations

import json
import re
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.errors import UserError, as_user_error

MAX_CHARS = 100_000
SPECIAL_STRINGS = ("<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")
PRESETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "presets"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@dataclass(slots=True)
class Piece:
    id: int
    raw: bytes | None  # None for special tokens
    start: int = -1  # character span in the input (end exclusive); -1 when it has none
    end: int = -1
    special: str | None = None  # the special token's name, e.g. "<s>"
    group: int | None = None  # byte-fallback group index: tokens that together form one character

    @property
    def partial(self) -> bool:
        """True when the bytes are not whole UTF-8 characters (a byte-fallback token)."""
        if not self.raw:
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

    key: str = ""
    label: str = ""
    short: str = ""
    window: int | None = None  # a hard input window (CLIP: 77, start and end tokens included)
    framing: int = 0  # tokens the tokenizer always adds (CLIP's start and end)

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str, parse_special: bool = False) -> list[int]:
        raise NotImplementedError

    def encode_with_offsets(self, text: str, parse_special: bool = False) -> tuple[list[int], list | None]:
        """Ids and, when the tokenizer knows them, each token's (start, end) character offsets."""
        return self.encode(text, parse_special), None

    def token_bytes(self, token_id: int) -> bytes | None:
        """The token's bytes; None for special tokens."""
        raise NotImplementedError

    def special_name(self, token_id: int) -> str:
        return f"<{token_id}>"

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def cached_bytes(self, token_id: int) -> bytes | None:
        """:meth:`token_bytes`, remembered: long texts repeat the same ids over and over."""
        memo = self.__dict__.setdefault("_bytes_memo", {})
        if token_id not in memo:
            memo[token_id] = self.token_bytes(token_id)
        return memo[token_id]

    def encoding(self, text: str, parse_special: bool = False) -> Encoding:
        ids, offsets = self.encode_with_offsets(text, parse_special)
        pieces = [Piece(i, self.cached_bytes(i)) for i in ids]
        for p in pieces:
            if p.raw is None:
                p.special = self.special_name(p.id)
        if offsets is None:
            align(text, pieces)
        else:
            for p, (start, end) in zip(pieces, offsets):
                if p.raw is not None and end > start:
                    p.start, p.end = int(start), int(end)
        group_partials(pieces)
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
        self.tekken = type(self.inner).__name__ == "Tekkenizer"
        self.special_ids = set(getattr(self.inner, "special_ids", ())) | {self.inner.bos_id, self.inner.eos_id}
        self._specials = self._special_map()
        self._names = {i: name for name, i in self._specials.items()}
        names = sorted(self._specials, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(s) for s in names) + ")")

    def _special_map(self) -> dict[str, int]:
        """Control strings that are single tokens in this version (v1 has only <s> and </s>:
        its [INST] is ordinary text; v3 and Tekken made it a control token)."""
        found = {"<s>": self.inner.bos_id, "</s>": self.inner.eos_id}
        unk = getattr(self.inner, "unk_id", 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in SPECIAL_STRINGS:
                try:
                    i = int(self.inner.get_special_token(name))
                except Exception:  # noqa: BLE001 - not a special token of this version
                    continue
                if i != unk and i in self.special_ids:
                    found[name] = i
        return found

    @property
    def vocab_size(self) -> int:
        return int(self.inner.n_words)

    def encode(self, text: str, parse_special: bool = False) -> list[int]:
        if not parse_special:
            return list(self.inner.encode(text, bos=False, eos=False))
        ids: list[int] = []
        after_special = False
        for part in self._split.split(text):
            if part in self._specials:
                ids.append(self._specials[part])
                after_special = True
                continue
            if not part:
                continue
            if after_special and not self.tekken and part.startswith(" "):
                part = part[1:]  # SentencePiece puts its "▁" prefix back: do not count that space twice
            if part:
                ids.extend(self.inner.encode(part, bos=False, eos=False))
            after_special = False
        return ids

    def token_bytes(self, token_id: int) -> bytes | None:
        if token_id in self.special_ids:
            return None
        if self.tekken:
            return self.inner.id_to_byte_piece(token_id)
        piece = self.inner.id_to_piece(token_id)
        m = _BYTE_PIECE.fullmatch(piece)
        if m:
            return bytes([int(m.group(1), 16)])
        return piece.replace("▁", " ").encode("utf-8")

    def special_name(self, token_id: int) -> str:
        if token_id in self._names:
            return self._names[token_id]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return str(self.inner.id_to_piece(token_id))
            except Exception:  # noqa: BLE001
                return f"<{token_id}>"

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids)


# ------------------------------------------------------------ Hugging Face tokenizers
class _HFTokenizer(Tokenizer):
    """A ``transformers`` tokenizer: offsets come from the tokenizer itself when it is a fast one."""

    inner = None
    add_special = False

    def encode(self, text: str, parse_special: bool = False) -> list[int]:
        return list(self.inner(text, add_special_tokens=self.add_special, split_special_tokens=not parse_special,
                               truncation=False)["input_ids"])

    def encode_with_offsets(self, text: str, parse_special: bool = False) -> tuple[list[int], list | None]:
        try:
            out = self.inner(text, add_special_tokens=self.add_special, split_special_tokens=not parse_special,
                             truncation=False, return_offsets_mapping=True)
        except (NotImplementedError, ValueError, TypeError):  # a slow tokenizer: no offsets
            return self.encode(text, parse_special), None
        return list(out["input_ids"]), list(out["offset_mapping"])

    @property
    def vocab_size(self) -> int:
        return len(self.inner)

    def special_name(self, token_id: int) -> str:
        return str(self.inner.convert_ids_to_tokens(token_id))


CLIP_LABEL = "CLIP BPE · 49,408 (SDXL, FLUX text encoder)"


class ClipTokenizer(_HFTokenizer):
    """CLIP's BPE: lower-cases, marks word ends with ``</w>``, adds start and end tokens."""

    add_special = True
    framing = 2

    def __init__(self) -> None:
        from engine.clip_bpe import CLIP_MAX_TOKENS, bytes_to_unicode, clip_tokenizer

        self.key, self.label = "clip", CLIP_LABEL
        self.inner = clip_tokenizer(model_max_length=10**9)
        self.window = CLIP_MAX_TOKENS
        self.byte_decoder = {v: k for k, v in bytes_to_unicode().items()}
        self.bos, self.eos = self.inner.bos_token_id, self.inner.eos_token_id

    def token_bytes(self, token_id: int) -> bytes | None:
        if token_id in (self.bos, self.eos):
            return None
        token = self.inner.convert_ids_to_tokens(token_id)
        body = bytes(self.byte_decoder[c] for c in token.removesuffix("</w>"))
        return body + (b" " if token.endswith("</w>") else b"")  # </w> (end of word) shown as a space

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids, skip_special_tokens=True)


class HubTokenizer(_HFTokenizer):
    """Any tokenizer from the Hub (or a local folder), through ``AutoTokenizer``."""

    def __init__(self, model_id: str) -> None:
        from transformers import AutoTokenizer

        self.key = self.label = model_id
        try:
            self.inner = AutoTokenizer.from_pretrained(model_id)
        except Exception as exc:  # noqa: BLE001
            raise (as_user_error(exc, model_id) or UserError("err.unknown_model", model=model_id)) from exc
        self._special = set(self.inner.all_special_ids)
        decoder = repr(getattr(getattr(self.inner, "backend_tokenizer", None), "decoder", ""))
        self.byte_level = "ByteLevel" in decoder
        self.wordpiece = "WordPiece" in decoder
        if self.byte_level:
            from engine.clip_bpe import bytes_to_unicode

            self.byte_decoder = {v: k for k, v in bytes_to_unicode().items()}

    def token_bytes(self, token_id: int) -> bytes | None:
        if token_id in self._special:
            return None
        token = str(self.inner.convert_ids_to_tokens(token_id))
        m = _BYTE_PIECE.fullmatch(token)
        if m:
            return bytes([int(m.group(1), 16)])
        if self.byte_level and all(c in self.byte_decoder for c in token):
            return bytes(self.byte_decoder[c] for c in token)
        if self.wordpiece:
            return token[2:].encode("utf-8") if token.startswith("##") else b" " + token.encode("utf-8")
        return token.replace("▁", " ").encode("utf-8")

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids)


class TiktokenTokenizer(Tokenizer):
    """An OpenAI encoding; tiktoken downloads its vocabulary on first use (or reads its cache)."""

    def __init__(self, name: str) -> None:
        self.key, self.label = f"tiktoken:{name}", f"tiktoken {name} (OpenAI)"
        try:
            import tiktoken

            self.inner = tiktoken.get_encoding(name)
        except Exception as exc:  # noqa: BLE001 - offline, unknown name or tiktoken missing
            raise UserError("tok.err.tiktoken_offline", name=name) from exc
        self._special = {self.inner.encode_single_token(s): s for s in self.inner.special_tokens_set}

    @property
    def vocab_size(self) -> int:
        return self.inner.n_vocab

    def encode(self, text: str, parse_special: bool = False) -> list[int]:
        return self.inner.encode(text, allowed_special="all" if parse_special else set(), disallowed_special=())

    def token_bytes(self, token_id: int) -> bytes | None:
        return None if token_id in self._special else self.inner.decode_single_token_bytes(token_id)

    def special_name(self, token_id: int) -> str:
        return self._special.get(token_id, f"<{token_id}>")

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids)


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


# ------------------------------------------------------------------- alignment
def align(text: str, pieces: list[Piece]) -> None:
    """Give each piece the character span its bytes cover in ``text`` (in place).

    Pieces are matched in order at the current byte position; a leading space that is not in
    the text is SentencePiece's dummy prefix. A short search ahead recovers from any
    normalisation the tokenizer applied.
    """
    data = text.encode("utf-8")
    lead = (np.frombuffer(data, dtype=np.uint8) & 0xC0) != 0x80
    char_of = (np.cumsum(lead) - 1).tolist()  # index of the character each byte belongs to
    pos = 0
    for p in pieces:
        if not p.raw:
            continue
        hit = _locate(data, p.raw, pos)
        if hit is None:
            continue
        start, end = hit
        if end > start:
            p.start, p.end = char_of[start], char_of[end - 1] + 1
        pos = end


def _locate(data: bytes, raw: bytes, pos: int) -> tuple[int, int] | None:
    if data.startswith(raw, pos):
        return pos, pos + len(raw)
    core = raw.strip(b" ")
    if not core:  # spaces only ("▁"): the dummy prefix when the text has no space here
        k = pos
        while k < len(data) and k - pos < len(raw) and data[k] == 0x20:
            k += 1
        return (pos, k) if k > pos else None
    stripped = raw.lstrip(b" ")
    if data.startswith(stripped, pos):
        return pos, pos + len(stripped)
    found = data.find(core, pos, min(len(data), pos + len(raw) + 32))
    return (found, found + len(core)) if found >= 0 else None


def group_partials(pieces: list[Piece]) -> None:
    """Consecutive pieces holding parts of UTF-8 characters share a group until their bytes
    form whole characters again (e.g. an emoji spread over 3 byte tokens)."""
    group = 0
    acc = b""
    for p in pieces:
        if p.raw is None:
            if acc:
                group += 1
            acc = b""
            continue
        if acc or p.partial:
            p.group = group
            acc += p.raw
            try:
                acc.decode("utf-8")
            except UnicodeDecodeError:
                if len(acc) < 16:  # a UTF-8 character has at most 4 bytes: give up on garbage
                    continue
            acc = b""
            group += 1


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

    from engine.chat_templates import MISTRAL_V1
    from engine.tiny import write_mistral_v1_tokenizer

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
