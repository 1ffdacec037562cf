"""ZeroGPU start-up: the resident models, loaded and placed on CUDA before the app launches.

ZeroGPU expects models to be moved to CUDA at start-up, outside the ``@spaces.GPU`` functions:
the package records those tensors at launch and copies them onto the GPU of every worker it
forks, so a call finds them there at once. Anything loaded inside a call counts against the
call's duration and lives only in that worker. Which roles are resident is the profile's
``resident`` list in ``assets/catalog.toml``; they are pinned in the model manager (never
evicted), and the others load on demand inside the call that needs them.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from engine.models.catalog import ROLES, Catalog, ModelSpec

log = logging.getLogger(__name__)
SLICE_BYTES = 70e9  # what one ZeroGPU call gets: half an H200 (MIG 3g.71gb)


@dataclass(frozen=True)
class Residency:
    role: str
    spec: ModelSpec
    resident: bool
    estimate_bytes: int | None  # weights + head-room, when known without a download


def plan(manager, catalog: Catalog) -> list[Residency]:
    """Every role: resident (a resident role's model, shared or not) or loaded on demand."""
    from engine.models.hub_cache import offline_estimate_bytes

    resident_keys = {catalog.spec(role).key for role in catalog.resident}
    return [Residency(role, catalog.spec(role), catalog.spec(role).key in resident_keys,
                      offline_estimate_bytes(manager, catalog.spec(role)))
            for role in ROLES]


def resident_bytes(rows: list[Residency]) -> int:
    """The resident models' estimate, each model counted once."""
    seen: dict[str, int] = {}
    for r in rows:
        if r.resident and r.estimate_bytes:
            seen[r.spec.key] = r.estimate_bytes
    return sum(seen.values())


def preload(manager, catalog: Catalog) -> list[tuple[str, float]]:
    """Load the resident roles now (on ZeroGPU's patched CUDA), pin them; (model, seconds) each.

    A model that cannot load (not downloaded, gated without a token) is logged and left to load
    on demand, where its error reaches the user who asks for it."""
    done: list[tuple[str, float]] = []
    for role in catalog.resident:
        spec = catalog.spec(role)
        if spec.endpoint or manager.is_pinned(spec):
            continue
        started = time.perf_counter()
        try:
            if spec.kind == "causal_lm":
                manager.llm(spec)
            else:
                manager.pipeline(spec)
        except Exception as exc:  # noqa: BLE001 - start-up goes on; the role loads on demand
            log.warning("preload of %s (%s) failed, it will load on demand: %s", spec.id, role, exc)
            continue
        manager.pin(spec)
        seconds = time.perf_counter() - started
        log.info("resident: %s (%s) loaded in %.1f s", spec.id, spec.precision, seconds)
        done.append((spec.id, seconds))
    return done


def download_patterns(spec: ModelSpec) -> list[str]:
    """The files ``from_pretrained`` reads for ``spec`` (safetensors, configs, tokenizers), as
    ``allow_patterns``: not the repositories' duplicate single-file or ``.bin`` checkpoints."""
    if spec.kind == "causal_lm":
        return ["*.json", "*.safetensors", "tokenizer.model"]
    weights = "*/*.fp16.safetensors" if spec.kind == "sdxl" and spec.precision == "fp16" else "*/*.safetensors"
    return ["model_index.json", "*/*.json", "*/*.txt", "*/*.model", weights]


def prefetch(catalog: Catalog, has_token: bool) -> threading.Thread | None:
    """Download — not load — the on-demand roles' files in the background, so that no GPU call
    spends its time on the network. Gated models are skipped without a token."""
    resident = {catalog.spec(role).key for role in catalog.resident}
    specs = {spec.id: spec for spec in (catalog.spec(role) for role in ROLES)
             if spec.key not in resident and not (spec.is_tiny or spec.endpoint or (spec.gated and not has_token))}
    if not specs:
        return None

    def run() -> None:
        from huggingface_hub import snapshot_download

        for spec in specs.values():
            try:
                snapshot_download(spec.id, allow_patterns=download_patterns(spec))
                if spec.vae:
                    snapshot_download(spec.vae, allow_patterns=["*.json", "*.safetensors"])
                log.info("on-demand model on disk: %s", spec.id)
            except Exception as exc:  # noqa: BLE001 - it will be fetched (or explained) at first use
                log.warning("could not download %s in advance: %s", spec.id, exc)

    thread = threading.Thread(target=run, name="prefetch", daemon=True)
    thread.start()
    return thread
