"""Prompt techniques: extraction, votes, task sets, every technique (scripted and on the tiny model), benchmark, API."""
from __future__ import annotations

import csv
import re
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from engine.generation import SamplingParams
from engine.techniques import tasks as task_sets
from engine.techniques.benchmark import run_benchmark
from engine.techniques.extraction import (ANSWER_PHRASES_SHOWN, Answer, extract, extract_label, extract_number,
                                          extract_text, is_correct, numbers, parse_number)
from engine.techniques.driver import run_technique
from engine.techniques.generator import EngineGenerator, Generation
from engine.techniques.records import Run, Settings
from engine.techniques.techniques import TECHNIQUES, parse_score, parse_subquestions
from engine.techniques.voting import majority_vote

SMALL = SamplingParams(max_new_tokens=8, greedy=True, seed=3)


# ============================================================================ a scripted generator
class ScriptedGenerator:
    """A real Generator whose outputs come from a script: ``respond(messages, sample_index) -> text``.

    It records every ``generate`` call (prompts, samples per prompt, settings) so tests can check batching.
    """

    def __init__(self, respond) -> None:
        self.respond = respond
        self.batches: list[tuple[int, int, SamplingParams]] = []

    def render(self, messages: list[dict]) -> str:
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)

    def generate(self, prompts, params, n_per_prompt=1, stop=None) -> list[Generation]:
        self.batches.append((len(prompts), n_per_prompt, params))
        out = []
        for i, messages in enumerate(prompts):
            rendered = self.render(messages)
            for j in range(n_per_prompt):
                text = self.respond(messages, j)
                out.append(Generation(text=text, n_tokens=len(text.split()), seconds=0.01, stop_reason="eos",
                                      prompt_text=rendered, prompt_tokens=len(rendered.split()),
                                      prompt_index=i, sample_index=j))
        return out


def last_user(messages: list[dict]) -> str:
    return [m["content"] for m in messages if m["role"] == "user"][-1]


def finished(technique, task, generator, settings) -> Run:
    return list(run_technique(technique, task, generator, settings))[-1]


# ============================================================================ extraction
NUMBER_CASES = [
    ("The answer is 62.", "en", 62), ("La réponse est 62.", "fr", 62), ("So 12 + 50 = 62", "en", 62),
    ("Elle a maintenant 62 bananes.", "fr", 62), ("She has 62 bananas now.", "en", 62),
    ("First 3, then 5, finally 7", "en", 7), ("The answer is 5 + 3 = 8. Check: 8 - 3 = 5", "en", 8),
    ("La réponse est donc 62 bananes. Vérifions : 12 + 50.", "fr", 62), ("**Answer:** 21.5 euros", "en", 21.5),
    ("Réponse finale : 14,2 €", "fr", 14.2), ("The result is -5 degrees.", "en", -5), ("10-5", "en", 5),
    ("It costs 1,234 euros", "en", 1234), ("Cela coûte 1 234 euros", "fr", 1234),
    ("Cela coûte 1\u202f234,50 euros", "fr", 1234.5), ("1.234", "fr", 1234), ("1.234", "en", 1.234),
    ("1,234", "fr", 1.234), ("3,5 kg", "en", 3.5), ("3.5 kg", "fr", 3.5), ("1,234.5", "fr", 1234.5),
    ("1.234,5", "en", 1234.5), ("1,234,567", "fr", 1234567), ("0,250", "en", 0.25), ("1 234", "en", 234),
    ("THE ANSWER IS: 7 apples (2 bags of 3 plus 1)", "en", 7), ("réponse : 9", "fr", 9),
]


@pytest.mark.parametrize("text,lang,value", NUMBER_CASES)
def test_number_extraction(text, lang, value):
    got = extract_number(text, lang)
    assert got.ok and got.value == pytest.approx(value), (text, got)


