"""What is already in the local Hugging Face cache (checked without touching the network)."""
from __future__ import annotations

from engine.models.catalog import ModelSpec


def is_cached(spec: ModelSpec) -> bool:
    if spec.is_tiny:
        from engine.models.tiny import tiny_root

        return (tiny_root() / spec.id.removeprefix("tiny/") / ".complete").exists()
    from huggingface_hub import try_to_load_from_cache

    marker = "config.json" if spec.kind == "causal_lm" else "model_index.json"
    try:
        found = try_to_load_from_cache(spec.id, marker)
    except Exception:  # noqa: BLE001 - a malformed id is simply "not cached"
        return False
    return isinstance(found, str)


def offline_estimate_bytes(manager, spec: ModelSpec) -> int | None:
    """The manager's estimate when it needs no download (cached, tiny or sized in the catalog)."""
    if spec.kind == "causal_lm" and not (spec.is_tiny or spec.params_b or is_cached(spec)):
        return None
    try:
        return manager.estimate_bytes(spec)
    except Exception:  # noqa: BLE001 - the About panel must never fail
        return None


def hub_reachable(timeout: float = 3.0) -> bool:
    import httpx
    from huggingface_hub import constants

    try:
        httpx.head(constants.ENDPOINT, timeout=timeout, follow_redirects=False)
        return True
    except httpx.HTTPError:
        return False


def go_offline_if_unreachable() -> bool:
    """At start-up: if the Hub cannot be reached, behave as ``HF_HUB_OFFLINE=1`` so that a
    missing model fails at once with a clear message instead of after network retries."""
    import os

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or hub_reachable():
        return bool(constants.HF_HUB_OFFLINE)
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    return True
