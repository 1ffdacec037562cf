"""The KV cache of one model's batch: preallocated, one row (slot) per request, written in place.

Per layer, keys and values live in ``[rows, kv_heads, length, head_dim]`` tensors. Row ``s``
holds its request's tokens at columns ``0 … n-1`` (column = position), so

* a request **joins** by having its prompt's keys and values copied into a free row (the cost
  of its own prompt, nothing else moves);
* a request **leaves** by freeing its row (nothing is copied);
* each decode step writes one column per row (``update`` below), in place.

The cache only grows (into a new allocation, old rows copied once) when a request needs more
rows or a longer row than allocated; growth is geometric so that happens a few times per batch,
not at every join. Transformers' continuous batching (paged cache) was not used: in 5.24 it has
one sampling seed for the whole manager, no per-token top-k probabilities and no mix of greedy
and sampled rows, which every tab here relies on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.models import arch


@dataclass(frozen=True)
class KVSpec:
    shape: arch.Attention
    dtype: torch.dtype
    device: torch.device

    @property
    def layers(self) -> int:
        return self.shape.layers

    @property
    def kv_heads(self) -> int:
        return self.shape.kv_heads

    @property
    def head_dim(self) -> int:
        return self.shape.head_dim

    @property
    def bytes_per_token(self) -> int:
        return self.shape.kv_bytes_per_token(self.dtype.itemsize)


def kv_spec(model) -> KVSpec:
    embed = model.get_input_embeddings().weight  # hidden states, hence keys and values, have its dtype
    return KVSpec(arch.attention(model.config), dtype=embed.dtype, device=embed.device)


def sliding_window(config) -> int | None:
    """The attention window every layer uses, or None (full attention). The batch cache masks one
    window for all its layers: a model mixing kinds of layers
    (:attr:`engine.models.arch.Attention.mixed`) is refused."""
    shape = arch.attention(config)
    if shape.mixed:
        raise NotImplementedError("models mixing sliding-window and full-attention layers are not supported "
                                  "by the batch cache")
    return shape.window or None


class SlotCache:
    """Keys and values of ``rows`` requests, up to ``length`` positions each."""

    def __init__(self, spec: KVSpec, rows: int, length: int) -> None:
        self.spec = spec
        self.rows = rows
        self.length = length
        shape = (rows, spec.kv_heads, length, spec.head_dim)
        # zeros: a masked column still multiplies a zero weight, and 0 × NaN would be NaN
        self.keys = [torch.zeros(shape, dtype=spec.dtype, device=spec.device) for _ in range(spec.layers)]
        self.values = [torch.zeros(shape, dtype=spec.dtype, device=spec.device) for _ in range(spec.layers)]
        # each row's prompt and generated ids (the repetition penalty's history), padded with its first id
        self.ids = torch.zeros((rows, length), dtype=torch.long, device=spec.device)
        self.written = [0] * rows  # per row, how far columns may hold a previous request's values

    @property
    def nbytes(self) -> int:
        return self.rows * self.length * self.spec.bytes_per_token

    def grown(self, rows: int, length: int) -> "SlotCache":
        """A larger cache holding the same rows (one copy of what is there, at growth only)."""
        new = SlotCache(self.spec, max(rows, self.rows), max(length, self.length))
        for old, dst in zip(self.keys + self.values, new.keys + new.values):
            dst[: self.rows, :, : self.length].copy_(old)
        new.ids[: self.rows, : self.length].copy_(self.ids)
        new.written[: self.rows] = self.written
        return new

    def write_row(self, slot: int, layers: list[tuple[torch.Tensor, torch.Tensor]], ids: torch.Tensor) -> None:
        """Put one request in row ``slot``: its keys and values (``[kv_heads, n, head_dim]`` per
        layer) and its ids so far. What a previous request left beyond ``n`` is cleared: a masked
        column still meets a zero attention weight, and 0 × NaN would be NaN."""
        n = layers[0][0].shape[1]
        end = self.written[slot]
        self.written[slot] = max(end, n)  # if this fails midway, the next request clears it all
        for i, (k, v) in enumerate(layers):
            self.keys[i][slot, :, :n].copy_(k)
            self.values[i][slot, :, :n].copy_(v)
            if end > n:
                self.keys[i][slot, :, n:end].zero_()
                self.values[i][slot, :, n:end].zero_()
        self.written[slot] = n
        self.ids[slot].fill_(int(ids[0]))
        self.ids[slot, : len(ids)] = ids

    def freed(self, slot: int, positions: int) -> None:
        """Row ``slot`` is free; its request wrote up to ``positions`` columns (cleared on reuse)."""
        self.written[slot] = min(self.length, max(self.written[slot], positions))

    def step_view(self, lo: int, hi: int, positions: torch.Tensor, width: int) -> "DecodeStep":
        return DecodeStep(self, lo, hi, positions, width)


class DecodeStep:
    """What the model's attention layers see as ``cache`` for one decode step of rows
    ``lo … hi-1``: each row's new key and value are written at that row's own position, and the
    first ``width`` columns are returned (the attention mask hides each row's unused ones)."""

    is_compileable = False

    def __init__(self, cache: SlotCache, lo: int, hi: int, positions: torch.Tensor, width: int) -> None:
        self.cache = cache
        self.lo, self.hi, self.width = lo, hi, width
        self.positions = positions
        self.rows = torch.arange(hi - lo, device=positions.device)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        keys = self.cache.keys[layer_idx][self.lo:self.hi]
        values = self.cache.values[layer_idx][self.lo:self.hi]
        keys[self.rows, :, self.positions] = key_states[:, :, -1].to(keys.dtype)
        values[self.rows, :, self.positions] = value_states[:, :, -1].to(values.dtype)
        return keys[:, :, : self.width], values[:, :, : self.width]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width - 1
