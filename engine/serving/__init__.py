"""Which models are resident and who is using them: :class:`~engine.serving.manager.ModelManager`
loads any kind of model the catalog names (an LLM, an image pipeline, a remote inference server),
books its memory before loading, and evicts the least recently used model nobody holds.

May import: ``engine.errors``, ``engine.limits``, ``engine.runtime``, ``engine.models``,
``engine.images``, ``engine.remote``.
"""
