"""Benchmark mode: techniques × tasks → accuracy, tokens and seconds per technique.

For each chunk of tasks, each technique runs on the whole chunk at once (its calls batched across
the tasks by :func:`~engine.techniques.driver.drive`), so a technique's seconds are the wall
time it really took. A stop event ends the benchmark between two batches (and interrupts the
batch in flight); runs it interrupted are left out of the figures, which cover finished runs only.
"""
from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from engine.techniques.tasks import Task
from engine.techniques.driver import drive
from engine.techniques.generator import Generator
from engine.techniques.records import Call, Run, Settings
from engine.techniques.techniques import TECHNIQUES

ProgressFn = Callable[[int, int, str], None]  # (finished runs, total runs, technique now running)
DEFAULT_CHUNK = 16


@dataclass
class TechniqueStats:
    technique: str
    runs: int = 0
    correct: int = 0
    no_answer: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.runs if self.runs else 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generated_tokens

    def per_task(self, value: float) -> float:
        return value / self.runs if self.runs else 0.0

    def as_dict(self) -> dict:
        return {"technique": self.technique, "tasks": self.runs, "correct": self.correct,
                "accuracy": round(self.accuracy, 4), "no_answer": self.no_answer, "calls": self.calls,
                "prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
                "tokens_per_task": round(self.per_task(self.tokens), 1), "seconds": round(self.seconds, 3),
                "seconds_per_task": round(self.per_task(self.seconds), 3)}


@dataclass
class BenchmarkResult:
    techniques: list[str]
    tasks: list[Task]
    runs: list[Run] = field(default_factory=list)  # finished runs only
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per technique
    stopped: bool = False
    done: bool = False

    @property
    def total(self) -> int:
        return len(self.techniques) * len(self.tasks)

    def stats(self) -> list[TechniqueStats]:
        out = {t: TechniqueStats(t, seconds=self.seconds.get(t, 0.0)) for t in self.techniques}
        for run in self.runs:
            st = out[run.technique]
            st.runs += 1
            st.correct += bool(run.correct)
            st.no_answer += not run.answer.ok
            st.calls += len(run.calls)
            st.prompt_tokens += run.prompt_tokens
            st.generated_tokens += run.generated_tokens
        return list(out.values())

    def run_rows(self) -> list[dict]:
        rows = []
        for r in self.runs:
            final = answer_call(r)
            rows.append({"technique": r.technique, "task": r.task.id, "lang": r.task.lang, "kind": r.task.kind,
                         "expected": r.task.expected_display(), "extracted": r.answer.display(r.task.lang),
                         "rule": r.answer.rule, "correct": r.correct, "calls": len(r.calls),
                         "prompt_tokens": r.prompt_tokens, "generated_tokens": r.generated_tokens,
                         "call_seconds": round(sum(c.seconds for c in r.calls), 3),
                         "final_output": final.output if final else "", "outputs": all_outputs(r)})
        return rows

    def write_csv(self, folder: str | Path) -> tuple[Path, Path]:
        """Two CSV files: one row per technique, and one row per (technique, task) with the model's
        outputs (``final_output``: the call the answer was extracted from; ``outputs``: every call)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        summary, runs = folder / "techniques_summary.csv", folder / "techniques_runs.csv"
        _write(summary, [s.as_dict() for s in self.stats()], list(TechniqueStats("").as_dict()))
        _write(runs, self.run_rows(), RUN_COLUMNS)
        return summary, runs


RUN_COLUMNS = ["technique", "task", "lang", "kind", "expected", "extracted", "rule", "correct", "calls",
               "prompt_tokens", "generated_tokens", "call_seconds", "final_output", "outputs"]


def answer_call(run: Run) -> Call | None:
    """The call whose output gave the run's answer: the last one an answer was extracted from, or
    for a vote the first path that reached the winning answer."""
    extracted = [c for c in run.calls if c.answer is not None]
    if run.vote is not None and run.vote.winner is not None:
        return next((c for c in extracted if c.answer.ok and c.answer.key == run.vote.winner), None)
    return extracted[-1] if extracted else (run.calls[-1] if run.calls else None)


def all_outputs(run: Run) -> str:
    """Every call's output in order, each under a ``[#index step]`` line."""
    return "\n\n".join(f"[#{c.index} {c.step}]\n{c.output}" for c in run.calls)


def _write(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def benchmark(generator: Generator, techniques: Sequence[str], tasks: Sequence[Task], settings: Settings,
              stop: threading.Event | None = None, on_progress: ProgressFn | None = None,
              chunk_size: int = DEFAULT_CHUNK) -> Iterator[BenchmarkResult]:
    """Yields the (growing) result after every technique × chunk, and once more at the end."""
    unknown = [t for t in techniques if t not in TECHNIQUES]
    if unknown:
        raise ValueError(f"unknown techniques {unknown}")
    result = BenchmarkResult(techniques=list(techniques), tasks=list(tasks))
    chunk_size = max(1, chunk_size)
    for start in range(0, len(result.tasks), chunk_size):
        chunk = result.tasks[start:start + chunk_size]
        for technique in result.techniques:
            if stop is not None and stop.is_set():
                break
            runs = [Run(technique=technique, task=task, settings=settings) for task in chunk]
            began = time.perf_counter()
            for _ in drive(runs, generator, stop):
                if on_progress:
                    on_progress(len(result.runs) + sum(r.finished for r in runs), result.total, technique)
            result.seconds[technique] = result.seconds.get(technique, 0.0) + time.perf_counter() - began
            result.runs += [r for r in runs if r.finished]
            yield result
        if stop is not None and stop.is_set():
            break
    result.stopped = len(result.runs) < result.total
    result.done = True
    yield result


def run_benchmark(*args, **kwargs) -> BenchmarkResult:
    result = None
    for result in benchmark(*args, **kwargs):
        pass
    return result
