"""Per-session memory stays bounded: what the tabs keep per visitor, and what Gradio keeps.

* :class:`SessionStore` replaces the tabs' ``dict`` of per-session objects (the Stop events):
  at most ``max_items`` entries, each forgotten when its session is closed, unused for
  ``session_idle_s`` or pushed out by newer sessions.
* :func:`install` sets Gradio's session capacity (``state_session_capacity`` is passed to
  ``launch``), forgets a session's entries when its page is closed (``demo.unload``) and, every
  minute, drops the sessions Gradio keeps (a copy of the page's configuration and the last
  outputs, ≈ 0.5 MB and more) that were closed or idle for ``session_idle_s``.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any, Hashable, Iterator

import gradio as gr

from engine import limits as limits_mod

log = logging.getLogger(__name__)
_stores: "weakref.WeakSet[SessionStore]" = weakref.WeakSet()
CLOSED_GRACE_S = 120.0  # a closed page's state is kept this long (a reload within it finds it)


def _session_of(key: Hashable) -> Hashable:
    return key[0] if isinstance(key, tuple) and key else key


class SessionStore:
    """A dict keyed by session hash (or ``(session hash, kind)``), bounded and expiring.

    Same reading and writing interface as the ``dict`` it replaces."""

    def __init__(self, max_items: int | None = None, ttl_s: float | None = None) -> None:
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_items = max_items
        self._ttl_s = ttl_s
        _stores.add(self)

    @property
    def max_items(self) -> int:
        return self._max_items or 4 * limits_mod.current().sessions

    @property
    def ttl_s(self) -> float:
        return self._ttl_s or limits_mod.current().session_idle_s

    def __setitem__(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = (time.monotonic(), value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_items:
                self._data.popitem(last=False)

    def __getitem__(self, key: Hashable) -> Any:
        with self._lock:
            stamp, value = self._data[key]
            self._data[key] = (time.monotonic(), value)
            self._data.move_to_end(key)
            return value

    def get(self, key: Hashable, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __iter__(self) -> Iterator[Hashable]:
        with self._lock:
            return iter(list(self._data))

    def pop(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            entry = self._data.pop(key, None)
        return default if entry is None else entry[1]

    def forget(self, session_hash: str) -> int:
        with self._lock:
            keys = [k for k in self._data if _session_of(k) == session_hash]
            for k in keys:
                del self._data[k]
        return len(keys)

    def expire(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [k for k, (stamp, _) in self._data.items() if now - stamp > self.ttl_s]
            for k in old:
                del self._data[k]
        return len(old)


def forget_session(session_hash: str | None) -> int:
    """Every store's entries for that session (called when its page is closed)."""
    if not session_hash:
        return 0
    return sum(store.forget(session_hash) for store in list(_stores))


def expire_gradio_sessions(demo: gr.Blocks, idle_s: float, closed_grace_s: float = CLOSED_GRACE_S) -> int:
    """Drop the sessions Gradio holds that were closed (after a grace period) or idle too long."""
    holder = getattr(demo, "state_holder", None)
    if holder is None:
        return 0
    now = dt.datetime.now()
    queue = getattr(demo, "_queue", None)
    pending = getattr(queue, "pending_event_ids_session", None)
    busy = {k for k, ids in pending.copy().items() if ids} if isinstance(pending, dict) else set()
    dropped = 0
    with holder.lock:
        for session_hash in list(holder.session_data):
            last = holder.time_last_used.get(session_hash)
            idle = (now - last).total_seconds() if last else idle_s + 1
            state = holder.session_data[session_hash]
            closed = getattr(state, "is_closed", False)
            if session_hash in busy:
                continue  # an event of this session is still queued or running
            if idle > idle_s or (closed and idle > closed_grace_s):
                del holder.session_data[session_hash]
                holder.time_last_used.pop(session_hash, None)
                dropped += 1
    return dropped


def sweep(demo: gr.Blocks) -> tuple[int, int]:
    limits = limits_mod.current()
    expired = sum(store.expire() for store in list(_stores))
    dropped = expire_gradio_sessions(demo, limits.session_idle_s)
    return expired, dropped


def install(demo: gr.Blocks, interval_s: float = 60.0) -> threading.Thread:
    """``demo.unload`` forgets a closed page's entries; a daemon thread sweeps every minute."""

    def forget_closed_page(request: gr.Request):
        forget_session(getattr(request, "session_hash", None))

    with demo:
        demo.unload(forget_closed_page)

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            try:
                sweep(demo)
            except Exception:  # noqa: BLE001 - the sweeper must never die
                log.exception("session sweep failed")

    thread = threading.Thread(target=loop, name="session-sweeper", daemon=True)
    thread.start()
    return thread
