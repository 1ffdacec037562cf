"""Ask-me-anything: chains, reformulations, the vote (scripted and on the tiny model), in the benchmark, through the API."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from gradio_client.exceptions import ValidationError

from engine.techniques import ama
from engine.techniques import tasks as task_sets
from engine.techniques.benchmark import run_benchmark
from engine.techniques.records import Settings
from tests.test_techniques import ScriptedGenerator, finished, last_user


@pytest.fixture()
def bananas():
    return task_sets.get_task("arith-09", "en")


def reformulating(text: str) -> bool:
    return text.startswith(("Rewrite the", "List the facts", "Reformule", "Liste les faits"))


# ============================================================================ chains
def test_chains_take_the_formats_in_turn_then_the_next_demos(bananas):
    chains = ama.plan_chains(bananas, 6)
    assert [c.format for c in chains] == ["open", "cloze", "facts"] * 2
    assert [c.demos for c in chains] == [[0, 1]] * 3 + [[1, 2]] * 3
    review = task_sets.get_task("sent-01", "fr")
    labelled = ama.plan_chains(review, 3)
    assert [c.format for c in labelled] == ["open", "cloze", "yes_no"]
    assert labelled[2].candidates == ["positif", "négatif", "neutre"] and labelled[0].candidates == []
    assert ama.rows_per_round(review, Settings(n_chains=3)) == 1 + 1 + 3
    custom = task_sets.custom_task("Quelle est la capitale de l'Italie ?", "fr", "Rome", "text")
    assert [c.format for c in ama.plan_chains(custom, 3)] == ["open", "cloze", "facts"]
    # each format's few-shot prompt shows its own rewrites of the same demos
    prompts = {c.format: ama.reformulate_prompt(bananas, c) for c in chains[:3]}
    assert "Question: How many stickers does Nina have" in prompts["open"]
    assert "Sentence: Nina had 14 stickers" in prompts["cloze"] and "___" in prompts["cloze"]
    assert "- Each pack holds 6 stickers." in prompts["facts"]
    assert all(p.count("Task:") == 3 and f"Task: {bananas.question}\n" in p for p in prompts.values())
    assert ama.reformulate_prompt(bananas, chains[3]) != prompts["open"]  # chain 4: the same format, other demos


def test_every_demo_exists_in_both_languages_with_what_its_formats_need():
    data = ama._data()
    assert set(data["en"]) == set(data["fr"])
    needs = {"arithmetic": ("open", "cloze", "facts"), "extraction": ("open", "cloze", "facts"),
             "sentiment": ("open", "cloze", "candidate", "yn_question", "yn_answer"),
             "topic": ("open", "cloze", "candidate", "yn_question", "yn_answer")}
    for group, fields in needs.items():
        pool = data["demos"][group]
        assert len(pool) == 3
        for entry in pool:
            for lang in ("en", "fr"):
                demo = entry[lang]
                assert all(demo.get(f) for f in ("task", "answer") + fields), (group, lang)
                if "cloze" in fields:
                    assert "___" in demo["cloze"]
                if "yn_answer" in fields:
                    assert demo["yn_answer"] in (data[lang]["yes"], data[lang]["no"])
                    assert ama.parse_yes_no(demo["yn_answer"]) == (demo["yn_answer"] == data[lang]["yes"])
    task = task_sets.get_task("sent-01", "fr")
    for entry in data["demos"]["sentiment"]:  # the demos' answers are labels the task's extraction reads
        assert task.extract(f"Réponse : {entry['fr']['answer']}").key == entry["fr"]["answer"]


def test_reformulations_and_yes_no_replies_are_read():
    assert ama.parse_reformulation("Question: How many in all?\nThen I solve it: 62", "open") == "How many in all?"
    assert ama.parse_reformulation("\n\nPhrase : Léa a ___ bananes.", "cloze") == "Léa a ___ bananes."
    facts = ama.parse_reformulation("Facts:\n- Léa has 12.\n- 5 bags of 10.\nAsked: total.\n\nThe answer is 62.", "facts")
    assert facts == "- Léa has 12.\n- 5 bags of 10.\nAsked: total."
    assert ama.parse_reformulation("   \n", "open") == ""
    assert ama.parse_yes_no("Yes, it is.") is True and ama.parse_yes_no("Réponse : non") is False
    assert ama.parse_yes_no("No doubt. Answer: yes") is True  # the reply after the answer phrase counts
    assert ama.parse_yes_no("Non, pas du tout") is False and ama.parse_yes_no("maybe") is None
    assert ama.parse_yes_no("nonsense nobody") is None


# ============================================================================ runs, scripted
def test_ama_is_two_batched_calls_and_a_vote_of_the_chains(bananas):
    def respond(msgs, j):
        text = last_user(msgs)
        if reformulating(text):
            if "one sentence with a blank" in text:
                return "Sentence: Léa now has ___ bananas.\nShe had 12."
            if "List the facts" in text:
                return "- Léa has 12 bananas.\n- She buys 5 bags of 10.\nAsked: how many now."
            return "Question: How many bananas does Léa have after adding 5 bags of 10 to 12?"
        if "Léa now has ___ bananas" in text:
            return "Answer: 60"  # the cloze chain slips
        return "Answer: 62"

    gen = ScriptedGenerator(respond)
    run = finished("ask_me_anything", bananas, gen, Settings(n_chains=4))
    assert [(b[0], b[1]) for b in gen.batches] == [(4, 1), (4, 1)]  # all reformulations, then all answers
    assert gen.batches[0][2].greedy and run.batches == 2
    steps = [(c.step, c.info["chain"], c.info["format"]) for c in run.calls]
    assert steps == [("reformulate", 1, "open"), ("reformulate", 2, "cloze"), ("reformulate", 3, "facts"),
                     ("reformulate", 4, "open"), ("chain_answer", 1, "open"), ("chain_answer", 2, "cloze"),
                     ("chain_answer", 3, "facts"), ("chain_answer", 4, "open")]
    cloze_answer = run.calls[5]
    assert "Sentence: Léa now has ___ bananas.\nAnswer:" in cloze_answer.prompt  # the chain's own reformulation
    assert "She had 12." not in cloze_answer.prompt and f"Context: {bananas.question}" in cloze_answer.prompt
    assert "- She buys 5 bags of 10.\nAsked: how many now.\nAnswer:" in run.calls[6].prompt
    assert run.calls[5].answer.key == "60" and run.calls[4].answer.key == "62"
    assert run.vote.counts == [("62", 3), ("60", 1)] and run.answer.key == "62" and run.correct is True
    chains = run.details["chains"]
    assert [c["answer"]["key"] for c in chains] == ["62", "60", "62", "62"] and not any(c["fallback"] for c in chains)


def test_a_tie_goes_to_the_first_chain_and_an_empty_reformulation_falls_back_to_the_task(bananas):
    def respond(msgs, j):
        text = last_user(msgs)
        if reformulating(text):
            return "" if "one sentence with a blank" in text else "Question: how many?"
        return "Answer: 61" if f"Sentence: {bananas.question}" in text else "Answer: 62"

    run = finished("ask_me_anything", bananas, ScriptedGenerator(respond), Settings(n_chains=2))
    assert run.details["chains"][1]["fallback"] and run.details["chains"][1]["reformulations"] == [bananas.question]
    assert run.vote.tie and run.vote.tied == ["62", "61"] and run.answer.key == "62"  # chain 1 reached it first


def test_a_yes_no_chain_votes_for_the_one_label_answered_yes():
    review = task_sets.get_task("sent-01", "fr")

    def respond(yes: set[str]):
        def answer(msgs, j):
            text = last_user(msgs)
            if reformulating(text):
                if "Question fermée :" in text:
                    label = re.search(r"la réponse est « (.+?) »\.\nQuestion fermée :$", text).group(1)
                    return f"L'avis est-il {label} ?"
                return "Question : Quel est le ton de l'avis ?"
            if "par oui ou par non" in text:
                label = re.search(r"L'avis est-il (.+?) \?\nRéponse :$", text).group(1)
                return "Réponse : oui" if label in yes else "Non."
            return "Réponse : neutre"
        return answer

    gen = ScriptedGenerator(respond({"négatif"}))
    run = finished("ask_me_anything", review, gen, Settings(n_chains=3))
    assert [(b[0], b[1]) for b in gen.batches] == [(5, 1), (5, 1)]  # open, cloze, then one question per label
    chain = run.details["chains"][2]
    assert chain["format"] == "yes_no" and chain["replies"] == [False, True, False]
    assert chain["reformulations"] == ["L'avis est-il positif ?", "L'avis est-il négatif ?", "L'avis est-il neutre ?"]
    assert [c.answer.display("fr") for c in run.calls[-3:]] == ["non", "oui", "non"]
    assert run.vote.counts == [("neutre", 2), ("négatif", 1)] and run.correct is False
    both = finished("ask_me_anything", review, ScriptedGenerator(respond({"négatif", "neutre"})), Settings(n_chains=3))
    assert both.details["chains"][2]["answer"]["key"] is None and both.vote.abstentions == 1  # two "yes": abstains


def test_ama_is_counted_in_the_benchmark(tmp_path):
    problems = task_sets.benchmark_tasks("en", ["number"], 3)
    truth = {t.question: t.answer for t in problems}

    def respond(msgs, j):
        text = last_user(msgs)
        question = next(q for q in truth if q in text)
        if reformulating(text):
            return "Question: the same question, reworded?"
        return f"The answer is {truth[question]:g}." if "Context:" in text else "I do not know."

    gen = ScriptedGenerator(respond)
    result = run_benchmark(gen, ["zero_shot", "ask_me_anything"], problems, Settings(n_chains=2))
    zero, chains = result.stats()
    assert (zero.correct, chains.correct, chains.runs) == (0, 3, 3)
    assert chains.calls == 3 * 2 * 2 and chains.tokens > zero.tokens  # 2 chains × (reformulation + answer)
    assert [b[:2] for b in gen.batches] == [(3, 1), (6, 1), (6, 1)]  # zero-shot, then AMA's two rounds
    _, runs = result.write_csv(tmp_path)
    row = next(r for r in csv.DictReader(open(runs, encoding="utf-8")) if r["technique"] == "ask_me_anything")
    assert row["calls"] == "4" and "[#1 reformulate]" in row["outputs"] and "[#4 chain_answer]" in row["outputs"]
    assert row["final_output"].startswith("The answer is")


def test_ama_duration_follows_its_chains_and_labels():
    from engine.models.catalog import load_catalog
    from engine.gpu_tasks import BenchmarkJob, TechniqueJob, durations

    spec = load_catalog("zerogpu", env={}).spec("instruct_llm")
    resident = lambda s: True  # noqa: E731
    number, review = task_sets.get_task("arith-01", "en"), task_sets.get_task("sent-01", "en")

    def seconds(task, chains: int) -> float:
        return durations.technique(TechniqueJob(spec, "ask_me_anything", task, Settings(n_chains=chains)), resident)

    assert seconds(number, 1) < seconds(number, 6) and seconds(number, 3) < seconds(review, 3)
    assert durations.technique_rounds("ask_me_anything", Settings(n_chains=3), review) == (2, 5)
    bench = durations.benchmark(BenchmarkJob(spec, ("ask_me_anything",), (number, review), Settings(n_chains=3)),
                                resident)
    assert bench == durations._cap(durations.OVERHEAD_S + durations.llm_rounds(2, 256, 3 + 5))


# ============================================================================ through the app
def test_api_ama_shows_every_call_and_the_chains_vote(client):
    md, vote_md, _plot, calls, raw = client.predict(technique="ask_me_anything", language="fr", problem="topic-02",
                                                    ama_chains=3, max_new_tokens=5, api_name="/run_technique")
    labels = 4  # sport, économie, science, culture: the yes/no chain asks one question per label
    assert raw["n_calls"] == 2 * (2 + labels) and raw["batches"] == 2 and raw["settings"]["n_chains"] == 3
    assert calls.count('class="tech-call"') == raw["n_calls"] and calls.count("Chain 3/3 · reformulation") == labels
    assert "Rewrite the claim as a yes/no question" not in calls and "Reformule l'affirmation" in calls  # French task
    assert "[INST]" in calls and "Ask-me-anything" in md
    chains = raw["details"]["chains"]
    assert [c["format"] for c in chains] == ["open", "cloze", "yes_no"] and raw["vote"]["paths"] == 3
    assert "| Chain | Format | Reformulation | Answer |" in vote_md and vote_md.count("\n| ") == 1 + 3  # header, chains
    assert "yes/no question" in vote_md  # the chain's format, in the page's language
    for chain in chains[:2]:  # what each chain wrote is fed to its answer call
        answer_call = next(c for c in raw["calls"] if c["step"] == "chain_answer" and c["info"]["chain"] == chain["chain"])
        assert chain["reformulations"][0] in answer_call["prompt"]


def test_api_ama_in_the_benchmark_table_and_csv(client):
    status, table, acc, _cost, files = client.predict(techniques=["zero_shot", "ask_me_anything"], language="en",
                                                      task_kinds=["number"], n_problems=2, ama_chains=2,
                                                      max_new_tokens=4, api_name="/benchmark_techniques")
    assert "4 runs" in status and "AMA: 2 chains" in status
    row = {r[0]: r for r in table["data"]}["Ask-me-anything (AMA)"]
    assert row[1] == 2 and row[5] == 2 * 2 * 2  # 2 problems × 2 chains × (reformulation + answer)
    assert len(acc["value"]["data"]) == 2
    runs = next(p for p in files if Path(p).name == "techniques_runs.csv")
    ama_rows = [r for r in csv.DictReader(open(runs, encoding="utf-8")) if r["technique"] == "ask_me_anything"]
    assert len(ama_rows) == 2 and all(r["outputs"].count("[#") == 4 for r in ama_rows)


def test_api_an_ama_run_travels_by_link_and_to_the_wall(client):
    question = task_sets.get_task("arith-04", "en").question  # what the page's question box holds
    inputs = {"technique": "ask_me_anything", "language": "en", "problem": "arith-04", "question": question,
              "ama_chains": 2, "max_new_tokens": 4}
    md, vote_md, _plot, calls, raw = client.predict(**inputs, api_name="/run_technique")
    shared = client.predict("run_technique", inputs, {"result": {"type": "markdown", "value": md},
                                                      "vote": {"type": "markdown", "value": vote_md},
                                                      "calls": {"type": "html", "value": calls}},
                            api_name="/share_experiment")
    opened = client.predict(shared["id"], api_name="/open_experiment")
    assert opened["inputs"] == inputs and opened["outputs"]["vote"]["value"] == vote_md
    again = client.predict(**opened["inputs"], api_name=opened["api"])  # greedy: the same chains, the same calls
    assert [c["output"] for c in again[-1]["calls"]] == [c["output"] for c in raw["calls"]]
    room = client.predict("AMA", api_name="/wall_open_room")["room"]
    client.predict(room, "Malo", shared["id"], api_name="/wall_post")
    card = client.predict(room, api_name="/wall")["entries"][0]
    assert card["title"] == f"[ask_me_anything] {question}"
    assert card["card"]["parts"][0]["text"] == md


@pytest.mark.parametrize("chains,expected", [(7, "between 1 and 6"), (0, "between 1 and 6"), (2.5, "whole number")])
def test_api_ama_chains_out_of_range_are_refused_before_running(client, chains, expected):
    with pytest.raises(ValidationError, match=expected):
        client.predict(technique="ask_me_anything", ama_chains=chains, max_new_tokens=4, api_name="/run_technique")