def test_extraction_reports_its_rule_and_what_it_found():
    assert extract_number("blah. The answer is 62.").rule == "phrase"
    assert extract_number("5 × 10 = 50 and 12 + 50 = 62 so").rule == "equals"
    got = extract_number("Léa ends up with 62 bananas", "en")
    assert got.rule == "last_number" and "62 bananas" in got.found
    assert extract_number("no digits here").key is None and extract_number("").rule == "none"
    assert Answer(key="3.5", value=3.5).display("fr") == "3,5" and Answer(key="3.5", value=3.5).display("en") == "3.5"


def test_every_phrase_shown_in_the_ui_is_recognised_and_documented():
    from ui.strings.techniques import EN, FR

    for phrase in ANSWER_PHRASES_SHOWN:
        assert extract_number(f"Some steps 1 and 2. {phrase} 7").rule == "phrase", phrase
        assert phrase in EN["tech.rule_body"] and phrase in FR["tech.rule_body"]


def test_label_and_text_extraction():
    labels = task_sets.get_task("sent-01", "fr").labels
    assert extract_label("La critique est plutôt négative.", labels).key == "négatif"
    assert extract_label("Ce n'est pas positif. La réponse est neutre, vu le ton.", labels).key == "neutre"
    assert extract_label("neutre ? non : positif", labels).rule == "label_last"
    assert extract_label("rien à voir", labels).key is None
    got = extract_text("Let me look.\nThe answer is « KT-4471 ».")
    assert got.value == "KT-4471" and got.rule == "text_phrase"
    assert extract_text("The email is\n**contact@lesjardins.example.**").value == "contact@lesjardins.example"
    assert is_correct(extract_text("The answer is Claire Dumas."), "text", "Dumas")
    assert not is_correct(extract_text("The answer is the whole letter signed by Claire Dumas last Tuesday in Paris."),
                          "text", "Dumas")
    assert is_correct(extract("The answer is 3.50", "number", "en"), "number", 3.5)
    assert not is_correct(extract("The answer is 3.51", "number", "en"), "number", 3.5)
    assert is_correct(Answer(None), "number", None) is None


# ============================================================================ votes
def test_majority_vote_winner_share_and_abstentions():
    v = majority_vote(["62", "60", "62", None, "62"])
    assert (v.winner, v.winner_votes, v.votes, v.paths, v.abstentions) == ("62", 3, 4, 5, 1)
    assert v.share == pytest.approx(0.75) and not v.tie and v.tied == []
    assert v.counts == [("62", 3), ("60", 1)]


def test_ties_go_to_the_answer_reached_first_and_are_reported():
    v = majority_vote([None, "60", "62", "62", "60"])
    assert v.tie and v.tied == ["60", "62"] and v.winner == "60" and v.first_path["60"] == 1
    assert majority_vote(["a", "b", "c"]).winner == "a"
    empty = majority_vote([None, None])
    assert empty.winner is None and empty.share == 0 and empty.abstentions == 2


# ============================================================================ task sets
def test_task_sets_are_complete_in_both_languages():
    en, fr = task_sets.all_tasks("en"), task_sets.all_tasks("fr")
    assert [t.id for t in en] == [t.id for t in fr] and len({t.id for t in en}) == len(en)
    arithmetic = [t for t in en if t.kind == "number"]
    assert len(arithmetic) >= 30 and {t.steps for t in arithmetic} == {1, 2, 3, 4}
    assert all(isinstance(t.answer, float) for t in arithmetic)
    assert {t.kind for t in en} == {"number", "label", "text"}
    for lang in ("en", "fr"):
        for t in task_sets.all_tasks(lang, ["label"]):
            assert t.answer in t.labels and all(label in t.question for label in t.labels)


def test_translations_use_the_same_quantities():
    """Each arithmetic problem states the same numbers in French and English (read with each language's rule)."""
    for en, fr in zip(task_sets.all_tasks("en", ["number"]), task_sets.all_tasks("fr", ["number"])):
        assert Counter(v for v, _ in numbers(en.question, "en")) == Counter(v for v, _ in numbers(fr.question, "fr")), en.id


