"""Streaming text in time linear in the answer: one short decode per new token, text appended.

Decoding the whole answer at every update costs O(n) per update, O(n²) per answer (2,000 tokens:
two million token decodes, fought over by every pane's thread and the decode loop for the GIL).
:class:`IncrementalText` keeps the text and two offsets into the ids, as inference servers do:
each new token decodes only a short window — the ids of the previous piece (for context: a
SentencePiece "▁" space, a BPE byte sequence) and the new ones — and the new piece is what that
window adds to the previous piece. A token that ends inside a UTF-8 character adds nothing until
the character is complete. ``Request`` (:mod:`.types`) decodes the whole answer once more when it
ends, so the final text is exactly ``tokenizer.decode(ids)`` whatever the tokenizer.

:class:`Prefix` gives each update the ids and token infos so far without copying them: the first
``n`` items of a list that only grows.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from typing import Any, Iterator

REPLACEMENT = "\ufffd"  # what a decoder gives for an incomplete UTF-8 sequence


class IncrementalText:
    """The text of the ids fed so far (``skip_special_tokens`` as in ``decode``).

    ``context``: ids decoded before the first one but not part of the text, e.g. an anchor token
    so that the first piece keeps its leading space (a lone "▁word" decodes to "word")."""

    def __init__(self, tokenizer, skip_special_tokens: bool = True, context: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = list(context)
        self.text = ""
        self._prefix = 0  # ids[_prefix:_read] are the previous piece's ids: the context of the next
        self._read = len(self.ids)  # ids before this one are in ``text``
        self._fed = 0  # ids taken from the caller's list
        self._lock = threading.Lock()

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip) if ids else ""

    def push(self, token: int) -> str:
        """Add one id; the text it completes ("" while a character or a word is incomplete)."""
        with self._lock:
            return self._push(token)

    def _push(self, token: int) -> str:
        self.ids.append(int(token))
        before = self._decode(self.ids[self._prefix:self._read])
        after = self._decode(self.ids[self._prefix:])
        if len(after) <= len(before) or after.endswith(REPLACEMENT):
            return ""  # nothing printable yet: wait for the next id
        piece = after[len(before):]
        self.text += piece
        self._prefix, self._read = self._read, len(self.ids)
        if self._prefix > 256:  # only the last piece's ids are read again: keep the list short
            del self.ids[: self._prefix]
            self._read -= self._prefix
            self._prefix = 0
        return piece

    def catch_up(self, ids: Sequence[int], n: int | None = None) -> str:
        """Feed ``ids[fed:n]`` (the caller's list only grows); the text so far."""
        with self._lock:
            n = len(ids) if n is None else n
            for i in range(self._fed, n):
                self._push(ids[i])
            self._fed = max(self._fed, n)
            return self.text


class Prefix(Sequence):
    """The first ``n`` items of ``items``, a list that only grows: a snapshot made without copying.

    Compares equal to any sequence with the same items; pickles as a plain list (what crosses a
    ZeroGPU worker's boundary is data, not a view)."""

    __slots__ = ("_items", "_n")

    def __init__(self, items: list, n: int | None = None) -> None:
        self._items = items
        self._n = len(items) if n is None else min(n, len(items))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any):
        if isinstance(index, slice):
            return self._items[: self._n][index]  # a copy, only when asked for
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError("Prefix index out of range")
        return self._items[index]

    def __iter__(self) -> Iterator:
        return itertools.islice(self._items, self._n)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(other) == self._n and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which are unhashable

    def __reduce__(self):
        return list, (list(self),)

    def __repr__(self) -> str:
        return f"Prefix({list(self)!r})"
