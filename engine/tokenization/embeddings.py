"""From ids to vectors: rows of a model's input embedding matrix, read from its checkpoint without
loading the model.

Files are found the way ``from_pretrained`` finds them (``transformers.utils.cached_file``: a local
folder, else the Hugging Face cache, else the Hub): ``model.safetensors.index.json`` names the shard
that holds the embedding tensor (or the single ``model.safetensors``); ``safetensors.safe_open``
then reads one row — a few kilobytes of a multi-gigabyte file. The nearest tokens by cosine need
the whole matrix: it is read once per model and kept, within a byte budget (least recently used
dropped first).
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from engine.errors import UserError, as_user_error

EMBEDDING_NAMES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight",
                   "embed_in.weight")
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
MAX_WORD_CHARS = 100


def source(model_id: str) -> str:
    """What ``from_pretrained`` is given for ``model_id`` (a tiny id's local folder, else the id)."""
    if model_id.startswith("tiny/"):
        from engine.models.tiny import tiny_path

        return str(tiny_path(model_id))
    return model_id


def _file(model_id: str, filename: str, required: bool = True) -> str | None:
    from transformers.utils import cached_file

    try:
        return cached_file(source(model_id), filename, _raise_exceptions_for_missing_entries=required)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - Hub, network, gated: the user's message
        raise (as_user_error(exc, model_id) or UserError("err.unknown_model", model=model_id)) from exc


@dataclass(frozen=True)
class Location:
    """Where a model's input embedding matrix is: its file, its tensor's name, shape and dtype."""

    model: str
    file: str
    tensor: str
    rows: int
    dim: int
    dtype: str


@lru_cache(maxsize=16)
def locate(model_id: str) -> Location:
    """The embedding tensor of ``model_id``: through the index when the checkpoint is sharded."""
    from safetensors import safe_open

    model_id = (model_id or "").strip()
    if not model_id:
        raise UserError("quant.err_no_model")
    index = _file(model_id, INDEX, required=False)
    if index:
        weight_map = json.loads(open(index, encoding="utf-8").read())["weight_map"]
        name = _embedding_name(weight_map, model_id)
        path = _file(model_id, weight_map[name])
    else:
        path = _file(model_id, SINGLE)
        with safe_open(path, framework="pt") as fh:
            name = _embedding_name(list(fh.keys()), model_id)
    with safe_open(path, framework="pt") as fh:
        sl = fh.get_slice(name)
        shape, dtype = sl.get_shape(), str(sl.get_dtype())
    if len(shape) != 2:
        raise UserError("emb.err_no_embedding", model=model_id)
    return Location(model_id, path, name, int(shape[0]), int(shape[1]), dtype)


def _embedding_name(names, model_id: str) -> str:
    found = [n for n in names if n.endswith(EMBEDDING_NAMES) and "position" not in n]
    if not found:
        raise UserError("emb.err_no_embedding", model=model_id)
    return min(found, key=len)


def row(model_id: str, token_id: int):
    """One row of the embedding matrix (a float32 tensor), read alone from the file."""
    import torch
    from safetensors import safe_open

    loc = locate(model_id)
    check_id(loc, token_id)
    cached = _matrices.get(model_id)
    if cached is not None:
        return cached[token_id].float().clone()
    with safe_open(loc.file, framework="pt") as fh:
        return fh.get_slice(loc.tensor)[token_id:token_id + 1].to(torch.float32)[0]


def check_id(loc: Location, token_id: int) -> None:
    if not 0 <= int(token_id) < loc.rows:
        raise UserError("emb.err_id_range", id=int(token_id), model=loc.model, last=loc.rows - 1)


# ------------------------------------------------------------------------- whole matrices, bounded
class MatrixCache:
    """Embedding matrices by model, within ``budget_bytes`` (least recently used dropped first)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._items: OrderedDict[str, tuple] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, model_id: str):
        with self._lock:
            item = self._items.get(model_id)
            if item is not None:
                self._items.move_to_end(model_id)
                return item[0]
        return None

    def norms(self, model_id: str):
        with self._lock:
            item = self._items.get(model_id)
            return None if item is None else item[1]

    def load(self, model_id: str):
        """(matrix, row norms) of ``model_id``, read once (one read at a time per model)."""
        import torch
        from safetensors import safe_open

        with self._lock:
            if model_id in self._items:
                self._items.move_to_end(model_id)
                return self._items[model_id]
            key_lock = self._loading.setdefault(model_id, threading.Lock())
        with key_lock:
            with self._lock:
                if model_id in self._items:
                    return self._items[model_id]
            loc = locate(model_id)
            with safe_open(loc.file, framework="pt") as fh:
                matrix = fh.get_tensor(loc.tensor)
            norms = torch.linalg.vector_norm(matrix.float(), dim=1)
            size = matrix.numel() * matrix.element_size() + norms.numel() * 4
            with self._lock:
                self._items[model_id] = (matrix, norms, size)
                while len(self._items) > 1 and sum(i[2] for i in self._items.values()) > self.budget:
                    self._items.popitem(last=False)
                self._loading.pop(model_id, None)
            return matrix, norms, size

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def bytes(self) -> int:
        with self._lock:
            return sum(i[2] for i in self._items.values())


def _budget() -> int:
    from engine.limits import current

    return current().embedding_cache_mb * 1_000_000


_matrices = MatrixCache(_budget())


def nearest(model_id: str, vector, k: int = 10, chunk: int = 8192) -> list[tuple[int, float]]:
    """The ``k`` rows most similar to ``vector`` by cosine, over the whole vocabulary."""
    import torch

    matrix, norms, _ = _matrices.load(model_id)
    v = vector.float()
    v = v / max(float(torch.linalg.vector_norm(v)), 1e-12)
    scores = torch.empty(matrix.shape[0])
    for start in range(0, matrix.shape[0], chunk):  # 16-bit matrices stay 16-bit: a chunk at a time in fp32
        part = matrix[start:start + chunk].float()
        scores[start:start + chunk] = part @ v / norms[start:start + chunk].clamp_min(1e-12)
    top = torch.topk(scores, min(k, matrix.shape[0]))
    return [(int(i), float(s)) for s, i in zip(top.values, top.indices)]


def cosine(a, b) -> float:
    import torch

    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=0))


# ------------------------------------------------------------------------- words → tokens → vectors
@lru_cache(maxsize=8)
def tokenizer(model_id: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source(model_id))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise (as_user_error(exc, model_id) or UserError("err.unknown_model", model=model_id)) from exc


def token_text(model_id: str, token_id: int) -> str:
    """A token as students read it: SentencePiece's ``▁`` and byte-level BPE's ``Ġ`` as a space."""
    tok = tokenizer(model_id)
    piece = tok.convert_ids_to_tokens(int(token_id))
    if piece is None:
        return f"<{token_id}>"
    return str(piece).replace("▁", " ").replace("Ġ", " ").replace("Ċ", "\n")


@dataclass(frozen=True)
class Looked:
    """A word (or an id) and the vector that stands for it."""

    query: str
    ids: list[int]
    pieces: list[str]
    vector: object  # torch.Tensor (float32)

    @property
    def averaged(self) -> bool:
        return len(self.ids) > 1


def look_up(model_id: str, query: str) -> Looked:
    """A token id (digits, optionally ``#``) → its row; a word → its tokens' rows, averaged when it
    takes several tokens (the word is read as it appears after a space, mid-sentence)."""
    import torch

    text = (query or "").strip()
    if not text:
        raise UserError("emb.err_empty")
    if len(text) > MAX_WORD_CHARS:
        raise UserError("emb.err_long", n=len(text), limit=MAX_WORD_CHARS)
    loc = locate(model_id)
    digits = text.removeprefix("#")
    if digits.lstrip("-").isdigit():
        token_id = int(digits)
        check_id(loc, token_id)
        return Looked(text, [token_id], [token_text(model_id, token_id)], row(model_id, token_id))
    ids = tokenizer(model_id).encode(" " + text, add_special_tokens=False)  # as after a space, mid-sentence
    ids = [i for i in ids if token_text(model_id, i).strip()] or ids  # a lone leading "▁" carries no meaning
    if not ids:
        raise UserError("emb.err_empty")
    for i in ids:
        check_id(loc, i)
    vectors = torch.stack([row(model_id, i) for i in ids])
    return Looked(text, ids, [token_text(model_id, i) for i in ids], vectors.mean(dim=0))

