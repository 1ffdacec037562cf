"""A request alone on its model: decoded on the model's fast path (a static cache, its step
compiled into a CUDA graph on a GPU), leased from the handle for as long as it runs there.

The lease (``FastPath.acquire``) makes the static cache this row's only: another engine decoding
the same model meanwhile (the quantization tab's private one) gets no decoder and batches as
usual. When a second request joins, the batch moves this row into its cache (``layers``) and
hands the decoder back.
"""
from __future__ import annotations

import torch

from engine.generation.sampling import choose, nonfinite_rows
from engine.generation.types import Request


class NotFinite(Exception):
    """The model's logits for this row were NaN or infinite."""


class LoneRow:
    def __init__(self, fast, decoder, request: Request, device: torch.device) -> None:
        self.fast, self.decoder, self.request, self.device = fast, decoder, request, device
        n = len(request.input_ids)
        self.hist = torch.full((1, request.need_tokens + 1), request.input_ids[0], dtype=torch.long, device=device)
        self.hist[0, :n] = torch.tensor(request.input_ids, device=device)
        self.pending = 0

    @classmethod
    def start(cls, fast, request: Request, device: torch.device) -> tuple["LoneRow", int] | None:
        """Lease a decoder with room for the request and prefill it; (row, first token), or None
        when no decoder is free. Raises :class:`NotFinite` (decoder handed back) on NaN logits."""
        decoder = fast.acquire(request.need_tokens)
        if decoder is None:
            return None
        row = cls(fast, decoder, request, device)
        try:
            logits = decoder.prefill(request.input_ids).float()
            return row, row._choose(logits)
        except BaseException:
            row.release()
            raise

    def step(self) -> int:
        """Feed the pending token; the next one. Raises on failure (the caller fails the row)."""
        logits = self.decoder.decode(torch.tensor([self.pending], device=self.device)).float()
        return self._choose(logits)

    def _choose(self, logits: torch.Tensor) -> int:
        if nonfinite_rows(logits):
            raise NotFinite()
        used = len(self.request.input_ids) + len(self.request.generated)
        token = int(choose(logits, [self.request], self.hist[:, :used])[0])
        self.hist[0, used] = token
        self.pending = token
        return token

    @property
    def length(self) -> int:
        """Positions in the static cache (the pending token is not in it yet)."""
        return self.decoder.length

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values so far, ``[kv_heads, length, head_dim]`` per layer."""
        n = self.decoder.length
        return [(layer.keys[0, :, :n], layer.values[0, :, :n]) for layer in self.decoder.cache.layers]

    def history(self) -> torch.Tensor:
        """Prompt and generated ids so far."""
        return self.hist[0, : len(self.request.input_ids) + len(self.request.generated)]

    def release(self) -> None:
        if self.decoder is not None:
            self.fast.release(self.decoder)
            self.decoder = None
