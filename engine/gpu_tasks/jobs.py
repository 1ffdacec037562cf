"""What crosses the process boundary of a GPU call: the requests (jobs) and the events back.

Everything here is plain data — strings, numbers, frozen records of them, PIL images — so that
``spaces`` can pickle it into and out of a forked ZeroGPU worker. Models are never passed: a
job names them (:class:`~engine.models.catalog.ModelSpec`: a Hub id and a precision) and the task
looks them up in the process-wide model manager.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.models.catalog import ModelSpec
from engine.generation import SamplingParams
from engine.runtime.zerogpu import Coalesced


# ------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class CompareJob:
    base: ModelSpec
    instruct: ModelSpec
    prompt: str
    params: SamplingParams
    system: str = ""
    template_on_base: bool = False
    top_probs: int = 0
    source: Any = None  # engine.retrieval.SourcePlan: the passages retrieved for the prompt (None: no source)
    history: tuple = ()  # earlier turns of the conversation: engine.chat.conversation.Turn records
    owner: str = ""  # who asked (a session): the engine admits sessions' requests round-robin


@dataclass(frozen=True)
class TechniqueJob:
    model: ModelSpec
    technique: str
    task: Any  # engine.techniques.tasks.Task (a frozen record)
    settings: Any  # engine.techniques.records.Settings (a frozen record)
    owner: str = ""


@dataclass(frozen=True)
class BenchmarkJob:
    model: ModelSpec
    techniques: tuple[str, ...]
    tasks: tuple[Any, ...]  # Task records
    settings: Any  # Settings
    owner: str = ""


@dataclass(frozen=True)
class FragilityJob:
    model: ModelSpec
    tasks: tuple[Any, ...]  # Task records
    settings: Any  # engine.techniques.fragility.FragilitySettings (a frozen record)
    variants: tuple[Any, ...]  # its Variant records, planned (and checked) before the call
    owner: str = ""


@dataclass(frozen=True)
class QuantizeJob:
    model: ModelSpec
    variants: tuple[str, ...]
    prompt: str
    max_new_tokens: int
    passages: tuple[tuple[str, str], ...] = ()  # (language, text) for the perplexity
    lang: str = "en"  # of the notes written into the rows (why a precision was skipped)


@dataclass(frozen=True)
class ImageItem:
    spec: ModelSpec
    settings: Any  # engine.images.imagegen.ImageSettings (plain fields)


@dataclass(frozen=True)
class ImagesJob:
    items: tuple[ImageItem, ...]
    owner: str = ""  # who asked (a session): requests take turns image by image, round-robin
    time_limit_s: float | None = None  # a sweep stops after this long, keeping what it made


# ------------------------------------------------------------------------- events back
QUEUE_KEY = "engine.queue"  # a Progress with this key and {"ahead": n}: waiting in the engine's queue


@dataclass(frozen=True)
class Progress(Coalesced):
    """For the progress bar: a fraction and either a text or a UI string key with parameters."""

    fraction: float
    text: str = ""
    key: str | None = None
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot(Coalesced):
    """The whole current state of a streamed result (only the latest one is worth sending)."""

    value: Any


@dataclass(frozen=True)
class Failed:
    """The call failed with a message the UI translates (``UserError`` key and parameters)."""

    key: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """One part of the work could not run (e.g. one image's model); the rest went on."""

    index: int
    role: str
    key: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TimeLimit:
    """The call stopped itself before the end of its GPU duration; what it had is kept."""

    seconds: float


@dataclass(frozen=True)
class ImagePreview(Coalesced):
    """What an image looks like while it denoises (only the latest one is worth sending)."""

    index: int
    role: str
    step: int
    total: int
    image: Any  # PIL.Image.Image


@dataclass(frozen=True)
class ImageDone:
    index: int
    image: Any  # PIL.Image.Image
    settings: Any  # ImageSettings
    seconds: float
