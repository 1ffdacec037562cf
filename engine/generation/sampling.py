"""Choosing each row's next token from its logits, with that row's own settings and seed.

Rows that share sampling settings are processed with one vectorised call; each sampled row
draws from its own ``torch.Generator``, so a row gets the same tokens whatever else is in the
batch. A row whose logits are not finite (NaN or infinity: an overflow in half precision, a
broken checkpoint) is reported to the caller instead of being sampled.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from engine.generation.types import Request, TokenInfo
from engine.models.llm import token_piece


def nonfinite_rows(logits: torch.Tensor) -> list[int]:
    """Indices of rows that cannot be sampled: any NaN or +inf, or nothing above -inf.

    One reduction: a row's maximum is NaN if it holds a NaN, +inf if it holds +inf, -inf if
    everything is -inf."""
    bad = ~torch.isfinite(logits.amax(dim=-1))
    return bad.nonzero().flatten().tolist() if bool(bad.any()) else []


def choose(logits: torch.Tensor, rows: Sequence[Request], history: torch.Tensor | None) -> torch.Tensor:
    """The next token of every row (``logits``: [rows, vocab] float; ``history``: [rows, n] ids
    seen so far, padded with a token of the row, used by the repetition penalty)."""
    chosen = torch.empty(len(rows), dtype=torch.long, device=logits.device)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r.params.group_key].append(i)
    for idx in groups.values():
        sub_rows = [rows[i] for i in idx]
        if len(groups) == 1:  # the usual case: one setting for the whole batch, no copy
            return _choose_group(logits, sub_rows, history if has_penalty(sub_rows[0]) else None)
        index = torch.tensor(idx, device=logits.device)
        sub_history = history.index_select(0, index) if history is not None and has_penalty(sub_rows[0]) else None
        chosen[index] = _choose_group(logits.index_select(0, index), sub_rows, sub_history)
    return chosen


def has_penalty(r: Request) -> bool:
    return r.params.repetition_penalty not in (0, 1.0)


def _choose_group(logits: torch.Tensor, rows: list[Request], history: torch.Tensor | None) -> torch.Tensor:
    p = rows[0].params
    if history is not None:
        seen = torch.gather(logits, 1, history)
        seen = torch.where(seen < 0, seen * p.repetition_penalty, seen / p.repetition_penalty)
        logits = logits.scatter(1, history, seen)
    temperature = 1.0 if p.is_greedy else max(p.temperature, 1e-5)
    scaled = logits / temperature
    want_probs = any(r.top_probs for r in rows)
    probs = torch.softmax(scaled, dim=-1) if want_probs else None
    for i, r in enumerate(rows):
        r.display_probs = probs[i] if probs is not None else None  # read by token_info right after
    if p.is_greedy:
        return scaled.argmax(dim=-1)
    filtered = scaled
    if p.top_k and p.top_k > 0:
        k = min(p.top_k, filtered.shape[-1])
        kth = torch.topk(filtered, k, dim=-1).values[:, -1:]
        filtered = filtered.masked_fill(filtered < kth, float("-inf"))
    if p.top_p and p.top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(filtered, descending=True, dim=-1)
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        remove = sorted_probs.cumsum(dim=-1) - sorted_probs > p.top_p
        remove[:, 0] = False
        filtered = filtered.masked_fill(torch.zeros_like(remove).scatter(1, sorted_idx, remove), float("-inf"))
    sample_probs = torch.softmax(filtered, dim=-1).cpu()
    picks = [torch.multinomial(sample_probs[i], 1, generator=r.generator)[0] for i, r in enumerate(rows)]
    return torch.stack(picks).to(logits.device)


def token_info(r: Request, token: int) -> TokenInfo:
    """The token just added to ``r``, its probability and the ``r.top_probs`` most likely ones."""
    probs = r.display_probs
    text = r.piece_text()
    if probs is None:
        return TokenInfo(id=token, text=text, prob=1.0)
    values, indices = torch.topk(probs, r.top_probs)
    top = [(token_piece(r.handle.tokenizer, int(j)), float(v)) for v, j in zip(values, indices)]
    return TokenInfo(id=token, text=text, prob=float(probs[token]), top=top)
