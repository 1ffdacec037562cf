"""Ask-me-anything (Arora et al., 2022): several prompt chains, each reformulating the task in its own
format and then answering its reformulation; the chains' answers are combined by a majority vote.

A chain is ``question()`` then ``answer()``, as in the paper: the model first rewrites the task with a
few-shot prompt (an open question, a sentence with a blank — cloze —, a list of the facts, or for a
classification a yes/no question per candidate label), then answers what it wrote, with the task as
context and the same worked examples answered. Chain ``i`` takes the format ``i mod F`` of its answer
kind and the demos ``(r, r+1)`` with ``r = i div F``, so more chains than formats vary the examples too.
All chains' reformulations are one batched call, all their answers another.

A yes/no chain asks one question per label and votes for the label answered "yes" when exactly one is;
otherwise it abstains. The vote's tie rule is self-consistency's: the answer some chain reached first wins.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from engine.techniques import tasks as task_sets
from engine.techniques.extraction import NONE, Answer, last_phrase_end, normalize
from engine.techniques.records import Ask, Call, Flow, Outcome, Settings
from engine.techniques.tasks import Task
from engine.techniques.voting import majority_vote

DEMOS_PER_PROMPT = 2
MAX_FACT_LINES = 12
_LEADING_LABEL = re.compile(r"^\s*(?:yes/no question|question ferm[ée]e|question|sentence|phrase|facts|faits)\s*:\s*",
                            re.IGNORECASE)
_YES_NO = re.compile(r"(?<!\w)(yes|oui|no|non)(?!\w)")


@lru_cache(maxsize=None)
def _data() -> dict:
    return json.loads((task_sets.PROBLEMS_DIR / "ama.json").read_text(encoding="utf-8"))


def templates(lang: str) -> dict[str, str]:
    return _data()["fr" if lang == "fr" else "en"]


def formats(task: Task) -> list[str]:
    """The chain formats for this task's answer kind, in the order the chains use them."""
    return list(_data()["formats"].get(task.kind, _data()["formats"]["number"]))


def demos(task: Task) -> list[dict]:
    pool = _data()["demos"][task_sets.pool_group(task)]
    return [entry["fr" if task.lang == "fr" else "en"] for entry in pool]


@dataclass
class Chain:
    """One prompt chain: its format, its demos, what it reformulated, answered and voted."""

    number: int  # 1-based
    format: str  # open | cloze | facts | yes_no
    demos: list[int]  # indices into the group's demo pool
    candidates: list[str] = field(default_factory=list)  # yes/no: the labels asked about, in order
    reformulations: list[str] = field(default_factory=list)  # one per prompt (yes/no: one per label)
    fallback: bool = False  # a reformulation was empty: the task itself was used
    replies: list[bool | None] = field(default_factory=list)  # yes/no: each label's yes (True) / no / unclear
    answer: Answer = NONE

    def as_dict(self, lang: str) -> dict:
        return {"chain": self.number, "format": self.format, "demos": [i + 1 for i in self.demos],
                "candidates": self.candidates, "reformulations": self.reformulations, "fallback": self.fallback,
                "replies": self.replies, "answer": self.answer.as_dict(), "answer_display": self.answer.display(lang)}


def plan_chains(task: Task, n_chains: int) -> list[Chain]:
    fmts, pool = formats(task), demos(task)
    chains = []
    for i in range(max(1, n_chains)):
        fmt, rotation = fmts[i % len(fmts)], i // len(fmts)
        picked = [(rotation + j) % len(pool) for j in range(min(DEMOS_PER_PROMPT, len(pool)))]
        candidates = list(task.labels) if fmt == "yes_no" else []
        chains.append(Chain(number=i + 1, format=fmt, demos=picked, candidates=candidates))
    return chains


def rows_per_round(task: Task, settings: Settings) -> int:
    """Prompts in each of AMA's two batched calls (a yes/no chain asks one per label)."""
    return sum(max(1, len(c.candidates)) for c in plan_chains(task, settings.n_chains))


