"""The decode engine every LLM tab uses.

One background loop (:class:`DecodeEngine`) owns every running generation. Requests for the
same model are decoded *together* as one left-padded batch that requests join (their prompt
is prefilled, then their KV cache is merged into the running batch) and leave (their rows
are dropped) at step boundaries; requests for different models are stepped in turn by the
same loop. So:

* a lone student gets a batch of one (the fast single-user path);
* a class of students clicking together shares one batched forward per step;
* the two panes of Base vs Instruct advance in one loop, a step of each in turn, with no
  threads fighting over the GIL;
* self-consistency samples and benchmark problems are simply several rows.

Each row keeps its own sampling settings, seed (its own ``torch.Generator``), token
probabilities and stop event, so batching never changes what a request gets: greedy rows
give the same tokens as when run alone. On ZeroGPU, where the GPU exists only inside the
request's ``@spaces.GPU`` call, the engine runs *inline*: the request's thread drives the loop.
"""
from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import torch

from engine.llm import LLMHandle, PreparedPrompt, token_piece

log = logging.getLogger(__name__)
MAX_BATCH = 32


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
    tokens: list[TokenInfo] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    batch_size: int = 1  # rows decoded together at the last step (for the stats)
    error: BaseException | None = None

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
            self.reason = reason
            self.error = error
            self.finished_at = time.perf_counter()


class Request(StreamState):
    """One sequence being generated; the engine updates it, the caller reads it."""

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

    def text(self) -> str:
        return self.handle.tokenizer.decode(self.generated, skip_special_tokens=True)

    def update(self) -> StreamUpdate:
        end = self.finished_at or time.perf_counter()
        return StreamUpdate(
            text=self.text(), n_tokens=len(self.generated),
            ttft_s=(self.first_token_at - self.submitted) if self.first_token_at else None,
            elapsed_s=end - self.submitted, finished=self.done, stop_reason=self.reason,
            tokens=list(self.infos), token_ids=list(self.generated), batch_size=self.batch_size,
            error=self.error,
        )

    def piece_text(self) -> str:
        """The text the last token added (decoding the prefix keeps SentencePiece spaces right)."""
        tok = self.handle.tokenizer
        ids = self.generated
        if len(ids) == 1:
            return token_piece(tok, ids[0])
        full = tok.decode(ids, skip_special_tokens=False)
        before = tok.decode(ids[:-1], skip_special_tokens=False)
        return full[len(before):] if full.startswith(before) else token_piece(tok, ids[-1])


