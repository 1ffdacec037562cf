"""Admission by memory: how many KV-cache bytes the engine may still allocate, and who gets them.

A request costs the KV cache of its prompt plus every token it may generate
(``Request.need_tokens`` × ``KVSpec.bytes_per_token``); a batch's cache is a rectangle
(rows × longest row), so admission prices the rectangle it would really allocate.

Where the free bytes come from, the smallest of:

* a memory ledger (the app's :class:`~engine.serving.manager.ModelManager`): its budget minus the
  models loaded, the loads in progress and the caches already reserved, plus what it could
  evict (loaded models nobody uses). Batches *reserve* their cache there, so a model load sees
  the KV caches too;
* on CUDA, ``torch.cuda.mem_get_info`` (plus what PyTorch keeps cached) minus a margin for
  activations;
* a fixed budget given to the engine (tests, benchmarks).

Without a ledger on a CPU, half of the available RAM.

Whether a request could *ever* fit is judged against the most its engine's caches could get
(:meth:`KVBudget.most`): the ledger's whole budget less the models that stay (pinned ones, and
the request's own model), not what happens to be free while an image is being made.
"""
from __future__ import annotations

import threading
from typing import Any, Protocol

import torch

from engine.runtime import forksafe

CUDA_MARGIN_BYTES = 512 * 2**20
CUDA_MARGIN_FRACTION = 0.05


class MemoryLedger(Protocol):
    def free_bytes(self) -> int:
        """Bytes a reservation could get now (evicting unused models if needed)."""

    def set_reserved(self, owner: str, nbytes: int) -> bool:
        """Reserve ``nbytes`` for ``owner`` (replacing its previous reservation; 0 releases it);
        False, and nothing changes, if they do not fit."""

    # optional: ``most_bytes(keep) -> int``, the most reservations could ever get while the
    # loaded object ``keep`` stays (see ``ModelManager.most_bytes``)


def device_free_bytes(device: torch.device) -> int | None:
    """What PyTorch could still allocate on a CUDA device, minus a margin; None elsewhere."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    margin = max(CUDA_MARGIN_BYTES, int(total * CUDA_MARGIN_FRACTION))
    return max(0, free + cached - margin)


def device_most_bytes(device: torch.device, held: int) -> int:
    """On CUDA: the whole device less the margin and what is allocated besides ``held``."""
    _free, total = torch.cuda.mem_get_info(device)
    margin = max(CUDA_MARGIN_BYTES, int(total * CUDA_MARGIN_FRACTION))
    return max(0, total - margin - (torch.cuda.memory_allocated(device) - held))


def host_free_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available // 2)


class KVBudget:
    """The KV-cache memory of one engine: what is held, what is left."""

    def __init__(self, ledger: MemoryLedger | None = None, fixed_bytes: int | None = None) -> None:
        self.ledger = ledger
        self.fixed_bytes = fixed_bytes
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self.peak_bytes = 0
        forksafe.renew(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return sum(self._held.values())

    def free(self, device: torch.device) -> int:
        """Bytes new allocations may take now on ``device``."""
        limits = []
        if self.fixed_bytes is not None:
            limits.append(self.fixed_bytes - self.held_bytes)
        if self.ledger is not None:
            limits.append(self.ledger.free_bytes())
        on_device = device_free_bytes(device)
        if on_device is not None:
            limits.append(on_device)
        if not limits:
            limits.append(host_free_bytes())
        return max(0, min(limits))

    def most(self, device: torch.device, keep: Any = None) -> int:
        """The most this engine's caches could hold on ``device`` with every one of them freed and
        everything else that comes and goes gone (loads, image jobs, models nobody uses), while
        the model ``keep`` stays loaded."""
        held = self.held_bytes
        limits = []
        if self.fixed_bytes is not None:
            limits.append(self.fixed_bytes)
        if self.ledger is not None:
            most = getattr(self.ledger, "most_bytes", None)
            limits.append(most(keep) if most is not None else self.ledger.free_bytes() + held)
        elif device.type == "cuda":
            limits.append(device_most_bytes(device, held))
        if not limits:
            limits.append(host_free_bytes() + held)
        return max(0, min(limits))

    def reserve(self, owner: str, nbytes: int) -> bool:
        """Hold ``nbytes`` for ``owner`` (its total, not an increment); False if refused."""
        with self._lock:
            current = self._held.get(owner, 0)
            if nbytes > current and self.fixed_bytes is not None:
                if sum(self._held.values()) - current + nbytes > self.fixed_bytes:
                    return False
        if self.ledger is not None and not self.ledger.set_reserved(owner, nbytes):
            return False
        with self._lock:
            if nbytes:
                self._held[owner] = nbytes
            else:
                self._held.pop(owner, None)
            self.peak_bytes = max(self.peak_bytes, sum(self._held.values()))
        return True


class Plan:
    """The rows one batch would hold if the requests admitted so far this round joined it."""

    def __init__(self, batch) -> None:
        self.batch = batch
        self.rows = len(batch)
        self.length = batch.longest_need()
        self.newcomers: list = []

    def cost(self, rows: int, length: int, newcomers: int) -> int:
        return self.batch.bytes_for(rows, length, lone_newcomer=newcomers == 1 and self.rows == 0)

    def extra_bytes(self, request) -> int:
        """Bytes this request's joining adds to what the plan already costs."""
        before = self.cost(self.rows, self.length, len(self.newcomers))
        after = self.cost(self.rows + 1, max(self.length, request.need_tokens), len(self.newcomers) + 1)
        return after - before

    def take(self, request) -> None:
        self.rows += 1
        self.length = max(self.length, request.need_tokens)
        self.newcomers.append(request)
