"""The records of a technique's run: its settings, every call, the outcome, and the :class:`Ask`
a technique yields to have something generated."""
from __future__ import annotations

import collections.abc
from dataclasses import dataclass, field, replace

from engine.generation import SamplingParams
from engine.techniques.extraction import NONE, Answer
from engine.techniques.generator import Messages
from engine.techniques.tasks import Task
from engine.techniques.voting import VoteResult


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
    n_chains: int = 3  # ask-me-anything: prompt chains (formats × demo sets)
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
    #          | reformulate | chain_answer (ask-me-anything)
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
                             "n_chains": s.n_chains,
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
