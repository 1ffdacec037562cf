"""The bundled task sets (``assets/problems/``), custom tasks, few-shot pools and prompt templates."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from engine.techniques import extraction
from engine.techniques.extraction import Answer

PROBLEMS_DIR = Path(__file__).resolve().parent.parent.parent / "assets" / "problems"
LANGS = ("fr", "en")
KINDS = ("number", "label", "text")
CUSTOM = "custom"


@dataclass(frozen=True)
class Task:
    """One question in one language, with what a correct answer looks like."""

    id: str
    group: str  # arithmetic | sentiment | topic | extraction | custom
    kind: str  # number | label | text
    lang: str
    question: str
    answer: float | str | None = None  # None: nothing to grade against (custom task without answer)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # label in `lang` → accepted spellings
    steps: int | None = None

    def extract(self, text: str) -> Answer:
        return extraction.extract(text, self.kind, self.lang, self.labels)

    def grade(self, answer: Answer) -> bool | None:
        return extraction.is_correct(answer, self.kind, self.answer, self.lang, self.labels)

    def expected_display(self) -> str:
        if self.answer is None:
            return "—"
        if isinstance(self.answer, float):
            return Answer(key="", value=self.answer).display(self.lang)
        return str(self.answer)

    def as_dict(self) -> dict:
        return {"id": self.id, "group": self.group, "kind": self.kind, "lang": self.lang, "question": self.question,
                "answer": self.answer, "labels": list(self.labels), "steps": self.steps}


@dataclass(frozen=True)
class Example:
    question: str
    answer: str
    cot: str


@lru_cache(maxsize=None)
def _load(name: str) -> dict:
    return json.loads((PROBLEMS_DIR / name).read_text(encoding="utf-8"))


def templates(lang: str) -> dict[str, str]:
    return _load("prompts.json")["fr" if lang == "fr" else "en"]


def _labels(group: str, lang: str) -> dict[str, tuple[str, ...]]:
    entries = _load("problems.json")["labels"].get(group, [])
    return {e[lang]: tuple(e.get("aliases", [])) for e in entries}


def _task(raw: dict, lang: str) -> Task:
    answer = raw["answer"]
    if isinstance(answer, dict):
        answer = answer[lang]
    elif isinstance(answer, (int, float)):
        answer = float(answer)
    return Task(id=raw["id"], group=raw["group"], kind=raw["kind"], lang=lang, question=raw[lang], answer=answer,
                labels=_labels(raw["group"], lang), steps=raw.get("steps"))


def all_tasks(lang: str, kinds: Sequence[str] | None = None) -> list[Task]:
    """Every bundled task in ``lang`` (optionally only some kinds), in file order."""
    out = [_task(raw, lang) for raw in _load("problems.json")["problems"]]
    return [t for t in out if not kinds or t.kind in kinds]


def get_task(problem_id: str, lang: str) -> Task:
    for raw in _load("problems.json")["problems"]:
        if raw["id"] == problem_id:
            return _task(raw, lang)
    from engine.errors import UserError

    raise UserError("tech.err_unknown_problem", problem=problem_id)


def custom_task(question: str, lang: str, expected: str = "", kind: str = "number") -> Task:
    """A task typed by the user; ``expected`` (optional) is graded like a bundled answer."""
    kind = kind if kind in ("number", "text") else "number"
    expected = (expected or "").strip()
    answer: float | str | None = None
    if expected:
        answer = extraction.parse_number(expected, lang) if kind == "number" else expected
        if answer is None:
            from engine.errors import UserError

            raise UserError("tech.err_expected_not_number", expected=expected)
    return Task(id=CUSTOM, group=CUSTOM, kind=kind, lang=lang, question=question.strip(), answer=answer)


def pool_group(task: Task) -> str:
    if task.group in _load("examples.json") and task.group != CUSTOM:
        return task.group
    return "arithmetic" if task.kind == "number" else "extraction"


def examples(task: Task) -> list[Example]:
    """The few-shot pool for this task's group and language."""
    pool = _load("examples.json")[pool_group(task)]
    lang = "fr" if task.lang == "fr" else "en"
    return [Example(**entry[lang]) for entry in pool]


def role_text(task: Task) -> str:
    tpl = templates(task.lang)
    return tpl.get(f"role_{task.group}") or tpl["role_custom"]


def answer_shape(task: Task) -> str:
    tpl = templates(task.lang)
    return tpl[f"shape_{task.kind}"].format(labels=", ".join(task.labels))


def benchmark_tasks(lang: str, kinds: Sequence[str], n: int) -> list[Task]:
    """The first ``n`` tasks of the chosen kinds, taken in turn from each kind (file order within one)."""
    by_kind = [all_tasks(lang, [k]) for k in KINDS if k in kinds]
    out: list[Task] = []
    while len(out) < n and any(by_kind):
        for queue in by_kind:
            if queue and len(out) < n:
                out.append(queue.pop(0))
    return out