def test_worked_examples_end_with_their_own_answer():
    for lang in ("en", "fr"):
        for group, kind in (("arithmetic", "number"), ("sentiment", "label"), ("topic", "label"), ("extraction", "text")):
            task = next(t for t in task_sets.all_tasks(lang) if t.group == group)
            for ex in task_sets.examples(task):
                got = task.extract(ex.cot)
                expected = parse_number(ex.answer, lang) if kind == "number" else ex.answer
                assert is_correct(got, kind, expected, lang, task.labels), (lang, ex)
    assert set(task_sets.templates("en")) == set(task_sets.templates("fr"))


def test_custom_tasks_and_benchmark_selection():
    t = task_sets.custom_task("How much is 6 × 7?", "en", "42")
    assert t.kind == "number" and t.answer == 42 and t.id == "custom"
    assert task_sets.custom_task("Capital of France?", "fr", "Paris", "text").answer == "Paris"
    assert task_sets.custom_task("Any?", "fr").answer is None
    from engine.errors import UserError

    with pytest.raises(UserError):
        task_sets.custom_task("x", "en", "forty-two")
    picked = task_sets.benchmark_tasks("fr", ["number", "label", "text"], 6)
    assert [t.kind for t in picked] == ["number", "label", "text"] * 2


# ============================================================================ techniques, scripted
@pytest.fixture()
def bananas():
    return task_sets.get_task("arith-09", "en")


def test_self_consistency_is_one_batched_call_with_a_vote(bananas):
    answers = ["The answer is 62.", "12 + 5 × 10 = 60", "The answer is 62.", "I am not sure.", "so 60 bananas"]
    gen = ScriptedGenerator(lambda msgs, j: answers[j])
    run = finished("self_consistency", bananas, gen, Settings(n_samples=5, sample_temperature=0.9, k_examples=2))
    assert len(gen.batches) == 1 and gen.batches[0][:2] == (1, 5)
    assert gen.batches[0][2].temperature == 0.9 and not gen.batches[0][2].greedy
    assert [c.answer.key for c in run.calls] == ["62", "60", "62", None, "60"]
    assert run.vote.tie and run.vote.tied == ["62", "60"] and run.vote.winner == "62"
    assert run.answer.key == "62" and run.correct is True
    assert len(run.calls[0].messages) == 2 * 2 + 1  # two worked examples, then the question


def test_few_shot_examples_and_seeded_shuffle(bananas):
    gen = ScriptedGenerator(lambda msgs, j: "The answer is 62.")
    plain = finished("few_shot", bananas, gen, Settings(k_examples=4))
    shuffled = finished("few_shot", bananas, gen, Settings(k_examples=4, shuffle=True, shuffle_seed=1))
    again = finished("few_shot", bananas, gen, Settings(k_examples=4, shuffle=True, shuffle_seed=1))
    assert plain.details["examples"] == [0, 1, 2, 3]
    assert sorted(shuffled.details["examples"]) == [0, 1, 2, 3] and shuffled.details["examples"] != [0, 1, 2, 3]
    assert again.details["examples"] == shuffled.details["examples"]
    msgs = plain.calls[0].messages
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 4 + ["user"]
    assert msgs[1]["content"] == "The answer is 25." and msgs[-1]["content"] == bananas.question
    cot = finished("few_shot_cot", bananas, gen, Settings(k_examples=1))
    assert "2 × 8 = 16" in cot.calls[0].messages[1]["content"]


def test_least_to_most_feeds_each_answer_forward(bananas):
    def respond(msgs, j):
        text = last_user(msgs)
        if "sub-questions whose answers" in text:
            return "1. How many bananas are in the bags?\n2. How many bananas does she have in total?"
        if "sub-question 1 only" in text:
            return "5 bags of 10 make 50 bananas."
        if "sub-question 2 only" in text:
            return "12 + 50 = 62 bananas."
        return "The answer is 62."

    run = finished("least_to_most", bananas, ScriptedGenerator(respond), Settings())
    assert [c.step for c in run.calls] == ["decompose", "subquestion", "subquestion", "final"]
    assert run.details["subquestions"] == ["How many bananas are in the bags?", "How many bananas does she have in total?"]
    assert run.calls[0].output in run.calls[1].prompt
    assert "50 bananas" in run.calls[2].prompt and "62 bananas" in run.calls[3].prompt
    assert run.correct is True


