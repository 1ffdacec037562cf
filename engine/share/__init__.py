"""Experiment links and the class wall: storage (store.py), rules (wall.py), ZIP export (export.py),
optional Hub backup (backup.py), HTML sanitizing of stored results (sanitize.py).

:class:`Sharing` is what the UI holds: one store, one wall, and the rate limit on creating links.

May import: ``engine.errors``, ``engine.limits``.
"""
from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from engine.share.store import Experiment, Store, StoreLimits, default_data_dir
from engine.share.wall import Entry, Limits, RateLimiter, Room, Wall, normalize_code


class Sharing:
    """The data folder's store and wall, shared by every tab and endpoint of one app."""

    LINK_BURST, LINK_REFILL_S = 20, 3.0           # links per browser session
    ADDRESS_BURST, ADDRESS_REFILL_S = 300, 0.2    # links per network address (a class behind one NAT)

    def __init__(self, folder: str | Path | None = None, limits: Limits | None = None,
                 store_limits: StoreLimits | None = None) -> None:
        self.store = Store(folder or default_data_dir(), store_limits)
        self.wall = Wall(self.store, limits)
        self._links_session = RateLimiter(self.LINK_BURST, self.LINK_REFILL_S)
        self._links_address = RateLimiter(self.ADDRESS_BURST, self.ADDRESS_REFILL_S)

    @property
    def folder(self) -> Path:
        return self.store.folder

    def share(self, exp: Experiment, session: str = "", address: str = "") -> Experiment:
        """Store ``exp`` as a link (rate-limited per session and per address)."""
        for limiter, key in ((self._links_session, "session:" + session), (self._links_address, "addr:" + address)):
            wait = limiter.take(key)
            if wait > 0:
                raise UserError("wall.err.slow_down", seconds=max(1, round(wait)))
        return self.store.put_experiment(exp)


__all__ = ["Entry", "Experiment", "Limits", "Room", "Sharing", "Store", "StoreLimits", "Wall", "default_data_dir",
           "normalize_code"]
