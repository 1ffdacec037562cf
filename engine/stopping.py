"""Stop signals made of several: a request's own Stop and the caller going away."""
from __future__ import annotations

import threading


class AnyEvent(threading.Event):
    """An event that also reads as set when any of ``others`` is. Loops poll ``is_set()``;
    ``set()`` on it sets it alone (a component that ends sets its own, not the caller's)."""

    def __init__(self, *others: threading.Event | None) -> None:
        super().__init__()
        self.others = [e for e in others if e is not None]

    def is_set(self) -> bool:
        return super().is_set() or any(e.is_set() for e in self.others)
