"""The prompting techniques, every model call recorded.

Each technique is written as a small coroutine (a Python generator): it *yields* an :class:`Ask`
(one or more chat prompts, the sampling settings, how many samples per prompt) and receives the
resulting :class:`Call` records, until it *returns* its :class:`Outcome`. A driver (:func:`drive`)
runs many such coroutines together: at each round it merges the asks that share sampling settings
into **one** ``Generator.generate`` call. So self-consistency's N samples are one batched call,
and a benchmark advances all its problems in lockstep, one batched call per step.

Techniques never see a model: they talk to a :class:`Generator` — :class:`EngineGenerator` over
``engine.generation.generate_many`` in the app, a scripted one in the unit tests.
"""
from __future__ import annotations

import collections.abc
import random
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Protocol, Sequence

from engine import leases
from engine.generation import SamplingParams
from engine.techniques import tasks as task_sets
from engine.techniques.extraction import NONE, Answer, numbers
from engine.techniques.tasks import Task
from engine.techniques.voting import VoteResult, majority_vote

TECHNIQUES = ("zero_shot", "explicit", "few_shot", "zero_shot_cot", "few_shot_cot", "role",
              "self_consistency", "least_to_most", "self_refine", "tree_of_thoughts")
Messages = list[dict]


# =============================================================================== generator protocol
@dataclass
class Generation:
    """One generated sequence and the exact prompt it came from."""

    text: str
    n_tokens: int
    seconds: float
    stop_reason: str
    prompt_text: str
    prompt_tokens: int
    prompt_index: int = 0
    sample_index: int = 0
    note: str | None = None  # e.g. "system_merged" when the template has no system role


class Generator(Protocol):
    """What a technique needs from a model."""

    def render(self, messages: Messages) -> str:
        """The prompt text after the chat template (special tokens visible)."""

    def generate(self, prompts: Sequence[Messages], params: SamplingParams, n_per_prompt: int = 1,
                 stop: threading.Event | None = None) -> list[Generation]:
        """All prompts × ``n_per_prompt`` samples, prompt-major (prompt i, sample j at i·n + j)."""


def split_system(messages: Messages) -> tuple[str | None, Messages]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return (system or None), [m for m in messages if m["role"] != "system"]


class EngineGenerator:
    """The real generator: the handle's chat template, then one ``generate_many`` batch per call."""

    def __init__(self, handle, on_step: Callable[[int, int], None] | None = None,
                 on_wait: Callable[[int], None] | None = None) -> None:
        self.handle = handle
        self.on_step = on_step
        self.on_wait = on_wait  # requests queued ahead of this call's, while it waits for memory
        self.calls = 0

    def prepare(self, messages: Messages):
        system, turns = split_system(messages)
        return self.handle.prepare_chat(turns, system=system)

    def render(self, messages: Messages) -> str:
        return self.prepare(messages).text

    def generate(self, prompts: Sequence[Messages], params: SamplingParams, n_per_prompt: int = 1,
                 stop: threading.Event | None = None) -> list[Generation]:
        from engine.generation import generate_many

        prepared = [self.prepare(m) for m in prompts]
        self.calls += 1
        outs = generate_many(self.handle, prepared, params, n_per_prompt=n_per_prompt, stop=stop,
                             on_step=self.on_step, on_wait=self.on_wait)
        outs = sorted(outs, key=lambda o: (o.prompt_index, o.sample_index))
        return [Generation(text=o.text, n_tokens=o.n_tokens, seconds=o.seconds, stop_reason=o.stop_reason,
                           prompt_text=o.prompt.text, prompt_tokens=o.prompt.n_tokens, prompt_index=o.prompt_index,
                           sample_index=o.sample_index, note=o.prompt.note)
                for o in outs]


# =============================================================================== records
@dataclass(frozen=True)
class Settings:
    """Technique parameters; ``params`` are the sampling settings of ordinary calls."""

    k_examples: int = 3
    shuffle: bool = False
    shuffle_seed: int = 0
    n_samples: int = 5
    sample_temperature: float = 0.8
    rounds: int = 1
    k_thoughts: int = 3
    depth: int = 2
    max_subquestions: int = 4
    score_tokens: int = 8
    params: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=256, greedy=True))

    def sampled(self) -> SamplingParams:
        """Self-consistency paths and tree-of-thoughts proposals: sampled at ``sample_temperature``."""
        return replace(self.params, greedy=False, temperature=max(self.sample_temperature, 1e-3))

    def scoring(self) -> SamplingParams:
        return replace(self.params, greedy=True, max_new_tokens=max(1, min(self.params.max_new_tokens, self.score_tokens)))


