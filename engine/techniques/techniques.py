"""The prompting techniques.

Each technique is written as a small coroutine (a Python generator): it *yields* an :class:`Ask`
(one or more chat prompts, the sampling settings, how many samples per prompt) and receives the
resulting :class:`Call` records, until it *returns* its :class:`Outcome` (records in
:mod:`engine.techniques.records`). The driver (:func:`engine.techniques.driver.drive`) runs many
such coroutines together, merging their asks into batched calls of a
:class:`~engine.techniques.generator.Generator`.
"""
from __future__ import annotations

import random
import re
from typing import Callable, Sequence

from engine.techniques import tasks as task_sets
from engine.techniques.ama import ask_me_anything
from engine.techniques.extraction import NONE, numbers
from engine.techniques.generator import Messages
from engine.techniques.records import Ask, Flow, Outcome, Settings
from engine.techniques.tasks import Task
from engine.techniques.voting import majority_vote

TECHNIQUES = ("zero_shot", "explicit", "few_shot", "zero_shot_cot", "few_shot_cot", "role",
              "self_consistency", "least_to_most", "self_refine", "tree_of_thoughts", "ask_me_anything")
VOTING = ("self_consistency", "ask_me_anything")  # the techniques whose answer is a vote


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
    "ask_me_anything": ("n_chains",),
}

FLOWS: dict[str, Callable[[Task, Settings], Flow]] = {
    "zero_shot": zero_shot, "explicit": explicit, "few_shot": few_shot, "zero_shot_cot": zero_shot_cot,
    "few_shot_cot": few_shot_cot, "role": role, "self_consistency": self_consistency,
    "least_to_most": least_to_most, "self_refine": self_refine, "tree_of_thoughts": tree_of_thoughts,
    "ask_me_anything": ask_me_anything,
}
