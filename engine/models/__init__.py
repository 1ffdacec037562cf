"""What models exist and what one costs, and loading one LLM: the catalog per hardware profile
(:mod:`.catalog`, :mod:`.hardware`, :mod:`.policy` for custom ids), the Hub cache and start-up
downloads (:mod:`.hub_cache`, :mod:`.preload`), what a config implies (:mod:`.arch`: attention
shapes, KV-cache bytes, sliding window), memory estimates and measures (:mod:`.memory`),
leases that keep a model in use from being evicted (:mod:`.leases`), an LLM's loading and
prompts (:mod:`.llm`) with its compiled fast path (:mod:`.fastpath`, prepared at load time), and
the tiny random-weight checkpoints built from real configs (:mod:`.tiny`, :mod:`.tiny_files`,
:mod:`.tiny_pipelines`, :mod:`.clip_bpe`, :mod:`.chat_templates`).

Which models stay resident is :mod:`engine.serving`'s job, not this package's.

May import: ``engine.errors``, ``engine.limits``, ``engine.runtime``.
"""