@dataclass
class Call:
    """One generated sequence of a run, in order."""

    index: int  # 1-based position in the run
    step: str  # answer | sample | decompose | subquestion | final | critique | revise | propose | score
    info: dict
    messages: Messages
    prompt: str  # after the chat template
    output: str
    prompt_tokens: int
    n_tokens: int
    seconds: float
    stop_reason: str
    batch: int  # which generate() call of the drive produced it
    sample_index: int = 0
    answer: Answer | None = None  # extracted when this call proposes an answer
    note: str | None = None

    def as_dict(self) -> dict:
        return {"index": self.index, "step": self.step, "info": self.info, "messages": self.messages,
                "prompt": self.prompt, "output": self.output, "prompt_tokens": self.prompt_tokens,
                "tokens": self.n_tokens, "seconds": round(self.seconds, 4), "stop_reason": self.stop_reason,
                "batch": self.batch, "sample_index": self.sample_index,
                "answer": self.answer.as_dict() if self.answer else None, "note": self.note}


@dataclass
class Outcome:
    answer: Answer
    vote: VoteResult | None = None
    details: dict = field(default_factory=dict)


@dataclass
class Run:
    """A technique applied to one task: every call, the final answer and whether it is right."""

    technique: str
    task: Task
    settings: Settings = field(default_factory=Settings)
    calls: list[Call] = field(default_factory=list)
    answer: Answer = NONE
    correct: bool | None = None
    vote: VoteResult | None = None
    details: dict = field(default_factory=dict)
    finished: bool = False
    stopped: bool = False
    wall_seconds: float = 0.0

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.calls)

    @property
    def generated_tokens(self) -> int:
        return sum(c.n_tokens for c in self.calls)

    @property
    def batches(self) -> int:
        return len({c.batch for c in self.calls})

    def as_dict(self) -> dict:
        s = self.settings
        return {"technique": self.technique, "task": self.task.as_dict(), "answer": self.answer.as_dict(),
                "answer_display": self.answer.display(self.task.lang), "correct": self.correct,
                "finished": self.finished, "stopped": self.stopped, "calls": [c.as_dict() for c in self.calls],
                "n_calls": len(self.calls), "batches": self.batches, "prompt_tokens": self.prompt_tokens,
                "generated_tokens": self.generated_tokens, "wall_seconds": round(self.wall_seconds, 3),
                "vote": self.vote.as_dict() if self.vote else None, "details": self.details,
                "settings": {"k_examples": s.k_examples, "shuffle": s.shuffle, "shuffle_seed": s.shuffle_seed,
                             "n_samples": s.n_samples, "sample_temperature": s.sample_temperature,
                             "rounds": s.rounds, "k_thoughts": s.k_thoughts, "depth": s.depth,
                             "params": dict(s.params.__dict__)}}


@dataclass
class Ask:
    """What a technique wants generated next."""

    step: str
    prompts: list[Messages]
    params: SamplingParams
    n: int = 1
    info: list[dict] | None = None  # one per prompt
    extract: bool = False


Flow = collections.abc.Generator[Ask, list[list[Call]], Outcome]


# =============================================================================== prompt helpers
def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def pick_examples(task: Task, s: Settings) -> tuple[list[int], list[task_sets.Example]]:
    """The first ``k`` examples of the pool; ``shuffle`` reorders those k (seeded) to show order effects."""
    pool = task_sets.examples(task)
    idx = list(range(min(max(0, s.k_examples), len(pool))))
    if s.shuffle:
        random.Random(s.shuffle_seed).shuffle(idx)
    return idx, [pool[i] for i in idx]


def few_shot_messages(task: Task, s: Settings, cot: bool) -> tuple[Messages, list[int]]:
    tpl = task_sets.templates(task.lang)
    idx, chosen = pick_examples(task, s)
    msgs: Messages = []
    for ex in chosen:
        msgs += [user(ex.question), assistant(ex.cot if cot else tpl["answer_line"].format(answer=ex.answer))]
    return msgs + [user(task.question)], idx


def explicit_text(task: Task) -> str:
    return task_sets.templates(task.lang)["explicit"].format(shape=task_sets.answer_shape(task), question=task.question)


def cot_text(task: Task) -> str:
    return task_sets.templates(task.lang)["zero_shot_cot"].format(shape=task_sets.answer_shape(task),
                                                                  question=task.question)


