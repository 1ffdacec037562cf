"""Prompt fragility: one few-shot prompt run under K variants on a problem set.

Variant 1 is the reference prompt: the first ``k`` worked examples of the task's pool, written as
``Question: … / Answer: …`` blocks separated by a blank line, then the problem and an open
``Answer:``. Every other variant changes exactly one thing (its ``kind``), so a change in accuracy
comes from that thing alone:

* ``order`` — the same k examples in another order;
* ``whitespace`` — the same text with other spaces and line breaks (:data:`STYLES`);
* ``labels`` — other field names ("Q: / A:", "Input: / Output:", …: :data:`FIELDS`);
* ``choice`` — k other examples of the pool, in pool order.

Variants take the chosen kinds in turn (reference, order 1, whitespace 1, labels 1, choice 1,
order 2, …); orders and choices are drawn with the seed. Every (variant, problem) is one row: the
rows go to the engine in chunks of whole problems (every variant of a problem in the same batch),
so partial results compare the variants on the same problems and Stop keeps finished rows only.
"""
from __future__ import annotations

import csv
import itertools
import math
import random
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Sequence

from engine.errors import UserError
from engine.generation import SamplingParams
from engine.techniques import tasks as task_sets
from engine.techniques.extraction import Answer
from engine.techniques.generator import Generator, Messages
from engine.techniques.tasks import Task

PERTURBATIONS = ("order", "whitespace", "labels", "choice")
ROWS_PER_CHUNK = 32  # engine.generation.MAX_BATCH: one decode batch


@dataclass(frozen=True)
class Style:
    """Where the spaces and line breaks go (the text itself never changes)."""

    after_colon: str = " "  # between "Question:" and the question
    line: str = "\n"  # between the question and its answer
    block: str = "\n\n"  # between two examples
    line_end: str = ""  # at the end of every line (the prompt's own end excepted: templates may trim it)


STYLES = (
    Style(),  # the reference
    Style(block="\n"),  # no blank line between the examples
    Style(block="\n\n\n\n"),  # three blank lines between them
    Style(after_colon="  "),  # two spaces after each colon
    Style(after_colon="\n"),  # each text on the line below its label
    Style(line_end="  "),  # two spaces at the end of every line
    Style(after_colon="\t"),  # a tab after each colon
)
FIELDS = {  # (question label, answer label); the first pair is the reference
    "en": (("Question", "Answer"), ("Q", "A"), ("Input", "Output"), ("Problem", "Solution")),
    "fr": (("Question", "Réponse"), ("Q", "R"), ("Entrée", "Sortie"), ("Problème", "Solution")),
}


@dataclass(frozen=True)
class FragilitySettings:
    k_examples: int = 3
    variants: int = 6  # K, the reference included
    perturbations: tuple[str, ...] = PERTURBATIONS
    seed: int = 0  # draws the orders and the choices of examples
    params: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=24, greedy=True))


@dataclass(frozen=True)
class Variant:
    number: int  # 1-based; 1 is the reference
    kind: str  # reference | order | whitespace | labels | choice
    level: int  # which alternative of its kind (0: the reference's)

    @property
    def name(self) -> str:
        return f"V{self.number}"

    def as_dict(self) -> dict:
        return {"variant": self.name, "kind": self.kind, "level": self.level}


# ====================================================================================== examples
def shots(task: Task, k: int) -> int:
    """How many examples a prompt for ``task`` holds: k, or the whole pool when it is smaller."""
    return max(1, min(k, len(task_sets.examples(task))))