class ModelBatch:
    """The rows of one model being decoded together, with their merged KV cache."""

    def __init__(self, handle: LLMHandle) -> None:
        self.handle = handle
        self.model = handle.model
        self.device = next(handle.model.parameters()).device
        tok = handle.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.rows: list[Request] = []
        self.cache = None
        self.mask: torch.Tensor | None = None  # [B, L] 1 for real tokens in the cache
        self.history: torch.Tensor | None = None  # [B, L'] prompt + generated ids (repetition penalty)
        self.pending: torch.Tensor | None = None  # [B] the token chosen last, not yet in the cache
        self.static = None  # engine.fastpath.StaticDecoder while a lone request runs on the fast path

    def __len__(self) -> int:
        return len(self.rows)

    def _fast_decoder(self, newcomers: list[Request]):
        fast = self.handle.extra.get("fast_path") if hasattr(self.handle, "extra") else None
        if fast is None or self.rows or len(newcomers) != 1:
            return None
        r = newcomers[0]
        return fast.pick(len(r.input_ids), r.params.max_new_tokens)

    def _leave_fast_path(self) -> None:
        """A second request arrived: continue the lone row with a dynamic cache, batched."""
        static, self.static = self.static, None
        self.cache = static.to_dynamic()
        self.mask = torch.ones((1, static.length), dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def add(self, newcomers: list[Request]) -> None:
        """Prefill the newcomers' prompts and merge them into the running batch."""
        from transformers import DynamicCache

        if self.static is not None:
            self._leave_fast_path()
        static = self._fast_decoder(newcomers)
        if static is not None:
            r = newcomers[0]
            hist = torch.tensor([r.input_ids], device=self.device)
            first = self._choose(static.prefill(r.input_ids).float(), newcomers, hist)
            self.rows, self.static, self.cache, self.mask = list(newcomers), static, None, None
            self.history, self.pending = torch.cat([hist, first.view(-1, 1)], dim=1), first
            self._record(newcomers, first)
            return
        width = max(len(r.input_ids) for r in newcomers)
        n = len(newcomers)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        hist = torch.empty((n, width), dtype=torch.long)
        for i, r in enumerate(newcomers):
            row = torch.tensor(r.input_ids, dtype=torch.long)
            ids[i, width - len(row):] = row
            mask[i, width - len(row):] = 1
            hist[i] = row[0]  # left padding repeats a real token: no effect on the penalty
            hist[i, width - len(row):] = row
        ids, mask, hist = ids.to(self.device), mask.to(self.device), hist.to(self.device)
        cache = DynamicCache()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         cache=cache, use_cache=True, logits_to_keep=1)
        first = self._choose(out.logits[:, -1, :].float(), newcomers, hist)
        hist = torch.cat([hist, first.view(-1, 1)], dim=1)
        if not self.rows:
            self.rows, self.cache, self.mask, self.history, self.pending = list(newcomers), out.cache, mask, hist, first
        else:
            self._merge(newcomers, out.cache, mask, hist, first)
        self._record(newcomers, first)

    def _merge(self, rows: list[Request], cache, mask: torch.Tensor, hist: torch.Tensor, first: torch.Tensor) -> None:
        length = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(self.cache.layers, cache.layers):
            old.keys = torch.cat([_left_pad(old.keys, length, 2), _left_pad(new.keys, length, 2)], dim=0)
            old.values = torch.cat([_left_pad(old.values, length, 2), _left_pad(new.values, length, 2)], dim=0)
        self.mask = torch.cat([_left_pad(self.mask, length, 1), _left_pad(mask, length, 1)], dim=0)
        hl = max(self.history.shape[1], hist.shape[1])
        self.history = torch.cat([_left_pad(self.history, hl, 1, fill_first=True),
                                  _left_pad(hist, hl, 1, fill_first=True)], dim=0)
        self.pending = torch.cat([self.pending, first])
        self.rows += rows

    @torch.inference_mode()
    def step(self) -> None:
        """Feed every row's pending token, choose the next one."""
        for r in self.rows:
            if r.stop.is_set() and not r.done:
                r.finish("stopped")
                r._publish()
        self._drop_finished()
        if not self.rows:
            return
        if self.static is not None:
            logits = self.static.decode(self.pending).float()
            chosen = self._choose(logits, self.rows, self.history)
            self.history = torch.cat([self.history, chosen.view(-1, 1)], dim=1)
            self._record(self.rows, chosen)
            self.pending = chosen
            return
        inputs = self.pending.view(-1, 1)
        self.mask = torch.cat([self.mask, torch.ones_like(inputs)], dim=1)
        positions = self.mask.sum(-1, keepdim=True) - 1
        out = self.model(input_ids=inputs, attention_mask=self.mask, position_ids=positions,
                         cache=self.cache, use_cache=True)
        self.cache = out.cache
        chosen = self._choose(out.logits[:, -1, :].float(), self.rows, self.history)
        self.history = torch.cat([self.history, chosen.view(-1, 1)], dim=1)
        self._record(self.rows, chosen)
        self.pending = chosen

    def _record(self, rows: list[Request], chosen: torch.Tensor) -> None:
        now = time.perf_counter()
        size = len(self.rows)
        for r, token in zip(rows, chosen.tolist()):
            if r.done:
                continue
            r.generated.append(token)
            r.batch_size = size
            if r.first_token_at is None:
                r.first_token_at = now
            if r.top_probs:
                r.infos.append(self._info(r, token))
            if token in r.eos:
                r.finish("eos")
            elif len(r.generated) >= r.params.max_new_tokens:
                r.finish("length")
            r._publish()

    def _drop_finished(self) -> None:
        keep = [i for i, r in enumerate(self.rows) if not r.done]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.mask, self.history, self.pending = [], None, None, None, None
            self.static = None
            return
        index = torch.tensor(keep, device=self.device)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)
        self.mask = self.mask.index_select(0, index)
        self.history = self.history.index_select(0, index)
        self.pending = self.pending.index_select(0, index)
        self.rows = [self.rows[i] for i in keep]
        # trim columns that are padding for every remaining row
        real = self.mask.any(dim=0).nonzero()
        start = int(real[0]) if len(real) else 0
        if start > 0:
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, start:]
                layer.values = layer.values[:, :, start:]
            self.mask = self.mask[:, start:]

    # ---------------------------------------------------------------- sampling
    def _choose(self, logits: torch.Tensor, rows: list[Request], history: torch.Tensor) -> torch.Tensor:
        chosen = torch.empty(len(rows), dtype=torch.long, device=self.device)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            groups[r.params.group_key].append(i)
        for idx in groups.values():
            index = torch.tensor(idx, device=self.device)
            sub_rows = [rows[i] for i in idx]
            chosen[index] = self._choose_group(logits.index_select(0, index), sub_rows, history.index_select(0, index))
        return chosen

    def _choose_group(self, logits: torch.Tensor, rows: list[Request], history: torch.Tensor) -> torch.Tensor:
        p = rows[0].params
        if p.repetition_penalty and p.repetition_penalty != 1.0:
            seen = torch.gather(logits, 1, history)
            seen = torch.where(seen < 0, seen * p.repetition_penalty, seen / p.repetition_penalty)
            logits = logits.scatter(1, history, seen)
        temperature = 1.0 if p.is_greedy else max(p.temperature, 1e-5)
        scaled = logits / temperature
        want_probs = any(r.top_probs for r in rows)
        probs = torch.softmax(scaled, dim=-1) if want_probs else None
        for r, row_probs in zip(rows, probs if probs is not None else [None] * len(rows)):
            r.display_probs = row_probs  # read by _info right after
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
        return torch.stack(picks).to(self.device)

    def _info(self, r: Request, token: int) -> TokenInfo:
        probs = r.display_probs
        text = r.piece_text()
        if probs is None:
            return TokenInfo(id=token, text=text, prob=1.0)
        values, indices = torch.topk(probs, r.top_probs)
        top = [(token_piece(self.handle.tokenizer, int(j)), float(v)) for v, j in zip(values, indices)]
        return TokenInfo(id=token, text=text, prob=float(probs[token]), top=top)