def test_self_refine_revision_contains_the_critique(bananas):
    def respond(msgs, j):
        text = last_user(msgs)
        if "Review this answer" in text:
            return f"Critique {text.count('Review')}: you forgot the 12 bananas she already had."
        if "Feedback on that answer" in text:
            return "12 + 50 = 62. The answer is 62."
        return "5 × 10 = 50. The answer is 50."

    run = finished("self_refine", bananas, ScriptedGenerator(respond), Settings(rounds=2))
    assert [c.step for c in run.calls] == ["answer", "critique", "revise", "critique", "revise"]
    for critique, revision in ((run.calls[1], run.calls[2]), (run.calls[3], run.calls[4])):
        assert critique.output in revision.prompt
    assert run.calls[2].output in run.calls[3].prompt  # round 2 criticises round 1's revision
    assert run.details["answers_by_round"] == ["50", "62", "62"] and run.correct is True


def test_tree_of_thoughts_keeps_the_best_scored_thought(bananas):
    thoughts = ["Bags: 5 × 10 = 50 bananas.", "Bags: 5 + 10 = 15 bananas.", "She eats one."]

    def respond(msgs, j):
        text = last_user(msgs)
        if "How promising" in text:
            last = text.split("\n\n")[1].strip().splitlines()[-1]
            return {0: "9", 1: "3/10", 2: "Score: 2"}[next(i for i, t in enumerate(thoughts) if t in last)]
        if "next single reasoning step" in text:
            return thoughts[j]
        return "The answer is 62."

    gen = ScriptedGenerator(respond)
    run = finished("tree_of_thoughts", bananas, gen, Settings(k_thoughts=3, depth=2))
    assert len(run.calls) == 2 * 2 * 3 + 1  # depth × (k proposals + k scores) + the final answer
    assert [(b[0], b[1]) for b in gen.batches] == [(1, 3), (3, 1), (1, 3), (3, 1), (1, 1)]
    assert [lvl["scores"] for lvl in run.details["levels"]] == [[9, 3, 2], [9, 3, 2]]
    assert run.details["path"] == [thoughts[0], thoughts[0]]
    second_proposal = run.calls[6]
    assert second_proposal.step == "propose" and thoughts[0] in second_proposal.prompt
    assert gen.batches[1][2].max_new_tokens <= 8 and gen.batches[1][2].greedy
    assert parse_score("I'd say 7.") == 7 and parse_score("42") is None and parse_score("none") is None


def test_role_and_instruction_prompts(bananas):
    gen = ScriptedGenerator(lambda msgs, j: "The answer is 62.")
    role = finished("role", bananas, gen, Settings())
    explicit = finished("explicit", bananas, gen, Settings())
    assert role.calls[0].messages[0]["role"] == "system" and "mathematics teacher" in role.calls[0].messages[0]["content"]
    assert role.calls[0].messages[1:] == explicit.calls[0].messages  # the role is the only difference
    assert '"The answer is N."' in explicit.calls[0].messages[0]["content"]
    zero = finished("zero_shot", bananas, gen, Settings())
    assert zero.calls[0].messages == [{"role": "user", "content": bananas.question}]


def test_subquestion_parsing():
    plan = "Here is the plan:\n1. How many bags?\n2) How many in total?\n- What is left?\nQ4: Anything else?\n5. Fifth"
    assert parse_subquestions(plan, 4) == ["How many bags?", "How many in total?", "What is left?", "Anything else?"]
    assert parse_subquestions("How many bags?\nthen add", 4) == ["How many bags?"]
    assert parse_subquestions("noise without structure", 4) == []


