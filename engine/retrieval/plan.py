"""What a comparison does with a source: the request's choices and the passages retrieved for it.

:func:`make_plan` checks the source, retrieves the passages for the question (on the CPU, before
any GPU work) and returns a :class:`SourcePlan`: plain data that travels with the GPU job and
tells :mod:`engine.chat.compare` which pane gets which prompt.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from engine.errors import UserError
from engine.limits import current as current_limits
from engine.retrieval.augment import augment
from engine.retrieval.index import Passage, index_for

MODES = ("off", "both", "with_without")  # no source · both models get it · one model without, then with
ROLES = ("instruct", "base")  # the model of a with/without comparison
DEFAULT_K, MAX_K = 3, 8  # passages put in the prompt


@dataclass(frozen=True)
class SourcePlan:
    mode: str  # "both" | "with_without"
    role: str  # with_without: which model runs both panes
    passages: tuple[Passage, ...]  # best first; empty: no passage shares a word with the question
    n_chunks: int  # passages the source was cut into
    lang: str  # the language the instruction around the extracts is written in
    source_lang: str  # the language the source was analysed in (stop-words, stemming)
    title: str = ""  # the source's heading, named in the prompt
    chars: int = 0
    k: int = DEFAULT_K

    @property
    def matched(self) -> bool:
        return bool(self.passages)

    def chat(self, question: str) -> str:
        """The user turn for an instruct model (its chat template is applied by the caller)."""
        return augment(question, self.passages, self.lang, chat=True, title=self.title)

    def document(self, question: str) -> str:
        """The text for a base model: the extracts as a document, then the prompt as typed."""
        return augment(question, self.passages, self.lang, chat=False, title=self.title)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["passages"] = [asdict(p) for p in self.passages]
        return out


def make_plan(source: str | None, question: str, mode: str | None, role: str | None = "instruct",
              k: float | None = DEFAULT_K, lang: str = "en") -> SourcePlan | None:
    """None when the source is off; else the passages of ``source`` retrieved for ``question``.
    An empty source, or one over the profile's ``source_chars``, is refused (``UserError``)."""
    mode = mode or "off"
    if mode not in MODES:
        raise ValueError(f"source mode {mode!r}: expected one of {MODES}")
    if mode == "off":
        return None
    role = role or "instruct"
    if role not in ROLES:
        raise ValueError(f"source model {role!r}: expected one of {ROLES}")
    text = source or ""
    if not text.strip():
        raise UserError("src.err.empty")
    limit = current_limits().source_chars
    if len(text) > limit:
        raise UserError("src.err.too_long", chars=len(text), limit=limit)
    k = max(1, min(MAX_K, int(k or DEFAULT_K)))
    index = index_for(text, lang)
    return SourcePlan(mode=mode, role=role, passages=tuple(index.search(question, k)), n_chunks=len(index.chunks),
                      lang="fr" if lang == "fr" else "en", source_lang=index.lang, title=index.title,
                      chars=len(text), k=k)
