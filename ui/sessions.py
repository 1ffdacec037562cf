"""Per-session memory stays bounded: what Gradio keeps per visitor.

:func:`install` starts a thread that, every minute, drops the sessions Gradio keeps (a copy of the
page's configuration and the last outputs, ≈ 0.5 MB and more) that were closed or idle for
``session_idle_s`` (Gradio's session capacity, ``state_session_capacity``, is passed to
``launch``). The tabs keep nothing per visitor themselves: Stop goes through
``engine.runtime.stopping``'s board, whose entries end with their runs.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import gradio as gr

from engine import limits as limits_mod

log = logging.getLogger(__name__)
CLOSED_GRACE_S = 120.0  # a closed page's state is kept this long (a reload within it finds it)


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


def install(demo: gr.Blocks, interval_s: float = 60.0) -> threading.Thread:
    """A daemon thread that drops Gradio's closed and idle sessions every ``interval_s``."""

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            try:
                expire_gradio_sessions(demo, limits_mod.current().session_idle_s)
            except Exception:  # noqa: BLE001 - the sweeper must never die
                log.exception("session sweep failed")

    thread = threading.Thread(target=loop, name="session-sweeper", daemon=True)
    thread.start()
    return thread