# ============================================================================ benchmark, scripted
def test_benchmark_accuracy_tokens_and_batching(tmp_path):
    problems = task_sets.benchmark_tasks("en", ["number"], 6)
    truth = {t.question: t.answer for t in problems}
    right = {t.question for t in problems[:4]}  # zero-shot gets 4 of 6 right

    def respond(msgs, j):
        text = last_user(msgs)
        question = next(q for q in truth if q in text)
        value = truth[question]
        if "step by step" in text or len(msgs) > 1:  # self-consistency paths: right, then two different slips
            return f"The answer is {value + j:g}."
        return f"The answer is {value if question in right else value + 1:g}."

    gen = ScriptedGenerator(respond)
    seen = []
    result = run_benchmark(gen, ["zero_shot", "self_consistency"], problems, Settings(n_samples=3, k_examples=0),
                           on_progress=lambda done, total, name: seen.append((done, total, name)))
    zero, sc = result.stats()
    assert (zero.runs, zero.correct, zero.accuracy) == (6, 4, pytest.approx(4 / 6))
    assert (sc.runs, sc.correct, sc.calls) == (6, 6, 18)  # a three-way tie goes to the first path, which is right
    assert all(r.vote.tie for r in result.runs if r.technique == "self_consistency")
    assert [b[:2] for b in gen.batches] == [(6, 1), (6, 3)]  # each technique: all problems in one batch
    assert zero.generated_tokens == sum(c.n_tokens for r in result.runs if r.technique == "zero_shot" for c in r.calls)
    assert zero.prompt_tokens > 0 and sc.tokens > zero.tokens
    assert seen[-1] == (12, 12, "self_consistency") and result.done and not result.stopped
    summary, runs = result.write_csv(tmp_path)
    rows = list(csv.DictReader(open(summary, encoding="utf-8")))
    assert [(r["technique"], r["correct"], float(r["accuracy"])) for r in rows] == [
        ("zero_shot", "4", pytest.approx(0.6667)), ("self_consistency", "6", 1.0)]
    assert len(list(csv.DictReader(open(runs, encoding="utf-8")))) == 12


def test_benchmark_stops_between_batches():
    problems = task_sets.benchmark_tasks("fr", ["number"], 5)
    stop = threading.Event()
    gen = ScriptedGenerator(lambda msgs, j: "La réponse est 1.")
    result = run_benchmark(gen, ["zero_shot", "least_to_most"], problems, Settings(), stop=stop,
                           on_progress=lambda done, total, name: stop.set() if name == "least_to_most" else None,
                           chunk_size=2)
    assert result.stopped and result.done
    assert [r.technique for r in result.runs] == ["zero_shot", "zero_shot"]  # least-to-most was cut after its first batch
    assert len(gen.batches) == 2


# ============================================================================ the tiny model, real generation path
@pytest.fixture(scope="module")
def tiny_generator(manager):
    return EngineGenerator(manager.llm(manager.catalog.spec("instruct_llm")))


TINY_SETTINGS = Settings(k_examples=2, n_samples=3, sample_temperature=1.0, rounds=1, k_thoughts=2, depth=2,
                         params=SMALL)
TINY_CALLS = {"self_consistency": 3, "self_refine": 1 + 2 * 1, "tree_of_thoughts": 2 * (2 + 2) + 1,
              "ask_me_anything": 2 * TINY_SETTINGS.n_chains}  # a number task: one reformulation, one answer per chain


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_each_technique_runs_on_the_tiny_model(technique, tiny_generator):
    task = task_sets.get_task("arith-09", "fr")
    runs = list(run_technique(technique, task, tiny_generator, TINY_SETTINGS))
    run = runs[-1]
    assert run.finished and not run.stopped and run.correct is not None
    if technique == "least_to_most":
        subs = run.details["subquestions"]
        assert 1 <= len(subs) <= 4 and len(run.calls) == 1 + len(subs) + 1
    else:
        assert len(run.calls) == TINY_CALLS.get(technique, 1)
    assert [c.index for c in run.calls] == list(range(1, len(run.calls) + 1))
    for call in run.calls:
        assert call.prompt.startswith("<s>[INST]") and call.prompt.rstrip().endswith("[/INST]")
        assert 1 <= call.n_tokens <= SMALL.max_new_tokens and call.stop_reason in ("eos", "length")
        assert call.prompt_tokens > 0 and call.seconds > 0
    if technique == "self_consistency":
        assert run.batches == 1 and len({c.output for c in run.calls}) > 1  # one batch, different samples
    if technique == "ask_me_anything":  # every reformulation in one batch, every answer in the next
        assert run.batches == 2 and [c.step for c in run.calls] == ["reformulate"] * 3 + ["chain_answer"] * 3
        assert run.vote is not None and run.vote.paths == 3
    if technique == "least_to_most":
        assert run.calls[0].output.strip() and run.calls[0].output.strip() in run.calls[1].prompt
    if technique == "self_refine":
        critique, revision = run.calls[1], run.calls[2]
        assert critique.step == "critique" and critique.output.strip() in revision.prompt
    if technique == "role":
        assert run.calls[0].note == "system_merged" and "professeur de mathématiques" in run.calls[0].prompt