def _left_pad(t: torch.Tensor, length: int, dim: int, fill_first: bool = False) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    if fill_first:
        pad = t.narrow(dim, 0, 1).expand(*shape)
    else:
        pad = torch.zeros(shape, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], dim=dim)


class DecodeEngine:
    """Owns the decode loop. ``background=True``: a daemon thread runs it for every user;
    ``background=False``: the caller's thread drives it (ZeroGPU, scripts)."""

    def __init__(self, background: bool = True, max_batch: int = MAX_BATCH) -> None:
        self.background = background
        self.max_batch = max_batch
        self._inbox: "queue.Queue[Request]" = queue.Queue()
        self._waiting: list[Request] = []
        self._batches: dict[int, ModelBatch] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._tokens = 0
        self._tok_window: list[tuple[float, int]] = []
        self.max_batch_seen = 0
        self.steps = 0
        self._closed = threading.Event()

    # ------------------------------------------------------------------ public
    def submit(self, handle: LLMHandle, prompt: PreparedPrompt | Sequence[int], params: SamplingParams, *,
               seed: int | None = None, top_probs: int = 0, stop: threading.Event | None = None,
               eos_ids: set[int] | None = None, notify: threading.Condition | None = None) -> Request:
        ids = prompt.input_ids if isinstance(prompt, PreparedPrompt) else list(prompt)
        if isinstance(prompt, PreparedPrompt):
            handle.check_length(prompt, params.max_new_tokens)
        req = Request(handle, ids, params, seed=params.seed if seed is None else seed, top_probs=top_probs,
                      stop=stop, eos_ids=eos_ids, notify=notify)
        self._inbox.put(req)
        if self.background:
            self._ensure_thread()
        return req

    def wait(self, requests: Iterable[Request], notify: threading.Condition | None = None,
             timeout: float = 0.5) -> Iterator[None]:
        """Yield whenever any of ``requests`` changed, until all are done."""
        requests = list(requests)
        cond = notify or (requests[0].notify if len(requests) == 1 else None)
        seen = -1
        yielded_done = False
        while True:
            if not self.background:
                self.run_once()
            version = sum(r.version for r in requests)
            done = all(r.done for r in requests)
            if version != seen or (done and not yielded_done):
                seen, yielded_done = version, done
                yield None
            if done:
                return
            if self.background and cond is not None:
                with cond:
                    cond.wait_for(lambda: sum(r.version for r in requests) != seen, timeout=timeout)
            elif self.background:
                time.sleep(0.002)

    def stats(self) -> dict:
        now = time.perf_counter()
        with self._lock:
            recent = [(t, n) for t, n in self._tok_window if now - t < 5.0]
            self._tok_window = recent
            running = {b.handle.spec.id: len(b) for b in self._batches.values() if len(b)}
        tps = sum(n for _, n in recent) / 5.0 if recent else 0.0
        return {"waiting": self._inbox.qsize() + len(self._waiting), "running": running,
                "batch_size": sum(running.values()), "tokens_per_s": round(tps, 1),
                "max_batch_seen": self.max_batch_seen, "total_tokens": self._tokens}

    # -------------------------------------------------------------------- loop
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run_forever, name="decode-engine", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background loop after its current step (scripts call it before exiting: a
        daemon thread killed inside a torch op at interpreter shutdown aborts the process)."""
        self._closed.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run_forever(self) -> None:
        while not self._closed.is_set():
            if not self._has_work():
                try:
                    self._waiting.append(self._inbox.get(timeout=0.25))
                except queue.Empty:
                    continue
            self.run_once()

    def _has_work(self) -> bool:
        return bool(self._waiting) or not self._inbox.empty() or any(len(b) for b in self._batches.values())

    def run_once(self) -> None:
        """Admit waiting requests, then one decode step of every model that has rows."""
        while True:
            try:
                self._waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        self._admit()
        for key, batch in list(self._batches.items()):
            if not len(batch):
                continue
            before = sum(len(r.generated) for r in batch.rows)
            try:
                batch.step()
            except Exception as exc:  # noqa: BLE001 - every row of that batch reports the error
                self._fail(batch.rows, exc)
                self._batches.pop(key, None)
                continue
            after = sum(len(r.generated) for r in batch.rows)
            self._count(after - before)
            batch._drop_finished()
            if not len(batch):
                self._batches.pop(key, None)  # do not keep a released model alive
        self.steps += 1

    def _admit(self) -> None:
        if not self._waiting:
            return
        waiting, self._waiting = self._waiting, []
        by_model: dict[int, list[Request]] = defaultdict(list)
        for r in waiting:
            if r.stop.is_set():
                r.finish("stopped")
                r._publish()
                continue
            by_model[id(r.handle)].append(r)
        for key, reqs in by_model.items():
            batch = self._batches.get(key)
            if batch is None or batch.handle is not reqs[0].handle:
                batch = self._batches[key] = ModelBatch(reqs[0].handle)
            room = max(0, self.max_batch - len(batch))
            admitted, later = reqs[:room], reqs[room:]
            self._waiting.extend(later)
            if not admitted:
                continue
            try:
                batch.add(admitted)
            except Exception as exc:  # noqa: BLE001
                self._fail(admitted, exc)
                continue
            self._count(len(admitted))
            self.max_batch_seen = max(self.max_batch_seen, len(batch))
            batch._drop_finished()

    def _fail(self, rows: list[Request], exc: BaseException) -> None:
        log.exception("decode step failed", exc_info=exc)
        for r in rows:
            r.finish("error", exc)
            r._publish()

    def _count(self, n: int) -> None:
        self._tokens += n
        with self._lock:
            self._tok_window.append((time.perf_counter(), n))


_engine: DecodeEngine | None = None
_inline = False


def engine() -> DecodeEngine:
    """The process-wide engine; in inline mode (ZeroGPU) a fresh one driven by the caller."""
    global _engine
    if _inline:
        return DecodeEngine(background=False)
    if _engine is None:
        _engine = DecodeEngine(background=True)
        atexit.register(_engine.close)
    return _engine


def set_inline(inline: bool) -> None:
    """ZeroGPU: the GPU exists only inside the request's ``@spaces.GPU`` call, so each request
    drives its own loop in its own thread (no cross-user batching there)."""
    global _inline
    _inline = inline


def submit_any(eng: DecodeEngine, handle, prompt: PreparedPrompt, params: SamplingParams, *, top_probs: int = 0,
               stop: threading.Event | None = None, notify: threading.Condition | None = None):
    """A local request to the engine, or a streamed request to the role's inference server."""
    if getattr(handle, "remote", False):
        from engine.remote import RemoteRequest

        return RemoteRequest(handle, prompt, params, top_probs=top_probs, stop=stop, notify=notify)
    return eng.submit(handle, prompt, params, top_probs=top_probs, stop=stop, notify=notify)


