"""The example sources (``assets/sources/``): each one's text, title and questions, in French and English."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SOURCES_DIR = Path(__file__).resolve().parents[2] / "assets" / "sources"


@dataclass(frozen=True)
class SourcePreset:
    id: str
    title: dict[str, str]  # lang → title
    questions: dict[str, tuple[tuple[str, str], ...]]  # lang → (question, a phrase of its best passage)

    def text(self, lang: str) -> str:
        return (SOURCES_DIR / f"{self.id}.{_lang(lang)}.md").read_text(encoding="utf-8")

    def first_question(self, lang: str) -> str:
        return self.questions[_lang(lang)][0][0]


def _lang(lang: str) -> str:
    return "fr" if lang == "fr" else "en"


@lru_cache(maxsize=1)
def load_presets() -> tuple[SourcePreset, ...]:
    data = json.loads((SOURCES_DIR / "presets.json").read_text(encoding="utf-8"))
    return tuple(SourcePreset(p["id"], dict(p["title"]),
                              {lang: tuple((q["q"], q["expect"]) for q in qs) for lang, qs in p["questions"].items()})
                 for p in data["presets"])


def preset(preset_id: str) -> SourcePreset | None:
    return next((p for p in load_presets() if p.id == preset_id), None)
