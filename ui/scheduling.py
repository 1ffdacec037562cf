"""Which queue group each kind of work runs in, and how many of it run at once.

One table for the whole app (the tabs register their events; this sets where they queue), so
that no kind of work can take every worker: a class's 30 comparisons batch together in the
LLM group, benchmarks (each is many requests) have their own small group, a 100,000-character
tokenization waits among CPU work without starving the LLM events, and image events are
admitted a few at a time and then take turns for the image model (``engine/runtime/fairness.py``).
Every queued event should be listed: one that is not keeps the group its tab gave it, with a
warning in the log (and ``tests/test_safety.py`` fails).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import gradio as gr

from engine.limits import Limits
from engine.quantization import live_runs

log = logging.getLogger(__name__)
LimitOf = Callable[[Limits, Any], int | None]

GROUPS: dict[str, tuple[LimitOf, tuple[str, ...]]] = {
    # the engine batches these; the limit is what fills one batch: the profile's llm_events or
    # GENAI_LLM_CONCURRENCY, whichever is lower (the variable can lower the limit, not raise it)
    "gpu-causal_lm": (lambda L, ctx: min(L.llm_events, ctx.llm_concurrency),
                      ("compare", "follow_up", "run_technique")),
    "gpu-causal_lm-bench": (lambda L, ctx: L.benchmark_events, ("benchmark_techniques", "fragility_experiment")),
    # as many as the comparisons' own memory gate lets run at once; it queues the rest with their place
    "quant-live": (lambda L, ctx: live_runs.concurrency(), ("quantize_compare",)),
    "gpu-image": (lambda L, ctx: L.image_events, ("generate_images", "image_grid_sweep", "make_td_target")),
    "png": (lambda L, ctx: L.png_reads, ("read_png_settings",)),
    "cpu": (lambda L, ctx: L.cpu_events, ("tokenize", "refresh", "language_cost", "decode_ids", "clip_window",
                                          "pick_preset", "quantize_weights", "layers_of", "memory_plan",
                                          "comparison_card", "pick_method", "first_view",
                                          "finetune_plan", "embedding_view")),
    # sharing and the class wall: small SQLite reads and writes (the ZIP export included)
    "share": (lambda L, ctx: 8, ("copy_link", "send_to_wall", "share_experiment", "open_experiment", "join_room",
                                 "open_room", "close_room", "toggle_hidden", "toggle_pinned", "compare_entries", "wall_open_room",
                                 "wall_post", "wall_read", "wall_hide", "wall_pin", "wall_close", "wall_export",
                                 "reopen_room", "wall_reopen")),
    # instant UI updates: never behind heavy work
    "ui": (lambda L, ctx: 16, ("refresh_about", "restored_controls", "show_step", "on_focus", "on_use_defaults",
                               "refresh_tokens", "localise", "build_prompt", "pick_style", "restore", "restore_wall", "settle",
                               "on_tab", "context_slider", "apply_language")),
}


def group_of(fn_name: str) -> str | None:
    return next((gid for gid, (_, names) in GROUPS.items() if fn_name in names), None)


def apply(demo: gr.Blocks, limits: Limits, ctx: Any) -> dict[str, int | None]:
    """Set every queued event's concurrency group and limit; returns the limit per group
    (``"?"``: events that are in no group)."""
    chosen: dict[str, int | None] = {}
    for block_fn in demo.fns.values():
        if block_fn.fn is None or not block_fn.queue:
            continue
        gid = group_of(block_fn.name)
        if gid is None:
            log.warning("queued event %r has no queue group in ui/scheduling.py: it keeps its own", block_fn.name)
            chosen.setdefault("?", 0)
            chosen["?"] += 1
            continue
        limit = max(1, int(GROUPS[gid][0](limits, ctx)))
        block_fn.concurrency_id, block_fn.concurrency_limit = gid, limit
        chosen[gid] = limit
    return chosen