def _raise_if_error(req: Request) -> None:
    if req.error is not None:
        raise req.error


def stream(handle: LLMHandle, prompt: PreparedPrompt, params: SamplingParams, *, top_probs: int = 0,
           stop: threading.Event | None = None, eng: DecodeEngine | None = None) -> Iterator[StreamUpdate]:
    """Generate for one prompt, yielding the state whenever it changed."""
    eng = eng or engine()
    req = submit_any(eng, handle, prompt, params, top_probs=top_probs, stop=stop)
    try:
        for _ in eng.wait([req]):
            _raise_if_error(req)
            yield req.update()
    finally:
        req.cancel()  # a closed browser tab (GeneratorExit) frees the row


def stream_many(jobs: Sequence[tuple[LLMHandle, PreparedPrompt]], params: SamplingParams, *,
                top_probs: int = 0, stop: threading.Event | None = None,
                eng: DecodeEngine | None = None) -> Iterator[list[StreamUpdate]]:
    """Several generations at once (e.g. base and instruct), all advanced by the same loop.

    A failing generation does not stop the others: its update carries ``error``."""
    eng = eng or engine()
    cond = threading.Condition()
    reqs = [submit_any(eng, h, p, params, top_probs=top_probs, stop=stop, notify=cond) for h, p in jobs]
    try:
        for _ in eng.wait(reqs, notify=cond):
            yield [r.update() for r in reqs]
    finally:
        for r in reqs:
            r.cancel()


