"""Tokens as the tokenizer tab shows them: each token's bytes and its character span in the text.

Character spans come from the tokenizer's own offsets when it has them (Hugging Face fast
tokenizers, CLIP included), else :func:`align` places the bytes on the text. Byte-fallback tokens
(a token holding part of a UTF-8 character) are grouped by :func:`group_partials` so that views
can show them under the character they form.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
        if p.raw is None:  # a special token read from its text ("</s>"): step over that text
            name = (p.special or "").encode("utf-8")
            if name and data.startswith(name, pos):
                pos += len(name)
            continue
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
