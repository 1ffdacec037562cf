"""Tokenizer backends: one class per kind of vocabulary, each giving token ids and each token's bytes.

Mistral's SentencePiece v1, v3 and Tekken files bundled with ``mistral-common`` (encoded by
``mistral-common`` itself), CLIP's BPE (SDXL, FLUX), any Hugging Face tokenizer through
``AutoTokenizer``, and tiktoken's OpenAI encodings. :mod:`engine.tokenization.tokenizers` picks and caches them.
"""
from __future__ import annotations

import re
import warnings

from engine.errors import UserError, as_user_error
from engine.tokenization.pieces import Encoding, Piece, align, group_partials

SPECIAL_STRINGS = ("<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


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
    from engine.models.tiny import mistral_data_file

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
        from engine.models.clip_bpe import CLIP_MAX_TOKENS, bytes_to_unicode, clip_tokenizer

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
            from engine.models.clip_bpe import bytes_to_unicode

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