def generate_many(handle: LLMHandle, prompts: Sequence[PreparedPrompt], params: SamplingParams, *,
                  n_per_prompt: int = 1, stop: threading.Event | None = None,
                  on_step: Callable[[int, int], None] | None = None,
                  eng: DecodeEngine | None = None) -> list[Completion]:
    """All prompts × ``n_per_prompt`` samples, submitted at once so they decode as one batch.

    Sample ``j`` of a prompt uses seed ``params.seed + j`` (greedy samples are identical).
    ``on_step(done_rows, total_rows)`` is called whenever a row progressed.
    """
    if getattr(handle, "remote", False):
        return handle.generate_many(prompts, params, n_per_prompt, stop)
    eng = eng or engine()
    for p in prompts:
        handle.check_length(p, params.max_new_tokens)
    cond = threading.Condition()
    stop = stop or threading.Event()
    jobs = [(pi, sj) for pi in range(len(prompts)) for sj in range(n_per_prompt)]
    reqs = [eng.submit(handle, prompts[pi], params, seed=params.seed + sj, stop=stop, notify=cond) for pi, sj in jobs]
    try:
        for _ in eng.wait(reqs, notify=cond):
            if on_step:
                on_step(sum(r.done for r in reqs), len(reqs))
    finally:
        for r in reqs:
            if not r.done:
                r.cancel()
    for r in reqs:
        _raise_if_error(r)
    return [
        Completion(text=r.text(), n_tokens=len(r.generated), seconds=(r.finished_at or time.perf_counter()) - r.submitted,
                   stop_reason=r.reason or "stopped", prompt=prompts[pi], prompt_index=pi, sample_index=sj,
                   token_ids=list(r.generated))
        for r, (pi, sj) in zip(reqs, jobs)
    ]
