"""Retrieved passages put into a prompt (the wording is in ``assets/sources/prompts.json``).

For an instruct model (``chat=True``) the result is the user turn — an instruction to answer from
the extracts, the numbered extracts, then the question — that the caller wraps in the model's own
chat template. For a base model (``chat=False``) the extracts come first as a document and the
prompt follows exactly as typed, so that the only difference from the prompt alone is the source.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from engine.retrieval.index import Passage

PROMPTS_PATH = Path(__file__).resolve().parents[2] / "assets" / "sources" / "prompts.json"


@lru_cache(maxsize=1)
def _wording() -> dict[str, dict[str, str]]:
    return json.loads(PROMPTS_PATH.read_text(encoding="utf-8"))


def extracts(passages: Sequence[Passage], lang: str, title: str = "") -> str:
    """The numbered extracts under their heading ("[1] …", best first)."""
    words = _wording()["fr" if lang == "fr" else "en"]
    heading = words["heading_titled"].format(title=title) if title else words["heading"]
    lines = [words["passage"].format(n=n, text=p.text) for n, p in enumerate(passages, 1)]
    return "\n".join([heading] + lines)


def augment(prompt: str, passages: Sequence[Passage], lang: str, *, chat: bool = True, title: str = "") -> str:
    """``prompt`` with ``passages`` (none: the prompt unchanged), worded in ``lang``."""
    if not passages:
        return prompt
    words = _wording()["fr" if lang == "fr" else "en"]
    return words["chat" if chat else "document"].format(extracts=extracts(passages, lang, title), question=prompt)
