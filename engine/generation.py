"""The decode loop every LLM tab uses.

One :class:`Decoder` advances a *batch* of sequences of one model a token at a time
(left-padded prefill, then one forward per step with the KV cache). On top of it:

* :func:`stream` — one request, streamed token by token;
* :func:`stream_interleaved` — several decoders (e.g. base and instruct) advanced in ONE
  loop, a step of each in turn, so neither pane waits for the other and no threads fight
  over the GIL;
* :func:`generate_many` — many prompts × samples as one batch (self-consistency, benchmarks).

Sampling is per row: each row has its own ``torch.Generator`` (seed + sample index), so the
same seed gives the same text whatever else is in the batch.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch

from engine.llm import LLMHandle, PreparedPrompt

MAX_BATCH = 16


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 200
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.0
    greedy: bool = False
    seed: int = 0

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature <= 0


@dataclass
class TokenInfo:
    id: int
    text: str
    prob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class StreamUpdate:
    text: str = ""
    n_tokens: int = 0
    ttft_s: float | None = None
    elapsed_s: float = 0.0
    finished: bool = False
    stop_reason: str | None = None  # "eos" | "length" | "stopped"
    tokens: list[TokenInfo] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        gen_time = self.elapsed_s - (self.ttft_s or 0.0)
        if self.n_tokens <= 1 or gen_time <= 0:
            return 0.0
        return (self.n_tokens - 1) / gen_time


@dataclass
class Completion:
    text: str
    n_tokens: int
    seconds: float
    stop_reason: str
    prompt: PreparedPrompt
    prompt_index: int = 0
    sample_index: int = 0
    token_ids: list[int] = field(default_factory=list)


class Decoder:
    """Incremental batched decoding of ``rows`` (prompt ids) for one model."""

    def __init__(self, handle: LLMHandle, rows: Sequence[Sequence[int]], params: SamplingParams,
                 *, seeds: Sequence[int] | None = None, top_probs: int = 0,
                 stop: threading.Event | None = None) -> None:
        from transformers import DynamicCache

        self.handle = handle
        self.params = params
        self.top_probs = top_probs
        self.stop = stop
        self.model = handle.model
        self.device = next(handle.model.parameters()).device
        self.eos = handle.eos_ids
        n = len(rows)
        pad = handle.tokenizer.pad_token_id if handle.tokenizer.pad_token_id is not None else 0
        width = max(len(r) for r in rows)
        ids = torch.full((n, width), pad, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row):] = 1
        self.prompt_lens = [len(r) for r in rows]
        self.all_ids = ids.to(self.device)  # prompt + generated (repetition penalty looks at both)
        self.mask = mask.to(self.device)
        self.cache = DynamicCache()
        self.generated: list[list[int]] = [[] for _ in range(n)]
        self.token_infos: list[list[TokenInfo]] = [[] for _ in range(n)]
        self.done = [False] * n
        self.reasons: list[str | None] = [None] * n
        seeds = list(seeds) if seeds is not None else [params.seed] * n
        self.generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished_at: list[float | None] = [None] * n
        self.steps = 0
        self._next_input: torch.Tensor | None = None

    @property
    def finished(self) -> bool:
        return all(self.done)

    @torch.inference_mode()
    def step(self) -> None:
        """Run one forward pass and append one token to every unfinished row."""
        if self.finished:
            return
        if self.stop is not None and self.stop.is_set():
            self._finish_all("stopped")
            return
        if self._next_input is None:  # prefill
            positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
            out = self.model(input_ids=self.all_ids, attention_mask=self.mask, position_ids=positions,
                             past_key_values=self.cache, use_cache=True)
        else:
            positions = (self.mask.sum(-1, keepdim=True) - 1)
            out = self.model(input_ids=self._next_input, attention_mask=self.mask, position_ids=positions,
                             past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        logits = out.logits[:, -1, :].float()
        chosen, probs = self._choose(logits)
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        tok = self.handle.tokenizer
        for i, token in enumerate(chosen.tolist()):
            if self.done[i]:
                continue
            self.generated[i].append(token)
            if self.top_probs:
                self.token_infos[i].append(self._token_info(i, token, probs[i]))
            if token in self.eos:
                self._finish(i, "eos", now)
            elif len(self.generated[i]) >= self.params.max_new_tokens:
                self._finish(i, "length", now)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        nxt = torch.tensor([[t if not d else pad] for t, d in zip(chosen.tolist(), self.done)], device=self.device)
        self._next_input = nxt
        self.all_ids = torch.cat([self.all_ids, nxt], dim=-1)
        self.mask = torch.cat([self.mask, torch.ones_like(nxt)], dim=-1)
        self.steps += 1

    def _choose(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        p = self.params
        if p.repetition_penalty and p.repetition_penalty != 1.0:
            seen = torch.gather(logits, 1, self.all_ids)
            seen = torch.where(seen < 0, seen * p.repetition_penalty, seen / p.repetition_penalty)
            logits = logits.scatter(1, self.all_ids, seen)
        temperature = 1.0 if p.is_greedy else max(p.temperature, 1e-5)
        scaled = logits / temperature
        probs = torch.softmax(scaled, dim=-1) if (self.top_probs or not p.is_greedy) else None
        if p.is_greedy:
            return scaled.argmax(dim=-1), probs
        filtered = scaled.clone()
        if p.top_k and p.top_k > 0:
            k = min(p.top_k, filtered.shape[-1])
            kth = torch.topk(filtered, k, dim=-1).values[:, -1:]
            filtered = filtered.masked_fill(filtered < kth, float("-inf"))
        if p.top_p and p.top_p < 1.0:
            sorted_logits, sorted_idx = torch.sort(filtered, descending=True, dim=-1)
            cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
            remove = cum - torch.softmax(sorted_logits, dim=-1) > p.top_p
            remove[:, 0] = False
            filtered = filtered.masked_fill(torch.zeros_like(remove).scatter(1, sorted_idx, remove), float("-inf"))
        sample_probs = torch.softmax(filtered, dim=-1).cpu()
        chosen = torch.stack([torch.multinomial(sample_probs[i], 1, generator=self.generators[i])[0]
                              for i in range(sample_probs.shape[0])])
        return chosen.to(self.device), probs

    def _token_info(self, row: int, token: int, probs: torch.Tensor | None) -> TokenInfo:
        tok = self.handle.tokenizer
        text = self._piece_text(row)
        if probs is None:
            return TokenInfo(id=token, text=text, prob=1.0)
        values, indices = torch.topk(probs, self.top_probs)
        top = [(tok.decode([int(j)], skip_special_tokens=False), float(v)) for v, j in zip(values, indices)]
        return TokenInfo(id=token, text=text, prob=float(probs[token]), top=top)

    def _piece_text(self, row: int) -> str:
        """The text the last token added (decoding the prefix keeps SentencePiece spaces right)."""
        tok = self.handle.tokenizer
        ids = self.generated[row]
        full = tok.decode(ids, skip_special_tokens=False)
        before = tok.decode(ids[:-1], skip_special_tokens=False) if len(ids) > 1 else ""
        return full[len(before):] if full.startswith(before) else tok.decode(ids[-1:], skip_special_tokens=False)

    def _finish(self, row: int, reason: str, when: float) -> None:
        self.done[row] = True
        self.reasons[row] = reason
        self.finished_at[row] = when

    def _finish_all(self, reason: str) -> None:
        now = time.perf_counter()
        for i in range(len(self.done)):
            if not self.done[i]:
                self._finish(i, reason, now)

    def text(self, row: int) -> str:
        return self.handle.tokenizer.decode(self.generated[row], skip_special_tokens=True)

    def update(self, row: int = 0) -> StreamUpdate:
        now = self.finished_at[row] or time.perf_counter()
        return StreamUpdate(
            text=self.text(row),
            n_tokens=len(self.generated[row]),
            ttft_s=(self.first_token_at - self.started) if self.first_token_at else None,
            elapsed_s=now - self.started,
            finished=self.done[row],
            stop_reason=self.reasons[row],
            tokens=list(self.token_infos[row]),
        )


def stream(handle: LLMHandle, prompt: PreparedPrompt, params: SamplingParams, *, top_probs: int = 0,
           stop: threading.Event | None = None) -> Iterator[StreamUpdate]:
    """Generate for one prompt, yielding the state after every token."""
    handle.check_length(prompt, params.max_new_tokens)
    dec = Decoder(handle, [prompt.input_ids], params, top_probs=top_probs, stop=stop)
    while not dec.finished:
        dec.step()
        yield dec.update(0)


def stream_interleaved(decoders: Sequence[Decoder]) -> Iterator[list[StreamUpdate]]:
    """Advance several decoders in one loop (a step of each in turn); yield all their states."""
    while not all(d.finished for d in decoders):
        for d in decoders:
            if not d.finished:
                d.step()
        yield [d.update(0) for d in decoders]


def generate_many(handle: LLMHandle, prompts: Sequence[PreparedPrompt], params: SamplingParams, *,
                  n_per_prompt: int = 1, stop: threading.Event | None = None,
                  on_step: Callable[[int, int], None] | None = None,
                  max_batch: int = MAX_BATCH) -> list[Completion]:
    """All prompts × ``n_per_prompt`` samples, decoded as batches of up to ``max_batch`` rows.

    Sample ``j`` of a prompt uses seed ``params.seed + j`` (greedy samples are identical).
    ``on_step(done_rows, total_rows)`` is called after every decode step.
    """
    for p in prompts:
        handle.check_length(p, params.max_new_tokens)
    jobs = [(pi, sj) for pi in range(len(prompts)) for sj in range(n_per_prompt)]
    results: list[Completion] = []
    done_rows = 0
    for start in range(0, len(jobs), max_batch):
        chunk = jobs[start:start + max_batch]
        dec = Decoder(handle, [prompts[pi].input_ids for pi, _ in chunk], params,
                      seeds=[params.seed + sj for _, sj in chunk], stop=stop)
        while not dec.finished:
            dec.step()
            if on_step:
                on_step(done_rows + sum(dec.done), len(jobs))
        for row, (pi, sj) in enumerate(chunk):
            end = dec.finished_at[row] or time.perf_counter()
            results.append(Completion(
                text=dec.text(row), n_tokens=len(dec.generated[row]), seconds=end - dec.started,
                stop_reason=dec.reasons[row] or "stopped", prompt=prompts[pi], prompt_index=pi,
                sample_index=sj, token_ids=list(dec.generated[row]),
            ))
        done_rows += len(chunk)
        if stop is not None and stop.is_set():
            break
    return results
