"""BM25 over a source's passages (``bm25s``), with French or English stop-words and stemming.

Words are lower-cased, stop-words ("the", "le", "qui"…) left out, the rest reduced to their stem
(Snowball, through PyStemmer: "ministre"/"ministres" → "ministr") and stripped of accents, so a
question typed without accents ("president") still finds "président". Each passage gets the
BM25 score of the question's words (Lucene's variant, k1 = 1.5, b = 0.75); a score of 0 means no
word in common: such a passage is never returned.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

import bm25s
import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS, STOPWORDS_FRENCH

from engine.retrieval.chunking import MAX_CHARS, Chunk, chunk, title_of

LANGS = ("fr", "en")
# NLTK's lists (shipped by bm25s); the English one has the question words, the French one not
QUESTION_WORDS_FR = ("quand", "comment", "combien", "pourquoi", "où", "quel", "quelle", "quels", "quelles",
                     "lequel", "laquelle", "lesquels", "lesquelles", "quoi")
STOPWORDS = {"fr": tuple(STOPWORDS_FRENCH) + QUESTION_WORDS_FR, "en": tuple(STOPWORDS_EN_PLUS)}
STEMMERS = {"fr": "french", "en": "english"}
_ONLY = {"fr": frozenset(STOPWORDS["fr"]) - frozenset(STOPWORDS["en"]),
         "en": frozenset(STOPWORDS["en"]) - frozenset(STOPWORDS["fr"])}
_WORD = re.compile(r"\w+")
CACHE_SIZE = 16  # sources indexed and kept (a class works on a few at a time)


@dataclass(frozen=True)
class Passage:
    """A passage retrieved for a question: its number in the source, its text and its BM25 score."""

    index: int
    text: str
    score: float


def detect_lang(text: str, hint: str = "en") -> str:
    """French or English, from the stop-words only one of them has; ``hint`` when it is a tie."""
    words = _WORD.findall((text or "")[:20_000].lower())
    fr = sum(w in _ONLY["fr"] for w in words)
    en = sum(w in _ONLY["en"] for w in words)
    if fr == en:
        return hint if hint in LANGS else "en"
    return "fr" if fr > en else "en"


def _fold(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def analyse(texts: list[str], lang: str) -> list[list[str]]:
    """Each text as the list of its index terms."""
    stemmer = Stemmer.Stemmer(STEMMERS[lang])  # one per call: PyStemmer objects are not thread-safe
    return bm25s.tokenize(texts, lower=True, stopwords=list(STOPWORDS[lang]),
                          stemmer=lambda words: [_fold(w) for w in stemmer.stemWords(words)],
                          return_ids=False, show_progress=False)


class SourceIndex:
    """One source, cut into passages and indexed once; :meth:`search` ranks them for a question."""

    def __init__(self, text: str, lang_hint: str = "en", max_chars: int = MAX_CHARS) -> None:
        self.title = title_of(text)
        self.chunks: list[Chunk] = chunk(text, max_chars)
        self.lang = detect_lang(text, lang_hint)
        self._bm25: bm25s.BM25 | None = None
        terms = analyse([c.text for c in self.chunks], self.lang) if self.chunks else []
        if any(terms):
            self._bm25 = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
            self._bm25.index(terms, show_progress=False)

    def scores(self, question: str) -> list[float]:
        """The BM25 score of every passage, in the source's order."""
        terms = analyse([question or ""], self.lang)[0] if self._bm25 is not None else []
        if not terms:
            return [0.0] * len(self.chunks)
        return [float(s) for s in self._bm25.get_scores(terms)]

    def search(self, question: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``question``, best first (ties: the earlier passage), leaving
        out those that share no word with it."""
        scores = self.scores(question)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return [Passage(self.chunks[i].index, self.chunks[i].text, round(scores[i], 4))
                for i in order[:max(0, k)] if scores[i] > 0]


_cache: OrderedDict[tuple[str, str, int], SourceIndex] = OrderedDict()
_cache_lock = threading.Lock()


def index_for(text: str, lang_hint: str = "en", max_chars: int = MAX_CHARS) -> SourceIndex:
    """The index of ``text``, built once and kept for the next questions on the same source."""
    key = (text, lang_hint if lang_hint in LANGS else "en", max_chars)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    built = SourceIndex(text, key[1], max_chars)
    with _cache_lock:
        _cache[key] = built
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return built