def _demo_block(task: Task, chain: Chain, step: str) -> str:
    tpl = templates(task.lang)[f"demo_{step}_{chain.format}"]
    pool = demos(task)
    return "".join(tpl.format(**pool[i]) for i in chain.demos)


def reformulate_prompt(task: Task, chain: Chain, candidate: str = "") -> str:
    tpl = templates(task.lang)[f"reformulate_{chain.format}"]
    return tpl.format(demos=_demo_block(task, chain, "reformulate"), question=task.question, candidate=candidate)


def answer_prompt(task: Task, chain: Chain, reformulation: str) -> str:
    tpl = templates(task.lang)[f"answer_{chain.format}"]
    return tpl.format(demos=_demo_block(task, chain, "answer"), question=task.question, reformulation=reformulation)


def parse_reformulation(text: str, fmt: str) -> str:
    """The model's reformulation: its first line (facts: the list, up to a blank line), the field
    label it may have repeated removed. Empty when it wrote nothing usable."""
    lines = [ln.rstrip() for ln in (text or "").strip().splitlines()]
    if fmt == "facts":
        kept = []
        for ln in lines:
            if not ln.strip():
                if kept:
                    break
                continue
            kept.append(_LEADING_LABEL.sub("", ln).strip() if not kept else ln.strip())
        return "\n".join(k for k in kept[:MAX_FACT_LINES] if k)
    first = next((ln for ln in lines if ln.strip()), "")
    return _LEADING_LABEL.sub("", first).strip()


def parse_yes_no(text: str) -> bool | None:
    """Yes (True), no (False) or unclear (None): the first yes/oui/no/non after the last answer phrase,
    else the first one of the reply."""
    text = text or ""
    start = last_phrase_end(text)
    for segment in ([text[start:]] if start is not None else []) + [text]:
        m = _YES_NO.search(normalize(segment))
        if m:
            return m.group(1) in ("yes", "oui")
    return None


def _yes_no_answer(task: Task, reply: bool | None) -> Answer | None:
    if reply is None:
        return None
    word = templates(task.lang)["yes" if reply else "no"]
    return Answer(key=word, value=word, rule="yes_no", found=word)


def _vote_of(task: Task, chain: Chain, calls: list[Call]) -> Answer:
    if chain.format != "yes_no":
        return calls[0].answer or NONE
    chain.replies = [parse_yes_no(c.output) for c in calls]
    for call, reply in zip(calls, chain.replies):
        call.answer = _yes_no_answer(task, reply)
    yes = [label for label, reply in zip(chain.candidates, chain.replies) if reply]
    if len(yes) != 1:  # none or several labels answered "yes": this chain abstains
        return NONE
    return Answer(key=yes[0], value=yes[0], rule="yes_no", found=yes[0])


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def ask_me_anything(task: Task, s: Settings) -> Flow:
    chains = plan_chains(task, s.n_chains)
    n = len(chains)
    prompts, info, owners = [], [], []
    for chain in chains:
        for candidate in chain.candidates or [""]:
            prompts.append(_user(reformulate_prompt(task, chain, candidate)))
            info.append({"chain": chain.number, "chains": n, "format": chain.format, "label": candidate})
            owners.append(chain)
    written = yield Ask("reformulate", prompts, s.params, info=info)
    for chain, calls in zip(owners, written):
        text = parse_reformulation(calls[0].output, chain.format)
        if not text:
            chain.fallback = True
        chain.reformulations.append(text or task.question)
    prompts = [_user(answer_prompt(task, chain, text)) for chain in chains for text in chain.reformulations]
    answered = yield Ask("chain_answer", prompts, s.params, info=[dict(i) for i in info], extract=True)
    offset = 0
    for chain in chains:
        calls = [row[0] for row in answered[offset:offset + len(chain.reformulations)]]
        offset += len(chain.reformulations)
        chain.answer = _vote_of(task, chain, calls)
    vote = majority_vote([c.answer for c in chains])
    answer = next((c.answer for c in chains if c.answer.ok and c.answer.key == vote.winner), NONE)
    return Outcome(answer, vote=vote, details={"chains": [c.as_dict(task.lang) for c in chains]})