_SUBQ_MARKER = re.compile(r"^\s*(?:(?:sub-?question|sous-question|q)\s*\d+\s*[:.)-]|\d+\s*[.):-]|[-*•])\s*(.+)$",
                          re.IGNORECASE)


def parse_subquestions(plan: str, limit: int) -> list[str]:
    """Numbered or bulleted lines of the plan (else lines ending in "?"), at most ``limit``."""
    lines = [ln.strip() for ln in (plan or "").splitlines() if ln.strip()]
    marked = [m.group(1).strip() for ln in lines for m in [_SUBQ_MARKER.match(ln)] if m and m.group(1).strip()]
    found = marked or [ln for ln in lines if ln.endswith("?")]
    return found[:max(1, limit)]


def parse_score(text: str) -> float | None:
    """The first number of a scoring reply, if it lies in 0–10."""
    for value, _ in numbers(text or "", "en"):
        return value if 0 <= value <= 10 else None
    return None


def first_paragraph(text: str) -> str:
    """A proposed thought is one step: keep its first paragraph (models often go on)."""
    return (text or "").strip().split("\n\n")[0].strip()


def path_text(task: Task, steps: Sequence[str]) -> str:
    tpl = task_sets.templates(task.lang)
    if not steps:
        return ""
    return tpl["tot_path_header"] + "".join(tpl["tot_path_item"].format(i=i + 1, step=st) for i, st in enumerate(steps))


# =============================================================================== techniques
def _one_call(messages: Messages, s: Settings, details: dict | None = None) -> Flow:
    calls = yield Ask("answer", [messages], s.params, extract=True)
    return Outcome(calls[0][0].answer, details=details or {})


def zero_shot(task: Task, s: Settings) -> Flow:
    return (yield from _one_call([user(task.question)], s))


def explicit(task: Task, s: Settings) -> Flow:
    return (yield from _one_call([user(explicit_text(task))], s))


def few_shot(task: Task, s: Settings) -> Flow:
    msgs, idx = few_shot_messages(task, s, cot=False)
    return (yield from _one_call(msgs, s, {"examples": idx}))


def zero_shot_cot(task: Task, s: Settings) -> Flow:
    return (yield from _one_call([user(cot_text(task))], s))


def few_shot_cot(task: Task, s: Settings) -> Flow:
    msgs, idx = few_shot_messages(task, s, cot=True)
    return (yield from _one_call(msgs, s, {"examples": idx}))


def role(task: Task, s: Settings) -> Flow:
    """The explicit-instruction prompt plus a system role: the only difference is the role."""
    msgs = [{"role": "system", "content": task_sets.role_text(task)}, user(explicit_text(task))]
    return (yield from _one_call(msgs, s, {"role": task_sets.role_text(task)}))


def self_consistency(task: Task, s: Settings) -> Flow:
    """N chain-of-thought paths sampled in one batch; majority vote over their extracted answers."""
    if s.k_examples > 0:
        msgs, idx = few_shot_messages(task, s, cot=True)
    else:
        msgs, idx = [user(cot_text(task))], []
    n = max(1, s.n_samples)
    calls = yield Ask("sample", [msgs], s.sampled(), n=n, extract=True)
    paths = calls[0]
    vote = majority_vote([c.answer for c in paths])
    answer = next((c.answer for c in paths if c.answer and c.answer.key == vote.winner), NONE)
    return Outcome(answer, vote=vote, details={"examples": idx})


def least_to_most(task: Task, s: Settings) -> Flow:
    """Decompose, then answer the sub-questions in order (each answer fed forward), then conclude."""
    tpl = task_sets.templates(task.lang)
    first = yield Ask("decompose", [[user(tpl["ltm_decompose"].format(question=task.question))]], s.params)
    plan = first[0][0].output.strip()
    subs = parse_subquestions(plan, s.max_subquestions)
    fallback = not subs
    subs = subs or [task.question]
    solved: list[tuple[str, str]] = []

    def solved_text() -> str:
        if not solved:
            return ""
        return tpl["ltm_solved_header"] + "".join(
            tpl["ltm_solved_item"].format(i=i + 1, sub=q, answer=a) for i, (q, a) in enumerate(solved))

    for i, sub in enumerate(subs):
        text = tpl["ltm_sub"].format(question=task.question, plan=plan, solved=solved_text(), i=i + 1, sub=sub)
        got = yield Ask("subquestion", [[user(text)]], s.params, info=[{"i": i + 1, "of": len(subs), "sub": sub}])
        solved.append((sub, got[0][0].output.strip()))
    final_text = tpl["ltm_final"].format(question=task.question, solved=solved_text(), shape=task_sets.answer_shape(task))
    final = yield Ask("final", [[user(final_text)]], s.params, extract=True)
    return Outcome(final[0][0].answer, details={"subquestions": subs, "fallback": fallback,
                                                  "answers": [a for _, a in solved]})


