"""The rows of one model decoded together, and what happens when one of them goes wrong.

Newcomers are prefilled together (left-padded, a plain ``DynamicCache``), then each one's keys
and values are copied into a free row of the batch's :class:`~engine.generation.kv.SlotCache`.
A lone request may instead run on the model's fast path (:mod:`engine.generation.lone`); it
moves into a cache row when a second request joins.

Faults stay with the rows they touch: a prefill that raises fails its newcomers (retried one by
one first, so a single bad prompt does not take its neighbours down); a decode step that raises
is retried on each half of the rows, down to single rows, and only the row that still fails is
failed (on out-of-memory, the newest row gives way instead); a row whose logits are NaN or
infinite fails alone. Rows already running are never touched by a newcomer's failure: nothing
is written to a row before its prefill succeeded, and a step writes each row's new column at a
position that a retry simply writes again.
"""
from __future__ import annotations

import logging
import time

import torch

from engine.errors import UserError
from engine.generation.admission import KVBudget
from engine.generation.faults import is_oom, return_cached_memory, row_error
from engine.generation.kv import SlotCache, kv_spec, sliding_window
from engine.generation.lone import LoneRow, NotFinite
from engine.generation.sampling import choose, has_penalty, nonfinite_rows, token_info
from engine.generation.types import Request
from engine.models.llm import LLMHandle

log = logging.getLogger(__name__)
PREFILL_TOKENS = 4096  # padded prompt tokens prefilled in one forward (bounds the activations)
LENGTH_STEP = 64  # row lengths are allocated in multiples of this (fewer regrowths)


class NoRoom(Exception):
    """The memory budget refused the cache this batch needs: the newcomers wait."""


