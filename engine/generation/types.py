"""What callers hand the engine and what they read back: sampling settings, one token's
probabilities, stream updates, finished completions, and the live state of one request."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import torch

from engine.models import leases
from engine.generation.detok import IncrementalText, Prefix
from engine.models.llm import LLMHandle, PreparedPrompt, _anchor_id


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

    @property
    def group_key(self) -> tuple:
        """Rows with the same key are processed with one vectorised sampling call."""
        if self.is_greedy:
            return ("greedy", self.repetition_penalty)
        return (self.temperature, self.top_p, self.top_k, self.repetition_penalty)


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
    stop_reason: str | None = None  # "eos" | "length" | "stopped" | "error"
    tokens: Sequence[TokenInfo] = field(default_factory=list)  # a Prefix view of the request's list: no copy
    token_ids: Sequence[int] = field(default_factory=list)
    batch_size: int = 1  # rows decoded together at the last step (for the stats)
    error: BaseException | None = None
    queue_position: int | None = None  # requests ahead of this one in the engine's queue; None once running

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


class StreamState:
    """What a caller waits on while a generation runs (locally here, or on an inference server):
    a version bumped on every change, a stop event, the end reason and the timings."""

    def __init__(self, stop: threading.Event | None, notify: threading.Condition | None) -> None:
        self.stop = stop or threading.Event()
        self.notify = notify or threading.Condition()
        self.version = 0
        self.reason: str | None = None
        self.error: BaseException | None = None
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.reason is not None

    def cancel(self) -> None:
        self.stop.set()

    def _publish(self) -> None:
        with self.notify:
            self.version += 1
            self.notify.notify_all()

    def finish(self, reason: str, error: BaseException | None = None) -> None:
        if self.reason is None:
            self.error = error
            self.finished_at = time.perf_counter()
            self.reason = reason  # last: whoever sees ``done`` sees the error and the end time too


class Request(StreamState):
    """One sequence being generated; the engine updates it, the caller reads it.

    While it is queued or decoding it holds a lease on its model (see :mod:`engine.models.leases`),
    released when it finishes, whatever the reason. ``owner`` (a session) is who asked: requests
    are admitted round-robin between owners (:mod:`.turns`).

    An update costs the same at the 2,000th token as at the 50th: the text grows by one short
    decode per new token (:class:`~.detok.IncrementalText`, once more in full when the request
    ends), and the ids and token infos are handed out as views, never copied."""

    def __init__(self, handle: LLMHandle, input_ids: Sequence[int], params: SamplingParams, *,
                 seed: int, top_probs: int = 0, stop: threading.Event | None = None,
                 eos_ids: set[int] | None = None, notify: threading.Condition | None = None) -> None:
        super().__init__(stop, notify)
        self.handle = handle
        self.input_ids = list(input_ids)
        self.params = params
        self.top_probs = top_probs
        self.eos = set(eos_ids) if eos_ids is not None else handle.eos_ids
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self.generated: list[int] = []
        self.infos: list[TokenInfo] = []
        self.batch_size = 1
        self.display_probs: torch.Tensor | None = None  # this step's distribution, for TokenInfo
        self.seq = 0  # submission order (order within one owner; the newest row gives way on out-of-memory)
        self.owner: Hashable | None = None  # who asked (a session); None: nobody in particular
        self.turn = 0  # its place in the round-robin between owners (set when the engine takes it in)
        self.admission_faults = 0  # admission attempts that raised, in a row
        self.queue_position: int | None = None
        self._leased = False
        self._text = IncrementalText(handle.tokenizer)
        self._pieces: IncrementalText | None = None  # for token infos (special tokens and leading spaces kept)
        self._final_text: str | None = None

    @property
    def need_tokens(self) -> int:
        """KV-cache positions this row can use: its prompt and every token it may generate."""
        return len(self.input_ids) + self.params.max_new_tokens

    def hold_model(self) -> None:
        leases.acquire(self.handle, self)
        self._leased = True

    def finish(self, reason: str, error: BaseException | None = None) -> None:
        first = self.reason is None
        super().finish(reason, error)
        if first:
            self.queue_position = None
            if self._leased:
                self._leased = False
                leases.release(self.handle, self)

    def text(self, n: int | None = None) -> str:
        """The answer so far (its first ``n`` tokens; special tokens left out), exactly
        ``decode(generated)`` once the request is done."""
        if self.done and (n is None or n >= len(self.generated)):
            if self._final_text is None:
                self._final_text = self.handle.tokenizer.decode(self.generated, skip_special_tokens=True)
            return self._final_text
        return self._text.catch_up(self.generated, n)

    def update(self) -> StreamUpdate:
        end = self.finished_at or time.perf_counter()
        done = self.done  # read first: a request that is done has all its tokens
        n = len(self.generated)
        return StreamUpdate(
            text=self.text(n), n_tokens=n,
            ttft_s=(self.first_token_at - self.submitted) if self.first_token_at else None,
            elapsed_s=end - self.submitted, finished=done, stop_reason=self.reason if done else None,
            tokens=Prefix(self.infos), token_ids=Prefix(self.generated, n), batch_size=self.batch_size,
            error=self.error, queue_position=self.queue_position,
        )

    def piece_text(self) -> str:
        """The text the last token added, its leading space and special tokens kept (the token
        infos'). Called once per new token, in order: one short decode each."""
        if self._pieces is None:
            anchor = _anchor_id(self.handle.tokenizer)
            self._pieces = IncrementalText(self.handle.tokenizer, skip_special_tokens=False,
                                           context=[anchor] if anchor is not None else ())
        return self._pieces.push(self.generated[-1])
