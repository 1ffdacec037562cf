"""Retrieval at inference time (RAG) for "Give the model a source": a pasted or example document
cut into passages (:mod:`.chunking`), ranked for the question with BM25 (:mod:`.index`, the
``bm25s`` package), the best ones put into the prompt (:mod:`.augment`); :mod:`.plan` is what a
comparison carries; :mod:`.presets` the example sources of ``assets/sources/``.

May import: ``engine.errors``, ``engine.limits``.
"""
from engine.retrieval.augment import augment, extracts
from engine.retrieval.chunking import MAX_CHARS, Chunk, chunk, title_of
from engine.retrieval.index import Passage, SourceIndex, detect_lang, index_for
from engine.retrieval.plan import DEFAULT_K, MAX_K, MODES, ROLES, SourcePlan, make_plan
from engine.retrieval.presets import SourcePreset, load_presets, preset

__all__ = ["DEFAULT_K", "MAX_CHARS", "MAX_K", "MODES", "ROLES", "Chunk", "Passage", "SourceIndex", "SourcePlan",
           "SourcePreset", "augment", "chunk", "detect_lang", "extracts", "index_for", "load_presets", "make_plan",
           "preset", "title_of"]
