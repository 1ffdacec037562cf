"""LLMs served by an inference server (OpenAI-compatible or TGI) instead of loaded here: the
handle the engine streams from (:mod:`.client`) and bounded, deadline-checked HTTP reading
(:mod:`.transport`).

May import: ``engine.errors``, ``engine.limits``, ``engine.runtime``, ``engine.models``,
``engine.generation`` (its request and update types).
"""
