"""GPU work, callable the same way on a ZeroGPU Space, a GPU machine or a laptop.

A tab builds a plain-data job and iterates :func:`call`::

    for panes in gpu_tasks.call(gpu_tasks.compare, job, key=(session, "compare"), on_progress=…):
        …  # render the latest state

:func:`call` sizes the GPU duration from the job (:mod:`~engine.gpu_tasks.durations`), gives
the call a stop token found again by ``key`` (:func:`stop` from the Stop button's handler),
turns progress and notices into callbacks, raises the call's error as a ``UserError`` and
yields the results. The functions themselves are in :mod:`~engine.gpu_tasks.tasks`.

``key`` is (session, action): a session may have ``Limits.session_runs`` calls of one action
going at once (one, by default); a further one is refused before anything starts, whatever the
client (the page disables its button meanwhile; a script gets the message). The job is marked
as the session's, so the engine gives sessions their turns round-robin.

May import: every other package of ``engine`` (it is the top: what tabs call for GPU work).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Iterator

from engine import limits
from engine.errors import UserError
from engine.gpu_tasks import durations
from engine.gpu_tasks.jobs import (BenchmarkJob, CompareJob, Failed, FragilityJob, ImageDone, ImageItem, ImagePreview,
                                   ImagesJob, Progress,
                                   QuantizeJob, Skipped, Snapshot, TechniqueJob, TimeLimit)
from engine.gpu_tasks.tasks import benchmark, bind, compare, fragility, images, manager, quantize, technique
from engine.runtime.stopping import BOARD
from engine.runtime.zerogpu import Heartbeat

DURATION: dict[Callable, Callable[..., float]] = {
    compare: durations.compare, technique: durations.technique, benchmark: durations.benchmark,
    fragility: durations.fragility, quantize: durations.quantize, images: durations.images,
}


def seconds_for(task: Callable, job: Any) -> float:
    """The GPU duration ``task`` would request for ``job`` (models loaded now count as resident)."""
    return DURATION[task](job, manager().is_loaded)


def call(task: Callable, job: Any, key: Hashable, *, on_progress: Callable[[Progress], None] | None = None,
         on_notice: Callable[[Skipped | TimeLimit], None] | None = None) -> Iterator[Any]:
    """Run ``task`` for ``job``; yield its results (``Snapshot`` values unwrapped, ``ImageDone``…).
    Raises ``UserError`` at once when the session already runs this action."""
    token = BOARD.begin(key, limit=limits.current().session_runs)
    job = _owned_by(job, key)
    try:
        for event in task(job, token, seconds_for(task, job)):
            if isinstance(event, Heartbeat):
                continue
            if isinstance(event, Progress):
                if on_progress is not None:
                    on_progress(event)
            elif isinstance(event, (Skipped, TimeLimit)):
                if on_notice is not None:
                    on_notice(event)
            elif isinstance(event, Failed):
                raise UserError(event.key, **event.params)
            elif isinstance(event, Snapshot):
                yield event.value
            else:
                yield event
    finally:
        BOARD.end(key, token)


def _owned_by(job: Any, key: Hashable) -> Any:
    """The job, marked as the session's (``key[0]``) if it has an owner field left empty."""
    session = key[0] if isinstance(key, tuple) and key else key
    if dataclasses.is_dataclass(job) and getattr(job, "owner", None) == "":
        return dataclasses.replace(job, owner=str(session))
    return job


def running(key: Hashable) -> int:
    """Calls going under ``key`` (not asked to stop): 0 once the session's run of that action ended."""
    return BOARD.running(key)


def stop(key: Hashable) -> int:
    """Stop the calls running under ``key`` (at their next step); returns how many there were."""
    return BOARD.stop(key)


__all__ = ["BenchmarkJob", "CompareJob", "FragilityJob", "ImageDone", "ImageItem", "ImagePreview", "ImagesJob", "Progress",
           "QuantizeJob", "Skipped", "TechniqueJob", "TimeLimit", "benchmark", "bind", "call", "compare", "fragility",
           "images", "manager", "quantize", "running", "seconds_for", "stop", "technique"]