class ModelBatch:
    def __init__(self, handle: LLMHandle, budget: KVBudget, owner: str, max_rows: int) -> None:
        self.handle = handle
        self.model = handle.model
        self.name = handle.spec.id
        self.device = next(handle.model.parameters()).device
        tok = handle.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.kv = kv_spec(handle.model)
        self.window = sliding_window(handle.model.config)
        self.float_mask = getattr(handle.model.config, "_attn_implementation", "sdpa") == "eager"
        self.budget, self.owner, self.max_rows = budget, owner, max_rows
        self.context = handle.context_length
        self.slots: list[Request | None] = []
        self.cache: SlotCache | None = None
        self.lens: list[int] = []  # positions already in the cache, per slot
        self.hist_lens: list[int] = []  # ids so far (prompt + generated), per slot
        self.pending: list[int] = []  # the token chosen last, fed at the next step
        self.lone: LoneRow | None = None  # a request alone on the model's fast path

    # ------------------------------------------------------------------ state
    def _live(self, slot: int) -> bool:
        r = self.slots[slot]
        return r is not None and not r.done

    @property
    def rows(self) -> list[Request]:
        live = [r for r in self.slots if r is not None and not r.done]
        if self.lone is not None and not self.lone.request.done:
            live.append(self.lone.request)
        return live

    @property
    def static(self):
        """The fast path's decoder this batch holds, if its lone request runs there."""
        return self.lone.decoder if self.lone is not None else None

    def __len__(self) -> int:
        return len(self.rows)

    def longest_need(self) -> int:
        return max((r.need_tokens for r in self.rows), default=0)

    def _fast_path(self):
        extra = getattr(self.handle, "extra", None) or {}
        return extra.get("fast_path")

    def bytes_for(self, rows: int, length: int, lone_newcomer: bool = False) -> int:
        """The cache bytes this batch would hold with ``rows`` rows of up to ``length`` positions."""
        if rows == 0:
            return 0
        fast = self._fast_path()
        if rows == 1 and lone_newcomer and self.cache is None and fast is not None and fast.available(length):
            return 0  # the fast path's static cache, already counted with the model
        have_rows, have_len = (self.cache.rows, self.cache.length) if self.cache is not None else (0, 0)
        if rows <= have_rows and length <= have_len:
            return self.cache.nbytes
        return max(rows, have_rows) * max(length, have_len) * self.kv.bytes_per_token

    # --------------------------------------------------------------- joining
    @torch.inference_mode()
    def add(self, newcomers: list[Request], spare_bytes: int) -> None:
        """Prefill the newcomers and give each a row. Raises :class:`NoRoom` (nothing changed)
        if the cache cannot grow; any other failure is recorded on the newcomers it touched."""
        if not self.rows and self.cache is None and len(newcomers) == 1 and self._start_static(newcomers[0]):
            return
        rows = len(self.rows) + len(newcomers)
        length = max(self.longest_need(), max(r.need_tokens for r in newcomers))
        self._ensure_capacity(rows, length, spare_bytes)
        if self.lone is not None:
            self._leave_fast_path()
        group: list[Request] = []
        width = 0
        for r in newcomers:
            w = max(width, len(r.input_ids))
            if group and w * (len(group) + 1) > PREFILL_TOKENS:
                self._prefill_group(group)
                group, w = [], len(r.input_ids)
            group.append(r)
            width = w
        if group:
            self._prefill_group(group)

    def _ensure_capacity(self, rows: int, length: int, spare_bytes: int) -> None:
        cur = self.cache
        have_rows, have_len = (cur.rows, cur.length) if cur is not None else (0, 0)
        if rows <= have_rows and length <= have_len:
            return
        bpt = self.kv.bytes_per_token
        want_rows = min(self.max_rows, max(rows, 2 * have_rows))
        want_len = min(self.context, -(-length // LENGTH_STEP) * LENGTH_STEP)
        current = cur.nbytes if cur is not None else 0
        choices = [(want_rows, want_len), (rows, want_len), (want_rows, length), (rows, length)]
        new_rows, new_len = next(((r, n) for r, n in choices
                                  if max(r, have_rows) * max(n, have_len) * bpt - current <= spare_bytes),
                                 (rows, length))
        new_rows, new_len = max(new_rows, have_rows), max(new_len, have_len)
        if not self.budget.reserve(self.owner, new_rows * new_len * bpt):
            raise NoRoom()
        try:
            new = cur.grown(new_rows, new_len) if cur is not None else SlotCache(self.kv, new_rows, new_len)
        except BaseException:
            self.budget.reserve(self.owner, current)
            raise
        extra = new_rows - have_rows
        self.cache = new
        self.slots += [None] * extra
        self.lens += [0] * extra
        self.hist_lens += [0] * extra
        self.pending += [self.pad_id] * extra

    def _free_slot(self) -> int:
        slot = next(s for s, r in enumerate(self.slots) if r is None or r.done)
        if self.slots[slot] is not None:  # finished, not dropped yet: its columns are to clear
            self.cache.freed(slot, self.lens[slot] + 1)
        return slot

    def _prefill_group(self, group: list[Request]) -> None:
        """Prefill ``group`` together; on an exception, each half again, down to single rows."""
        try:
            chosen, cache, width = self._prefill_forward(group)
        except Exception as exc:  # noqa: BLE001 - isolate the request that fails
            if len(group) > 1:
                if is_oom(exc):
                    return_cached_memory()
                half = len(group) // 2
                self._prefill_group(group[:half])
                self._prefill_group(group[half:])
            else:
                self._fail(group[0], exc)
            return
        placed, tokens = [], []
        for i, r in enumerate(group):
            if r.done:  # its logits were not finite
                continue
            try:
                self._place(r, [(layer.keys[i], layer.values[i]) for layer in cache.layers], width, int(chosen[i]))
            except Exception as exc:  # noqa: BLE001
                self._fail(r, exc)
                continue
            placed.append(r)
            tokens.append(int(chosen[i]))
        self._record(placed, tokens)

    def _prefill_forward(self, group: list[Request]):
        """Run the prompts; choose each first token. Changes nothing in the batch."""
        from transformers import DynamicCache

        width = max(len(r.input_ids) for r in group)
        n = len(group)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        hist = torch.empty((n, width), dtype=torch.long)
        for i, r in enumerate(group):
            row = torch.tensor(r.input_ids, dtype=torch.long)
            ids[i, width - len(row):] = row
            mask[i, width - len(row):] = 1
            hist[i] = row[0]  # left padding repeats a real token: no effect on the penalty
            hist[i, width - len(row):] = row
        ids, mask, hist = ids.to(self.device), mask.to(self.device), hist.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         cache=DynamicCache(), use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1, :].float()
        chosen = torch.full((n,), self.pad_id, dtype=torch.long, device=self.device)
        bad = set(nonfinite_rows(logits))
        for i in bad:
            self._fail(group[i], UserError("engine.err_nan", model=self.name))
        good = [i for i in range(n) if i not in bad]
        if good:
            index = torch.tensor(good, device=self.device)
            chosen[index] = choose(logits.index_select(0, index), [group[i] for i in good], hist.index_select(0, index))
        return chosen.tolist(), out.cache, width

    def _place(self, r: Request, layers: list[tuple[torch.Tensor, torch.Tensor]], width: int, token: int) -> None:
        """Copy one prefilled request into a free row; the row is live only once complete."""
        slot = self._free_slot()
        p = len(r.input_ids)
        ids = torch.tensor(r.input_ids + [token], device=self.device)
        self.cache.write_row(slot, [(k[:, width - p:], v[:, width - p:]) for k, v in layers], ids)
        self.lens[slot], self.hist_lens[slot], self.pending[slot] = p, p + 1, token
        self.slots[slot] = r

    # ------------------------------------------------------------- fast path
    def _start_static(self, r: Request) -> bool:
        fast = self._fast_path()
        try:
            started = LoneRow.start(fast, r, self.device) if fast is not None else None
        except NotFinite:
            self._fail(r, UserError("engine.err_nan", model=self.name))
            return True
        if started is None:
            return False
        self.lone, token = started
        self._record([r], [token])
        return True

    def _leave_fast_path(self) -> None:
        """A second request arrived: the lone row moves into the batch cache (one row copied)."""
        lone, r = self.lone, self.lone.request
        try:
            if not r.done:
                slot = self._free_slot()
                history = lone.history()
                self.cache.write_row(slot, lone.layers(), history)
                self.lens[slot], self.hist_lens[slot], self.pending[slot] = lone.length, len(history), lone.pending
                self.slots[slot] = r
        except Exception as exc:  # noqa: BLE001 - the moving row fails, the newcomers go on
            self._fail(r, exc)
        finally:
            self._release_static()

    def _release_static(self) -> None:
        if self.lone is not None:
            self.lone.release()
        self.lone = None

    def _step_static(self) -> None:
        r = self.lone.request
        try:
            token = self.lone.step()
        except NotFinite:
            self._fail(r, UserError("engine.err_nan", model=self.name))
            return
        except Exception as exc:  # noqa: BLE001
            self._fail(r, exc)
            return
        self._record([r], [token])

    # ------------------------------------------------------------------ steps
    @torch.inference_mode()
    def step(self) -> None:
        """Feed every row its pending token and choose the next one."""
        for r in self.rows:
            if r.stop.is_set():
                r.finish("stopped")
                r._publish()
        if self.lone is not None:
            if not self.lone.request.done:
                self._step_static()
            return
        live = [s for s in range(len(self.slots)) if self._live(s)]
        if not live:
            return
        failures: list[tuple[Request, BaseException]] = []
        self._step_slots(live, failures)
        for r, exc in failures:
            if is_oom(exc):
                newest = max(self.rows, key=lambda row: row.seq, default=r)
                self._fail(newest, exc)
            else:
                self._fail(r, exc)

    def _step_slots(self, live: list[int], failures: list) -> None:
        try:
            logits = self._forward(live[0], live[-1] + 1)
        except Exception as exc:  # noqa: BLE001 - retry on smaller parts, isolate the row that fails
            if len(live) == 1:
                failures.append((self.slots[live[0]], exc))
                return
            if is_oom(exc):
                return_cached_memory()
            half = len(live) // 2
            self._step_slots(live[:half], failures)
            self._step_slots(live[half:], failures)
            return
        self._advance(live, logits)

    def _forward(self, lo: int, hi: int) -> torch.Tensor:
        """One decode forward over slots ``lo … hi-1`` (holes run a dummy token); [hi-lo, vocab]."""
        live = [self._live(s) for s in range(lo, hi)]
        positions = torch.tensor([self.lens[s] if ok else 0 for s, ok in zip(range(lo, hi), live)], device=self.device)
        tokens = torch.tensor([self.pending[s] if ok else self.pad_id for s, ok in zip(range(lo, hi), live)],
                              device=self.device)
        width = int(positions.max()) + 1
        cols = torch.arange(width, device=self.device)
        allowed = cols[None, :] <= positions[:, None]
        if self.window:
            allowed &= cols[None, :] > positions[:, None] - self.window
        mask = allowed[:, None, None, :]
        if self.float_mask:
            mask = torch.zeros(mask.shape, dtype=self.kv.dtype, device=self.device).masked_fill(
                ~mask, torch.finfo(self.kv.dtype).min)
        out = self.model(input_ids=tokens.view(-1, 1), attention_mask=mask, position_ids=positions.view(-1, 1),
                         cache=self.cache.step_view(lo, hi, positions, width), use_cache=True)
        return out.logits[:, -1, :].float()

    def _advance(self, live: list[int], logits: torch.Tensor) -> None:
        lo = live[0]
        if len(live) != logits.shape[0]:  # holes ran a dummy token: keep the live rows' logits
            logits = logits.index_select(0, torch.tensor([s - lo for s in live], device=logits.device))
        bad = set(nonfinite_rows(logits))
        for i in bad:
            self._fail(self.slots[live[i]], UserError("engine.err_nan", model=self.name))
        keep = [i for i in range(len(live)) if i not in bad]
        for s in live:
            self.lens[s] += 1  # the pending token's keys and values are in the cache now
        if not keep:
            return
        slots = [live[i] for i in keep]
        index = torch.tensor(slots, device=self.device)
        width = max(self.hist_lens[s] for s in slots)
        rows = [self.slots[s] for s in slots]
        ids = self.cache.ids
        if bad:
            logits = logits.index_select(0, torch.tensor(keep, device=logits.device))
        history = ids.index_select(0, index)[:, :width] if any(has_penalty(r) for r in rows) else None
        chosen = choose(logits, rows, history)
        ids[index, torch.tensor([self.hist_lens[s] for s in slots], device=self.device)] = chosen
        tokens = chosen.tolist()
        for s, token in zip(slots, tokens):
            self.hist_lens[s] += 1
            self.pending[s] = token
        self._record(rows, tokens)

    def _record(self, rows: list[Request], tokens: list[int]) -> None:
        now = time.perf_counter()
        size = len(self)
        for r, token in zip(rows, tokens):
            if r.done:
                continue
            r.generated.append(token)
            r.batch_size = size
            if r.first_token_at is None:
                r.first_token_at = now
            if r.top_probs:
                r.infos.append(token_info(r, token))
            if token in r.eos:
                r.finish("eos")
            elif len(r.generated) >= r.params.max_new_tokens:
                r.finish("length")
            r._publish()

    def _fail(self, r: Request, exc: BaseException) -> None:
        if r.done:
            return
        log.warning("request failed on %s: %s", self.name, exc, exc_info=not isinstance(exc, UserError))
        r.finish("error", row_error(exc, self.name))
        r._publish()

    # ---------------------------------------------------------------- leaving
    def drop_finished(self) -> None:
        """Free the rows of finished requests (nothing is copied); the cache goes with the last one."""
        for s, r in enumerate(self.slots):
            if r is not None and r.done:
                self.slots[s] = None
                self.cache.freed(s, self.lens[s] + 1)  # + the column a failed step may have written
                self.lens[s], self.hist_lens[s], self.pending[s] = 0, 0, self.pad_id
        if self.lone is not None and self.lone.request.done:
            self._release_static()
        if not self.rows:
            self.release()

    def release(self) -> None:
        """Give the cache back (the batch is empty, or being discarded)."""
        self._release_static()
        self.slots, self.lens, self.hist_lens, self.pending = [], [], [], []
        self.cache = None
        self.budget.reserve(self.owner, 0)