def test_stop_interrupts_the_generation_in_flight(manager):
    stop = threading.Event()
    handle = manager.llm(manager.catalog.spec("instruct_llm"))
    steps = []

    def on_step(done: int, total: int) -> None:
        steps.append(done)
        if len(steps) == 4:  # a few tokens in: press Stop
            stop.set()

    gen = EngineGenerator(handle, on_step=on_step)
    task = task_sets.get_task("arith-01", "en")
    settings = replace(TINY_SETTINGS, params=SamplingParams(max_new_tokens=400, greedy=True))
    run = list(run_technique("self_refine", task, gen, settings, stop=stop))[-1]
    assert run.stopped and not run.finished and len(run.calls) == 1
    assert run.calls[0].stop_reason == "stopped" and 0 < run.calls[0].n_tokens < 50


# ============================================================================ API
def test_api_run_technique(client):
    md, vote_md, plot, calls, raw = client.predict(technique="self_consistency", language="en", problem="arith-04",
                                                   n_samples=3, k_examples=1, max_new_tokens=6,
                                                   api_name="/run_technique")
    assert raw["n_calls"] == 3 and raw["batches"] == 1 and raw["task"]["answer"] == 21.5
    assert "| 3 |" in vote_md and "| 4 |" not in vote_md
    assert calls.count('class="tech-call"') == 3 and "[INST]" in calls and "Self-consistency" in md
    md, _, _, calls, raw = client.predict(technique="least_to_most", problem="custom", question="Combien font 6 × 7 ?",
                                          expected_answer="42", max_new_tokens=6, api_name="/run_technique")
    assert raw["task"]["id"] == "custom" and raw["task"]["answer"] == 42 and raw["correct"] is not None
    assert raw["n_calls"] == 2 + len(raw["details"]["subquestions"])
    from gradio_client.exceptions import ValidationError

    with pytest.raises(ValidationError, match="tree_of_thoughts"):  # refused before it is queued
        client.predict(technique="magic", max_new_tokens=6, api_name="/run_technique")


def test_api_benchmark_techniques(client):
    status, table, acc, cost, files = client.predict(techniques=["zero_shot", "self_consistency", "tree_of_thoughts"],
                                                     language="en", task_kinds=["number", "label"], n_problems=3,
                                                     n_samples=2, k_thoughts=2, depth=1, max_new_tokens=6,
                                                     api_name="/benchmark_techniques")
    assert re.search(r"9 runs", status)
    assert [row[0] for row in table["data"]] == ["Zero-shot", "Self-consistency", "Tree of thoughts"]
    assert [row[1] for row in table["data"]] == [3, 3, 3] and table["data"][1][5] == 6  # 3 problems × 2 paths
    assert len(acc["value"]["data"]) == 3
    paths = sorted(files, key=lambda p: Path(p).name)
    runs = list(csv.DictReader(open(paths[0], encoding="utf-8")))
    assert len(runs) == 9 and {r["kind"] for r in runs} == {"number", "label"}


def test_strings_have_the_same_fields_in_both_languages():
    from string import Formatter

    from ui.strings.techniques import EN, FR

    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in Formatter().parse(text) if name}

    assert set(EN) == set(FR) and all(k.startswith("tech.") for k in EN)
    assert {k: fields(v) for k, v in EN.items()} == {k: fields(v) for k, v in FR.items()}
    for technique in TECHNIQUES:
        assert f"tech.name.{technique}" in EN and f"tech.card.{technique}" in EN