@lru_cache(maxsize=256)
def _orders(k: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """Every order of k examples but the reference's, shuffled with the seed (k ≤ 8: 40,319 at most)."""
    perms = [p for p in itertools.permutations(range(k)) if p != tuple(range(k))]
    random.Random(f"order-{seed}").shuffle(perms)
    return tuple(perms)


@lru_cache(maxsize=256)
def _choices(n: int, k: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """Every set of k examples out of n but the reference's (the first k), shuffled with the seed."""
    sets = [c for c in itertools.combinations(range(n), k) if c != tuple(range(k))]
    random.Random(f"choice-{seed}").shuffle(sets)
    return tuple(sets)


def example_indices(task: Task, variant: Variant, settings: FragilitySettings) -> list[int]:
    """Which pool examples the variant's prompt for ``task`` shows, in the order it shows them."""
    k = shots(task, settings.k_examples)
    if variant.kind == "order":
        return list(_orders(k, settings.seed)[variant.level - 1])
    if variant.kind == "choice":
        return list(_choices(len(task_sets.examples(task)), k, settings.seed)[variant.level - 1])
    return list(range(k))


def capacity(kind: str, tasks: Sequence[Task], settings: FragilitySettings) -> int:
    """How many variants of ``kind`` differ from the reference for every task of the set."""
    if kind == "whitespace":
        return len(STYLES) - 1
    if kind == "labels":
        return len(FIELDS["en"]) - 1
    counts = []
    for task in tasks:
        k, n = shots(task, settings.k_examples), len(task_sets.examples(task))
        counts.append(math.factorial(k) - 1 if kind == "order" else math.comb(n, k) - 1)
    return min(counts) if counts else 0


def plan_variants(tasks: Sequence[Task], settings: FragilitySettings) -> list[Variant]:
    """The reference, then the chosen kinds in turn until there are ``settings.variants``; a kind that
    has no alternative left is skipped. Raises ``UserError`` when fewer than K variants can be made."""
    kinds = [k for k in PERTURBATIONS if k in settings.perturbations]
    if not kinds:
        raise UserError("tech.frag_err_no_perturbation")
    if not tasks:
        raise UserError("tech.err_no_tasks")
    room = {k: capacity(k, tasks, settings) for k in kinds}
    possible = 1 + sum(room.values())
    if settings.variants > possible:
        raise UserError("tech.frag_err_variants", n=settings.variants, max=possible, k=settings.k_examples)
    variants = [Variant(1, "reference", 0)]
    level = 1
    while len(variants) < settings.variants:
        for kind in kinds:
            if level <= room[kind] and len(variants) < settings.variants:
                variants.append(Variant(len(variants) + 1, kind, level))
        level += 1
    return variants


# ====================================================================================== prompts
def prompt_text(task: Task, variant: Variant, settings: FragilitySettings) -> str:
    """The variant's few-shot prompt for ``task`` (one user turn; the chat template comes after)."""
    lang = "fr" if task.lang == "fr" else "en"
    style = STYLES[variant.level] if variant.kind == "whitespace" else STYLES[0]
    q_label, a_label = FIELDS[lang][variant.level] if variant.kind == "labels" else FIELDS[lang][0]
    colon = " :" if lang == "fr" else ":"

    def field_text(label: str, text: str) -> str:
        return f"{label}{colon}{style.after_colon}{text}"

    pool = task_sets.examples(task)
    blocks = [field_text(q_label, pool[i].question) + style.line + field_text(a_label, pool[i].answer)
              for i in example_indices(task, variant, settings)]
    blocks.append(field_text(q_label, task.question) + style.line + f"{a_label}{colon}")
    text = style.block.join(blocks)
    return text.replace("\n", style.line_end + "\n") if style.line_end else text


def messages(task: Task, variant: Variant, settings: FragilitySettings) -> Messages:
    return [{"role": "user", "content": prompt_text(task, variant, settings)}]


# ====================================================================================== results
@dataclass
class FragilityRow:
    variant: Variant
    task: Task
    examples: list[int]
    prompt: str  # after the chat template
    output: str
    answer: Answer
    correct: bool | None
    prompt_tokens: int
    n_tokens: int
    seconds: float
    stop_reason: str


@dataclass
class VariantStats:
    variant: Variant
    runs: int = 0
    correct: int = 0
    no_answer: int = 0
    changed: int = 0  # problems whose extracted answer is not the reference's answer to the same problem
    prompt_tokens: int = 0
    generated_tokens: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.runs if self.runs else 0.0

    @property
    def changed_share(self) -> float:
        return self.changed / self.runs if self.runs else 0.0

    def as_dict(self) -> dict:
        return {**self.variant.as_dict(), "problems": self.runs, "correct": self.correct,
                "accuracy": round(self.accuracy, 4), "no_answer": self.no_answer, "changed": self.changed,
                "changed_share": round(self.changed_share, 4), "prompt_tokens": self.prompt_tokens,
                "generated_tokens": self.generated_tokens}


@dataclass(frozen=True)
class Spread:
    low: float
    high: float
    worst: Variant
    best: Variant
    reference: float | None  # the reference's accuracy

    @property
    def points(self) -> float:
        return self.high - self.low


@dataclass
class FragilityResult:
    variants: list[Variant]
    tasks: list[Task]
    settings: FragilitySettings
    rows: list[FragilityRow] = field(default_factory=list)  # finished rows only
    seconds: float = 0.0
    stopped: bool = False
    done: bool = False

    @property
    def total(self) -> int:
        return len(self.variants) * len(self.tasks)

    def stats(self) -> list[VariantStats]:
        out = {v.number: VariantStats(v) for v in self.variants}
        reference = {row.task.id: row.answer.key for row in self.rows if row.variant.kind == "reference"}
        for row in self.rows:
            st = out[row.variant.number]
            st.runs += 1
            st.correct += bool(row.correct)
            st.no_answer += not row.answer.ok
            st.changed += row.answer.key != reference.get(row.task.id, row.answer.key)
            st.prompt_tokens += row.prompt_tokens
            st.generated_tokens += row.n_tokens
        return list(out.values())

    def spread(self) -> Spread | None:
        """Lowest and highest accuracy over the variants that have results (ties: the first variant)."""
        stats = [s for s in self.stats() if s.runs]
        if not stats:
            return None
        worst = min(stats, key=lambda s: (s.accuracy, s.variant.number))
        best = max(stats, key=lambda s: (s.accuracy, -s.variant.number))
        ref = next((s.accuracy for s in stats if s.variant.kind == "reference"), None)
        return Spread(worst.accuracy, best.accuracy, worst.variant, best.variant, ref)

    def example_prompt(self, variant: Variant) -> str | None:
        """The variant's exact prompt (after the chat template) for the first problem it ran."""
        return next((r.prompt for r in self.rows if r.variant.number == variant.number), None)

    def run_rows(self) -> list[dict]:
        return [{"variant": r.variant.name, "kind": r.variant.kind, "level": r.variant.level, "task": r.task.id,
                 "lang": r.task.lang, "task_kind": r.task.kind, "examples": " ".join(str(i + 1) for i in r.examples),
                 "expected": r.task.expected_display(), "extracted": r.answer.display(r.task.lang),
                 "rule": r.answer.rule, "correct": r.correct, "prompt_tokens": r.prompt_tokens,
                 "generated_tokens": r.n_tokens, "seconds": round(r.seconds, 3), "stop_reason": r.stop_reason,
                 "prompt": r.prompt, "output": r.output} for r in self.rows]

    def write_csv(self, folder: str | Path) -> tuple[Path, Path]:
        """Two CSV files: one row per variant (with its exact prompt for the first problem), one per
        (variant, problem) with the prompt and the model's output."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        summary, runs = folder / "fragility_variants.csv", folder / "fragility_runs.csv"
        variant_rows = [{**s.as_dict(), "example_prompt": self.example_prompt(s.variant) or ""} for s in self.stats()]
        _write(summary, variant_rows, VARIANT_COLUMNS)
        _write(runs, self.run_rows(), RUN_COLUMNS)
        return summary, runs


VARIANT_COLUMNS = ["variant", "kind", "level", "problems", "correct", "accuracy", "no_answer", "changed",
                   "changed_share", "prompt_tokens", "generated_tokens", "example_prompt"]
RUN_COLUMNS = ["variant", "kind", "level", "task", "lang", "task_kind", "examples", "expected", "extracted", "rule",
               "correct", "prompt_tokens", "generated_tokens", "seconds", "stop_reason", "prompt", "output"]


def _write(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# ====================================================================================== running
ProgressFn = Callable[[int, int], None]  # (finished rows, all rows)


def chunk_size(n_variants: int) -> int:
    """Rows per engine call: as many whole problems (all their variants) as fit in one batch."""
    return max(1, ROWS_PER_CHUNK // max(1, n_variants)) * max(1, n_variants)


def run_fragility(generator: Generator, tasks: Sequence[Task], settings: FragilitySettings,
                  variants: Sequence[Variant] | None = None, stop: threading.Event | None = None,
                  on_progress: ProgressFn | None = None) -> Iterator[FragilityResult]:
    """Yields the (growing) result after each engine call, and once more at the end."""
    variants = list(variants) if variants is not None else plan_variants(tasks, settings)
    result = FragilityResult(variants=variants, tasks=list(tasks), settings=settings)
    pairs = [(task, v) for task in result.tasks for v in variants]  # problem-major
    size = chunk_size(len(variants))
    started = time.perf_counter()
    for start in range(0, len(pairs), size):
        if stop is not None and stop.is_set():
            break
        chunk = pairs[start:start + size]
        gens = generator.generate([messages(task, v, settings) for task, v in chunk], settings.params, 1, stop)
        cut = {id(task) for (task, _), gen in zip(chunk, gens) if gen.stop_reason == "stopped"}
        for (task, v), gen in zip(chunk, gens):
            if id(task) in cut:  # a problem counts only with all its variants (the accuracies stay comparable)
                continue
            answer = task.extract(gen.text)
            result.rows.append(FragilityRow(variant=v, task=task, examples=example_indices(task, v, settings),
                                            prompt=gen.prompt_text, output=gen.text, answer=answer,
                                            correct=task.grade(answer), prompt_tokens=gen.prompt_tokens,
                                            n_tokens=gen.n_tokens, seconds=gen.seconds,
                                            stop_reason=gen.stop_reason))
        result.seconds = time.perf_counter() - started
        if on_progress:
            on_progress(len(result.rows), result.total)
        yield result
    result.seconds = time.perf_counter() - started
    result.stopped = len(result.rows) < result.total
    result.done = True
    yield result


def run_all(*args, **kwargs) -> FragilityResult:
    result = None
    for result in run_fragility(*args, **kwargs):
        pass
    return result
