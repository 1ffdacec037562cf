"""A source cut into passages: its paragraphs, each long one cut between lines, then sentences,
then words, and the pieces packed back together up to ``max_chars``.

A Markdown heading alone in its block is not a passage of its own (it would match the question
and say nothing): it opens the passage that follows it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_CHARS = 600  # a passage: about a paragraph (≈ 150 tokens), so that a few of them fit any prompt
_BLOCKS = re.compile(r"\n[ \t]*\n")
# each level: how to cut a piece that is too long, and how to join the pieces back
_LEVELS = ((re.compile(r"\n+"), "\n"), (re.compile(r"(?<=[.!?…])\s+"), " "), (re.compile(r"\s+"), " "))


@dataclass(frozen=True)
class Chunk:
    index: int  # its number in the source, from 1
    text: str


def title_of(text: str) -> str:
    """The source's title: its first line when that line is a Markdown heading."""
    first = next((line.strip() for line in (text or "").splitlines() if line.strip()), "")
    return first.lstrip("#").strip() if first.startswith("#") else ""


def _is_heading(block: str) -> bool:
    return all(line.lstrip().startswith("#") for line in block.splitlines() if line.strip())


def _pack(pieces: list[str], max_chars: int, sep: str) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + len(sep) + len(piece) <= max_chars:
            out[-1] += sep + piece
        else:
            out.append(piece)
    return out


def _split(text: str, max_chars: int, level: int = 0) -> list[str]:
    if len(text) <= max_chars:
        return [text]
    for depth in range(level, len(_LEVELS)):
        pattern, sep = _LEVELS[depth]
        parts = [p.strip() for p in pattern.split(text) if p.strip()]
        if len(parts) > 1:
            pieces = [q for p in parts for q in _split(p, max_chars, depth + 1)]
            return _pack(pieces, max_chars, sep)
    return [text[i:i + max_chars] for i in range(0, len(text), max_chars)]  # one endless word


def chunk(text: str, max_chars: int = MAX_CHARS) -> list[Chunk]:
    """The passages of ``text``, in order, each at most ``max_chars`` characters."""
    passages: list[str] = []
    heading = ""
    for block in _BLOCKS.split((text or "").replace("\r\n", "\n").replace("\r", "\n")):
        block = block.strip()
        if not block:
            continue
        if _is_heading(block):
            heading = "\n".join(line.lstrip("#").strip() for line in block.splitlines() if line.strip())
            continue
        if heading:
            block, heading = f"{heading}\n{block}", ""
        passages += _split(block, max_chars)
    if heading:  # a heading at the very end
        passages += _split(heading, max_chars)
    return [Chunk(i, p) for i, p in enumerate(passages, 1)]
