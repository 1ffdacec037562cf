"""ZeroGPU: on a ZeroGPU Space, GPU work must run inside ``@spaces.GPU(duration=…)`` functions."""
from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def gpu_decorator(enabled: bool, duration: int) -> Callable[[F], F]:
    if not enabled:
        return lambda fn: fn
    import spaces  # available on Spaces; a pass-through elsewhere

    return spaces.GPU(duration=duration)