def self_refine(task: Task, s: Settings) -> Flow:
    """Answer, then ``rounds`` × (critique the current answer, revise it with the critique)."""
    tpl = task_sets.templates(task.lang)
    first = yield Ask("answer", [[user(cot_text(task))]], s.params, extract=True)
    current = first[0][0]
    history = [current.answer.key if current.answer else None]
    for r in range(1, max(0, s.rounds) + 1):
        crit = yield Ask("critique", [[user(tpl["refine_critique"].format(question=task.question,
                                                                          answer=current.output.strip()))]],
                         s.params, info=[{"round": r}])
        critique = crit[0][0].output.strip()
        rev = yield Ask("revise", [[user(tpl["refine_revise"].format(question=task.question, answer=current.output.strip(),
                                                                     critique=critique, shape=task_sets.answer_shape(task)))]],
                        s.params, info=[{"round": r}], extract=True)
        current = rev[0][0]
        history.append(current.answer.key if current.answer else None)
    return Outcome(current.answer or NONE, details={"answers_by_round": history})


def tree_of_thoughts(task: Task, s: Settings) -> Flow:
    """Breadth k, depth d, beam 1: propose k next steps (one sampled batch), let the model score each
    (one batch), keep the best (first one on ties), repeat; then answer from the best path."""
    tpl = task_sets.templates(task.lang)
    k = max(1, s.k_thoughts)
    path: list[str] = []
    levels = []
    for depth in range(1, max(1, s.depth) + 1):
        proposal = tpl["tot_propose"].format(question=task.question, path=path_text(task, path))
        props = yield Ask("propose", [[user(proposal)]], s.sampled(), n=k, info=[{"depth": depth}])
        thoughts = [first_paragraph(c.output) for c in props[0]]
        score_prompts = [[user(tpl["tot_score"].format(question=task.question, path=path_text(task, path + [th])))]
                         for th in thoughts]
        rated = yield Ask("score", score_prompts, s.scoring(),
                          info=[{"depth": depth, "thought": j + 1} for j in range(len(thoughts))])
        scores = [parse_score(r[0].output) for r in rated]
        best = max(range(len(thoughts)), key=lambda j: (scores[j] if scores[j] is not None else -1, -j))
        for j, r in enumerate(rated):
            r[0].info["score"] = scores[j]
            r[0].info["best"] = j == best
        levels.append({"depth": depth, "thoughts": thoughts, "scores": scores, "best": best})
        path.append(thoughts[best])
    final_text = tpl["tot_final"].format(question=task.question, path=path_text(task, path),
                                         shape=task_sets.answer_shape(task))
    final = yield Ask("final", [[user(final_text)]], s.params, extract=True)
    return Outcome(final[0][0].answer, details={"levels": levels, "path": path})


# The Settings fields each technique reads (besides ``params``): the UI shows only these.
SETTINGS_USED: dict[str, tuple[str, ...]] = {
    "zero_shot": (), "explicit": (), "zero_shot_cot": (), "role": (), "least_to_most": (),
    "few_shot": ("k_examples", "shuffle", "shuffle_seed"),
    "few_shot_cot": ("k_examples", "shuffle", "shuffle_seed"),
    # k > 0: the paths start from worked chain-of-thought examples
    "self_consistency": ("n_samples", "sample_temperature", "k_examples", "shuffle", "shuffle_seed"),
    "self_refine": ("rounds",),
    "tree_of_thoughts": ("k_thoughts", "depth", "sample_temperature"),
}

FLOWS: dict[str, Callable[[Task, Settings], Flow]] = {
    "zero_shot": zero_shot, "explicit": explicit, "few_shot": few_shot, "zero_shot_cot": zero_shot_cot,
    "few_shot_cot": few_shot_cot, "role": role, "self_consistency": self_consistency,
    "least_to_most": least_to_most, "self_refine": self_refine, "tree_of_thoughts": tree_of_thoughts,
}


# =============================================================================== driver
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
