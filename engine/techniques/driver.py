"""Runs many techniques together (:func:`drive`): at each round the asks that share sampling
settings become **one** ``Generator.generate`` call, so self-consistency's N samples are one
batched call, and a benchmark advances all its problems in lockstep, one batched call per step."""
from __future__ import annotations

import threading
import time
from typing import Iterator, Sequence

from engine.models import leases
from engine.techniques.extraction import NONE
from engine.techniques.generator import Generation, Generator
from engine.techniques.records import Ask, Call, Flow, Outcome, Run, Settings
from engine.techniques.tasks import Task
from engine.techniques.techniques import FLOWS


def _finish(run: Run, outcome: Outcome) -> None:
    run.answer = outcome.answer or NONE
    run.vote = outcome.vote
    run.details = outcome.details
    run.correct = run.task.grade(run.answer)
    run.finished = True


def _record(run: Run, ask: Ask, prompt_index: int, gen: Generation, batch: int) -> Call:
    info = dict(ask.info[prompt_index]) if ask.info else {}
    info.setdefault("sample", gen.sample_index + 1)
    info.setdefault("of", ask.n)
    call = Call(index=len(run.calls) + 1, step=ask.step, info=info, messages=ask.prompts[prompt_index],
                prompt=gen.prompt_text, output=gen.text, prompt_tokens=gen.prompt_tokens, n_tokens=gen.n_tokens,
                seconds=gen.seconds, stop_reason=gen.stop_reason, batch=batch, sample_index=gen.sample_index,
                answer=run.task.extract(gen.text) if ask.extract else None, note=gen.note)
    run.calls.append(call)
    return call


def drive(runs: Sequence[Run], generator: Generator, stop: threading.Event | None = None) -> Iterator[int]:
    """Run every run's technique to the end, batching their calls; yields after each generate() call.

    At each round the pending asks are grouped by (sampling settings, samples per prompt) and each
    group becomes one ``generator.generate`` call. ``stop`` is checked before every call and passed
    to it; runs it interrupts are marked ``stopped`` and keep the calls made so far.
    """
    started = time.perf_counter()
    pending: list[tuple[Run, Flow, Ask]] = []
    for run in runs:
        flow = FLOWS[run.technique](run.task, run.settings)
        pending.append((run, flow, next(flow)))
    batch = 0
    model = getattr(generator, "handle", None)
    owner = leases.thread_owner()  # kept: a streaming handler may resume this generator in another thread
    try:
        if model is not None:  # one lease for the whole run: not evicted between two rounds of calls
            leases.acquire(model, owner)
        while pending:
            groups: dict[tuple, list[tuple[Run, Flow, Ask]]] = {}
            for item in pending:
                groups.setdefault((item[2].params, item[2].n), []).append(item)
            pending = []
            for (params, n), members in groups.items():
                if stop is not None and stop.is_set():
                    _halt(members)
                    continue
                prompts = [p for _, _, ask in members for p in ask.prompts]
                gens = generator.generate(prompts, params, n, stop)
                batch += 1
                interrupted = stop is not None and stop.is_set() and any(g.stop_reason == "stopped" for g in gens)
                offset = 0
                for run, flow, ask in members:
                    per_prompt = []
                    for j in range(len(ask.prompts)):
                        row = gens[(offset + j) * n:(offset + j + 1) * n]
                        per_prompt.append([_record(run, ask, j, g, batch) for g in row])
                    offset += len(ask.prompts)
                    if interrupted:
                        _halt([(run, flow, ask)])
                        continue
                    try:
                        pending.append((run, flow, flow.send(per_prompt)))
                    except StopIteration as done:
                        _finish(run, done.value)
                for run in runs:
                    run.wall_seconds = time.perf_counter() - started
                yield batch
    finally:
        if model is not None:
            leases.release(model, owner)
        _halt(pending)
        elapsed = time.perf_counter() - started
        for run in runs:
            run.wall_seconds = elapsed


def _halt(items: Sequence[tuple[Run, Flow, Ask]]) -> None:
    for run, flow, _ in items:
        if not run.finished:
            run.stopped = True
        flow.close()


def run_technique(technique: str, task: Task, generator: Generator, settings: Settings | None = None,
                  stop: threading.Event | None = None) -> Iterator[Run]:
    """One technique on one task; yields the (growing) run after each batch of calls."""
    if technique not in FLOWS:
        raise ValueError(f"unknown technique {technique!r}")
    run = Run(technique=technique, task=task, settings=settings or Settings())
    batches = 0
    for batches in drive([run], generator, stop):
        yield run
    if not batches:  # stopped before the first call
        yield run
