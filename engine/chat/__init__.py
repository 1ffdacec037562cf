"""Base vs Instruct: one prompt (or the next turn of a conversation, :mod:`.conversation`) sent
to two models side by side through their chat templates, with or without a source's passages
(:mod:`.compare`).

May import: ``engine.errors``, ``engine.limits``, ``engine.models``, ``engine.generation``,
``engine.retrieval``, ``engine.serving``.
"""
