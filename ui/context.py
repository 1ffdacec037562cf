"""What every tab receives from app.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from engine.models.catalog import Catalog, ModelSpec
from engine.models.hardware import Hardware
from engine.limits import Limits, limits_for
from engine.serving.manager import ModelManager


@dataclass
class AppContext:
    manager: ModelManager
    catalog: Catalog
    hardware: Hardware
    settings: dict = field(default_factory=dict)
    # (fn(lang, *inputs), inputs, outputs) run after the header's language switch changes
    language_hooks: list[tuple[Callable, list, list]] = field(default_factory=list)

    def on_language(self, fn: Callable, inputs: list | None = None, outputs: list | None = None) -> None:
        """Re-render a view when the visitor switches language: ``fn(lang, *inputs)`` → ``outputs``."""
        self.language_hooks.append((fn, list(inputs or []), list(outputs or [])))

    @property
    def limits(self) -> Limits:
        """What one request may ask for on this profile (``engine/limits.py``)."""
        return limits_for(self.catalog.profile)

    @property
    def llm_concurrency(self) -> int:
        """``GENAI_LLM_CONCURRENCY``, else an engine batch (``MAX_BATCH``): the most LLM events the
        queue lets through at once (``ui/scheduling.py`` takes the lower of this and the profile's
        ``llm_events``; the engine batches them; on ZeroGPU each call has its own GPU slice)."""
        import os

        from engine.generation import MAX_BATCH

        return int(os.environ.get("GENAI_LLM_CONCURRENCY", MAX_BATCH))

    @staticmethod
    def concurrency_id(spec_or_kind: ModelSpec | str) -> str:
        """Queue group for events that run a model: one group per model kind on the GPU."""
        kind = spec_or_kind if isinstance(spec_or_kind, str) else spec_or_kind.kind
        return f"gpu-{kind}"
