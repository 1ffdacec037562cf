"""Per-profile limits on what one request may ask for: the one table the boundary checks read.

Every event's arguments are checked against these numbers before the event is queued
(``ui/validation.py``); handlers and engine code that bound work (sweeps, remote answers,
temp files, sessions) read the same table. Each value can be overridden at start-up with an
environment variable ``GENAI_LIMIT_<FIELD>`` (e.g. ``GENAI_LIMIT_SWEEP_CELLS=25``). The table
is printed in the README (section "Limits"); ``python -m engine.limits`` prints it as Markdown.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from functools import lru_cache

MB = 1_000_000
SEED_MAX = 2**32 - 1  # seeds are shown in the browser (JavaScript numbers) and stored in PNGs
# Earlier turns one Base vs Instruct follow-up may carry (engine/chat/conversation.py). Each message is
# bounded by ``prompt_chars``, each pane's conversation by ``card_chars`` (it is what a card shows),
# and the whole rendered input by the model's context and ``prompt_tokens``.
HISTORY_TURNS = 100


@dataclass(frozen=True)
class Limits:
    # ---------------------------------------------------------------- language models
    prompt_chars: int = 20_000  # a prompt / question / system prompt, in characters
    prompt_tokens: int = 8_192  # prompt tokens (the model's own context is checked too)
    max_new_tokens: int = 2_048  # tokens one answer may generate
    quant_new_tokens: int = 512  # tokens per precision in the quantization tab's live comparison
    quant_variants: int = 12  # precisions in one live comparison
    samples: int = 20  # self-consistency paths (N)
    refine_rounds: int = 4  # self-refine rounds
    thoughts: int = 5  # tree of thoughts: proposals per level
    depth: int = 4  # tree of thoughts: levels
    examples: int = 8  # few-shot examples
    benchmark_problems: int = 40  # problems per benchmark run
    source_chars: int = 100_000  # a source given to the model (Base vs Instruct; only its best passages reach the prompt)
    ama_chains: int = 6  # ask-me-anything: prompt chains
    fragility_variants: int = 12  # prompt fragility: variants of the prompt (K)
    fragility_rows: int = 240  # prompt fragility: variants × problems in one experiment
    # ---------------------------------------------------------------- text tools
    tokenizer_chars: int = 100_000  # text given to the tokenizer tab
    tokenizers: int = 8  # tokenizers compared at once (ticked + typed)
    decode_ids: int = 20_000  # ids decoded at once
    text_chars: int = 2_000  # any other free text field (expected answer, ids of a layer, …)
    card_chars: int = 60_000  # each text of a comparison card (prompt, answers)
    embedding_neighbours: int = 50  # nearest tokens listed for one vector
    embedding_cache_mb: int = 1_200  # embedding matrices kept for nearest-token searches (Mistral 7B's: 262 MB)
    # ---------------------------------------------------------------- images
    image_prompt_chars: int = 2_000  # CLIP reads 77 tokens, FLUX's T5 512: more is never read
    image_size: int = 1536  # pixels per side
    image_steps: int = 50  # denoising steps
    sweep_cells: int = 16  # images in one X/Y sweep
    sweep_values: int = 8  # values on one axis of a sweep
    sweep_seconds: float = 300.0  # a sweep stops (and shows what it made) after this long
    label_chars: int = 60  # a sweep value shown as a row or column label
    upload_bytes: int = 20 * MB  # one uploaded file
    upload_pixels: int = 40_000_000  # an uploaded PNG's width × height (read without decoding)
    image_slots: int = 1  # images generated at once (sessions take turns, round-robin)
    # ---------------------------------------------------------------- serving
    queue_size: int = 256  # events waiting in the queue, all users together
    llm_events: int = 32  # LLM events running at once (the engine batches them)
    benchmark_events: int = 2  # benchmarks running at once (each is many requests)
    cpu_events: int = 4  # CPU-bound events (tokenizers, weights, plans, cards) at once
    image_events: int = 8  # image events admitted at once (they then take turns for the GPU)
    png_reads: int = 2  # PNG metadata reads at once
    session_runs: int = 1  # runs of one action (comparison, technique, benchmark, images…) a session has going at once
    queue_wait_s: float = 300.0  # the longest a request waits for its turn (memory, image model, live quantization)
    sessions: int = 300  # browser/API sessions whose state the server keeps (≈ 0.5 MB each + last outputs)
    session_idle_s: float = 1_800.0  # a session unused this long is forgotten
    remote_deadline_s: float = 300.0  # one request to an inference server, start to end
    remote_answer_chars: int = 200_000  # characters one remote answer may stream
    remote_chunk_bytes: int = 256 * 1024  # one server-sent line (one streamed chunk)
    temp_age_s: float = 3_600.0  # files the app made for download are deleted after this long
    temp_bytes: int = 2_000 * MB  # … or sooner, oldest first, beyond this total


_BASE = Limits()
PROFILE_LIMITS: dict[str, Limits] = {
    # tiny random models: everything instant; small caps keep the tests and CI cheap
    "tiny": replace(_BASE, image_steps=8, sweep_cells=16, sweep_seconds=120.0),
    # a laptop or a CPU server: small stand-in models, SDXL Turbo only
    "cpu": replace(_BASE, prompt_tokens=4_096, max_new_tokens=512, quant_new_tokens=128, samples=10,
                   benchmark_problems=20, fragility_rows=60, image_size=512, image_steps=30, sweep_cells=4, sweep_values=4,
                   sweep_seconds=180.0, llm_events=16, cpu_events=2, image_events=4, sessions=200),
    # one 16 GB T4 for the class
    "t4": replace(_BASE, prompt_tokens=4_096, max_new_tokens=1_024, quant_new_tokens=256,
                  benchmark_problems=30, image_size=1024, sweep_cells=9, sweep_values=5, sweep_seconds=240.0,
                  cpu_events=4, image_events=6),
    # a large GPU
    "gpu": replace(_BASE, image_size=1536, sweep_cells=16, sweep_seconds=300.0, sessions=500),
    # a ZeroGPU Space: every GPU call is billed to the visitor's quota
    "zerogpu": replace(_BASE, max_new_tokens=1_024, benchmark_problems=20, fragility_rows=120, image_size=1024, sweep_cells=9,
                       sweep_values=5, sweep_seconds=150.0, sessions=500),
}


def _parse(kind: type, raw: str):
    return kind(float(raw)) if kind is int else kind(raw)


@lru_cache(maxsize=None)
def limits_for(profile: str) -> Limits:
    """The profile's limits with ``GENAI_LIMIT_<FIELD>`` overrides applied."""
    limits = PROFILE_LIMITS.get(profile, PROFILE_LIMITS["cpu"])
    changes = {}
    for f in fields(Limits):
        raw = os.environ.get(f"GENAI_LIMIT_{f.name.upper()}")
        if raw:
            kind = type(getattr(limits, f.name))
            try:
                changes[f.name] = _parse(kind, raw)
            except ValueError as exc:
                raise ValueError(f"GENAI_LIMIT_{f.name.upper()}={raw!r}: expected a number") from exc
    return replace(limits, **changes)


_active = "cpu"


def set_profile(profile: str) -> Limits:
    """Called once at start-up: the profile whose limits :func:`current` returns."""
    global _active
    _active = profile
    return limits_for(profile)


def current() -> Limits:
    """The running app's limits (engine code that has no context at hand reads these)."""
    return limits_for(_active)


def markdown_table() -> str:
    """The README's table: one row per limit, one column per profile."""
    names = list(PROFILE_LIMITS)
    lines = ["| Limit | " + " | ".join(f"`{n}`" for n in names) + " |",
             "| --- |" + " --- |" * len(names)]
    for f in fields(Limits):
        values = [getattr(PROFILE_LIMITS[n], f.name) for n in names]
        shown = [f"{v:,.0f}" if isinstance(v, float) else f"{v:,}" for v in values]
        lines.append(f"| `{f.name}` | " + " | ".join(shown) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
