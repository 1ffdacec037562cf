"""Prompt fragility: the variants and their exact prompts, batched rows, the spread, Stop, CSV; through
the API (bad input included), a link and the wall, and on "ZeroGPU" (the real ``spaces`` wrappers)."""
from __future__ import annotations

import csv
import re
import threading
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError, ValidationError

from engine.errors import UserError
from engine.generation import SamplingParams
from engine.techniques import fragility
from engine.techniques import tasks as task_sets
from engine.techniques.fragility import FIELDS, FragilitySettings, plan_variants, prompt_text, run_all
from engine.techniques.generator import EngineGenerator
from tests.test_techniques import ScriptedGenerator, last_user
from tests.test_zerogpu import one_gpu_call, space, wait_for_progress  # noqa: F401 - the ZeroGPU app fixture

ARITH = task_sets.benchmark_tasks("en", ["number"], 4)


def blocks(prompt: str) -> list[str]:
    """The prompt's examples and the problem, each as one normalised block (labels and text)."""
    return [" ".join(b.split()) for b in re.split(r"\n\s*\n", prompt.strip()) if b.strip()]


# ============================================================================ variants and prompts
def test_variants_take_the_chosen_perturbations_in_turn():
    variants = plan_variants(ARITH, FragilitySettings(variants=10))
    assert [(v.name, v.kind, v.level) for v in variants] == [
        ("V1", "reference", 0), ("V2", "order", 1), ("V3", "whitespace", 1), ("V4", "labels", 1), ("V5", "choice", 1),
        ("V6", "order", 2), ("V7", "whitespace", 2), ("V8", "labels", 2), ("V9", "choice", 2), ("V10", "order", 3)]
    only = plan_variants(ARITH, FragilitySettings(variants=4, perturbations=("labels",)))
    assert [v.kind for v in only] == ["reference", "labels", "labels", "labels"]  # every other field wording
    assert len({prompt_text(ARITH[0], v, FragilitySettings()) for v in only}) == 4


def test_each_variant_changes_exactly_what_it_says():
    settings = FragilitySettings(k_examples=3, variants=12)
    task = ARITH[1]
    pool = task_sets.examples(task)
    ref = prompt_text(task, plan_variants(ARITH, settings)[0], settings)
    assert ref == "\n\n".join([f"Question: {pool[i].question}\nAnswer: {pool[i].answer}" for i in range(3)]
                              + [f"Question: {task.question}\nAnswer:"])
    seen = {ref}
    for v in plan_variants(ARITH, settings)[1:]:
        text = prompt_text(task, v, settings)
        assert text not in seen, v
        seen.add(text)
        shown = fragility.example_indices(task, v, settings)
        if v.kind == "order":  # the same examples, another order
            assert sorted(blocks(text)[:3]) == sorted(blocks(ref)[:3]) and blocks(text) != blocks(ref)
            assert sorted(shown) == [0, 1, 2] and shown != [0, 1, 2]
        elif v.kind == "whitespace":  # the same words, other spaces and line breaks
            assert " ".join(text.split()) == " ".join(ref.split()) and text != ref
        elif v.kind == "labels":  # the same text under other field names
            q, a = FIELDS["en"][v.level]
            assert re.sub(rf"(?m)^{a}:", "Answer:", re.sub(rf"(?m)^{q}:", "Question:", text)) == ref
        else:  # choice: other examples of the pool, in pool order, the same layout
            assert shown == sorted(shown) and shown != [0, 1, 2] and len(shown) == 3
            assert blocks(text)[:3] == [f"Question: {pool[i].question} Answer: {pool[i].answer}" for i in shown]
            assert blocks(text)[-1] == blocks(ref)[-1]
    french = task_sets.get_task(ARITH[1].id, "fr")
    assert prompt_text(french, plan_variants([french], settings)[3], settings).startswith("Q : ")  # French labels


def test_variants_that_cannot_differ_are_refused_with_the_reason():
    with pytest.raises(UserError) as err:
        plan_variants(ARITH, FragilitySettings(variants=5, perturbations=("labels",)))
    assert (err.value.key, err.value.params["max"]) == ("tech.frag_err_variants", 4)
    with pytest.raises(UserError) as err:  # one example has a single order
        plan_variants(ARITH, FragilitySettings(k_examples=1, variants=2, perturbations=("order",)))
    assert err.value.params["max"] == 1
    reviews = task_sets.benchmark_tasks("en", ["label"], 3)  # sentiment's pool holds 3 examples: no other choice
    assert fragility.capacity("choice", reviews, FragilitySettings(k_examples=3)) == 0
    assert [v.kind for v in plan_variants(reviews, FragilitySettings(variants=4))] == ["reference", "order",
                                                                                    "whitespace", "labels"]
    with pytest.raises(UserError, match="tech.frag_err_no_perturbation"):
        plan_variants(ARITH, FragilitySettings(perturbations=()))
    with pytest.raises(UserError, match="tech.err_no_tasks"):
        plan_variants([], FragilitySettings())


# ============================================================================ runs, scripted
def fragile(msgs, j) -> str:
    """A scripted model that is right only when the prompt says "Q:" / "A:" or shows no blank line."""
    text = last_user(msgs)
    problem = next(t for t in ARITH if t.question in text)
    right = "\nA:" in text or "\n\n" not in text
    return f"{problem.answer + (0 if right else 1):g}"


def test_rows_are_batched_by_whole_problems_and_the_spread_is_named(tmp_path):
    settings = FragilitySettings(variants=12, params=SamplingParams(max_new_tokens=4, greedy=True))
    gen = ScriptedGenerator(fragile)
    seen = []
    sizes = []
    for result in fragility.run_fragility(gen, ARITH, settings,
                                          on_progress=lambda done, total: seen.append((done, total))):
        sizes.append(len(result.rows))  # the same result, growing: partial results after each call
    assert [b[:2] for b in gen.batches] == [(24, 1), (24, 1)]  # 2 problems × 12 variants per engine call
    assert gen.batches[0][2].greedy and seen == [(24, 48), (48, 48)] and result.done and not result.stopped
    assert sizes == [24, 48, 48]
    stats = {s.variant.name: s for s in result.stats()}
    right = {"V3", "V4"}  # no blank line between the examples; "Q:" / "A:"
    assert {n for n, s in stats.items() if s.accuracy == 1.0} == right
    assert all(s.accuracy == 0.0 and s.runs == 4 for n, s in stats.items() if n not in right)
    assert {n: s.changed for n, s in stats.items() if s.changed} == {"V3": 4, "V4": 4}  # vs the reference's answers
    spread = result.spread()
    assert (spread.low, spread.high, spread.worst.name, spread.best.name, spread.reference) == (0.0, 1.0, "V1", "V3", 0.0)
    for variant in result.variants:  # each variant's prompt is the one its rows were sent
        assert result.example_prompt(variant) == gen.render(fragility.messages(ARITH[0], variant, settings))
    summary, runs = result.write_csv(tmp_path)
    rows = list(csv.DictReader(open(summary, encoding="utf-8")))
    assert [r["variant"] for r in rows] == [f"V{i}" for i in range(1, 13)]
    assert [float(r["accuracy"]) for r in rows][:4] == [0.0, 0.0, 1.0, 1.0] and "Question:" in rows[0]["example_prompt"]
    runs = list(csv.DictReader(open(runs, encoding="utf-8")))
    assert len(runs) == 48 and {r["correct"] for r in runs} == {"True", "False"} and runs[0]["prompt"].startswith("<user>")


def test_stop_keeps_the_problems_that_ran_with_every_variant():
    settings = FragilitySettings(variants=4)
    stop = threading.Event()

    class Stopping(ScriptedGenerator):
        def generate(self, prompts, params, n_per_prompt=1, stop_event=None):
            out = super().generate(prompts, params, n_per_prompt)
            if len(self.batches) == 2:  # Stop pressed during the second call: its last rows were cut
                stop.set()
                for g in out[-3:]:
                    g.stop_reason = "stopped"
            return out

    problems = task_sets.benchmark_tasks("en", ["number"], 20)
    gen = Stopping(lambda msgs, j: "1")
    result = run_all(gen, problems, settings, stop=stop)
    assert len(gen.batches) == 2 and result.stopped and result.done
    # call 1: problems 1–8 (32 rows); call 2: problems 9–16, the last three rows of problem 16 cut
    assert len(result.rows) == 15 * 4 and {r.task.id for r in result.rows} == {t.id for t in problems[:15]}
    assert all(s.runs == 15 for s in result.stats())


def test_fragility_on_the_tiny_model(manager):
    generator = EngineGenerator(manager.llm(manager.catalog.spec("instruct_llm")))
    settings = FragilitySettings(variants=5, params=SamplingParams(max_new_tokens=3, greedy=True))
    problems = task_sets.benchmark_tasks("fr", ["number", "label"], 2)
    result = run_all(generator, problems, settings)
    assert len(result.rows) == 10 and all(r.prompt.startswith("<s>[INST] Question : ") for r in result.rows
                                          if r.variant.kind != "labels")
    prompts = [result.example_prompt(v) for v in result.variants]
    assert len(set(prompts)) == 5 and all(p.rstrip().endswith("[/INST]") for p in prompts)
    assert all(1 <= r.n_tokens <= 3 and r.correct is not None for r in result.rows)


def test_stop_ends_the_engine_call_in_flight_within_a_second(manager):
    stop, pressed = threading.Event(), []

    def on_step(done: int, total: int) -> None:  # rows of the call in flight have started decoding
        if not stop.is_set():
            pressed.append(time.perf_counter())
            stop.set()

    generator = EngineGenerator(manager.llm(manager.catalog.spec("instruct_llm")), on_step=on_step)
    settings = FragilitySettings(variants=2, params=SamplingParams(max_new_tokens=1500, greedy=True))
    result = run_all(generator, task_sets.benchmark_tasks("en", ["number"], 3), settings, stop=stop)
    assert time.perf_counter() - pressed[0] < 1.0
    assert result.stopped and result.rows == [] and result.total == 6


def test_through_gpu_tasks_progress_only_moves_forward_and_results_grow(manager):
    from engine import gpu_tasks

    gpu_tasks.bind(manager)  # what app.py does at start-up (off-Space: the plain functions, in this process)
    settings = FragilitySettings(variants=12, params=SamplingParams(max_new_tokens=2, greedy=True))
    problems = task_sets.benchmark_tasks("en", ["number"], 5)
    job = gpu_tasks.FragilityJob(manager.catalog.spec("instruct_llm"), tuple(problems), settings,
                                 tuple(plan_variants(problems, settings)))
    fractions, sizes = [], []
    for result in gpu_tasks.call(gpu_tasks.fragility, job, ("test", "fragility"),
                                 on_progress=lambda event: fractions.append(event.fraction)):
        sizes.append((len(result.rows), result.done))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 3
    rows = [n for n, _ in sizes]  # partial results may be merged on the way (only the latest state is worth sending)
    assert rows == sorted(rows) and all(n % 12 == 0 for n in rows) and sizes[-1] == (60, True)


def test_fragility_duration_follows_the_rows():
    from engine.models.catalog import load_catalog
    from engine.gpu_tasks import FragilityJob, durations

    spec = load_catalog("zerogpu", env={}).spec("instruct_llm")

    def seconds(variants: int, problems: int, tokens: int = 24, resident: bool = True) -> float:
        settings = FragilitySettings(variants=variants, params=SamplingParams(max_new_tokens=tokens))
        tasks = task_sets.benchmark_tasks("en", ["number"], problems)
        return durations.fragility(FragilityJob(spec, tuple(tasks), settings, tuple(plan_variants(tasks, settings))),
                                   lambda s: resident)

    assert seconds(4, 2) < seconds(12, 10) < seconds(12, 20) and seconds(6, 10, 24) < seconds(6, 10, 64)
    assert seconds(6, 10, resident=False) == seconds(6, 10) + durations.LOAD_LLM_S
    assert seconds(12, 40, 2048) == durations.MAX_S


def test_bench_runs_ama_and_the_experiment_batched_and_one_by_one(tiny_dir):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    args = ["--samples", "1", "--chains", "2", "--variants", "3", "--problems", "2", "--tokens", "3", "--repeats", "1",
            "--shape", "tiny"]
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "techniques.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1", GENAI_TINY_DIR=str(tiny_dir)))
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "ask-me-anything on arith-20 · 3 new tokens per call" in out and re.search(r"\n +2 +4 +[\d.]+ +[\d.]+", out)
    assert "prompt fragility: 3 variants × 2 problems = 6 rows" in out and "one by one ÷ app: " in out


# ============================================================================ through the app
def run_api(client, **kwargs):
    args = dict(language="en", task_kinds=["number"], n_problems=3, k_variants=6, k_examples=3, max_new_tokens=3)
    return client.predict(**{**args, **kwargs}, api_name="/fragility_experiment")


def test_api_chart_variants_and_exact_prompts(client):
    status, chart, table, prompts, raw, files = run_api(client)
    assert status.startswith("✅ Done: 18 rows (6 variants × 3 problems)")
    spread = raw["spread"]
    named = "**Accuracy from " if spread["low"] < spread["high"] else "**The same accuracy, "
    assert named in status and f"{round(100 * spread['low'])}%" in status
    data = chart["value"]["data"] if "value" in chart else chart["data"]
    assert [row[0] for row in data] == ["V1 · reference", "V2 · example order", "V3 · whitespace", "V4 · label wording",
                                        "V5 · choice of examples", "V6 · example order"]
    assert all(0 <= row[1] <= 100 for row in data) and [row[2] for row in data][:2] == ["reference", "example order"]
    assert [r[0] for r in table["data"]] == [f"V{i}" for i in range(1, 7)] and table["headers"][2] == "What changed"
    assert table["data"][3][2] == "labels “Q” / “A”" and {r[3] for r in table["data"]} == {3}
    variants = raw["variants"]
    exact = [v["prompt"] for v in variants]
    assert len(set(exact)) == 6 and all(p.startswith("<s>[INST] ") for p in exact)
    assert " ".join(exact[2].split()) == " ".join(exact[0].split())  # whitespace: the same words
    assert exact[3].replace("\nA:", "\nAnswer:").replace("Q:", "Question:") == exact[0]  # labels: the same text
    assert prompts.count('class="tech-call frag-prompt"') == 6 and "&lt;s&gt;[INST] Question: " in prompts
    assert raw["total"] == 18 and raw["done"] and not raw["stopped"] and spread["low"] <= spread["high"]
    assert [r[6] for r in table["data"]][0] == 0.0 and table["headers"][6] == "Answers changed vs V1 (%)"
    summary = next(p for p in files if Path(p).name == "fragility_variants.csv")
    assert [r["example_prompt"] for r in csv.DictReader(open(summary, encoding="utf-8"))] == exact


def test_api_in_french_names_the_spread_with_french_numbers(app_url):
    french = Client(app_url, verbose=False, headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    status, chart, table, prompts, raw, _ = run_api(french, language="fr", k_variants=3, n_problems=2)
    assert ("selon la variante" if raw["spread"]["low"] < raw["spread"]["high"] else "pour toutes les variantes") in status
    assert f"{round(100 * raw['spread']['low'])}\u202f%" in status  # French percent: a narrow no-break space
    data = chart["value"]["data"] if "value" in chart else chart["data"]
    assert [row[0] for row in data] == ["V1 · référence", "V2 · ordre des exemples", "V3 · espaces"]
    assert table["headers"][:3] == ["Variante", "Perturbation", "Ce qui change"]
    assert "Réponse :" in raw["variants"][0]["prompt"] and "justes" in prompts


@pytest.mark.parametrize("changes,error,message", [
    ({"k_variants": 13}, ValidationError, "K — variants .*must be between 2 and 12 \\(got 13\\)"),
    ({"k_variants": 1}, ValidationError, "between 2 and 12"),
    ({"k_variants": 12, "n_problems": 40}, ValidationError, "480 rows \\(12 variants × 40 problems\\): the limit is 240"),
    ({"k_examples": 0}, ValidationError, "between 1 and 8"),
    ({"task_kinds": []}, AppError, "No problem matches this choice"),
    ({"perturbations": []}, AppError, "Tick at least one thing for the variants to change"),
    ({"perturbations": ["labels"], "k_variants": 6}, AppError, "6 variants asked, but only 4 different ones"),
    ({"perturbations": ["jitter"]}, ValidationError, "jitter"),
])
def test_api_bad_input_gets_a_clear_message(client, changes, error, message):
    with pytest.raises(error, match=message):
        run_api(client, **changes)


def test_api_stop_ends_the_experiment_and_keeps_whole_problems(app_url):
    own = Client(app_url, verbose=False)  # its own session: Stop reaches this client's experiment only
    job = own.submit(language="en", task_kinds=["number"], n_problems=30, k_variants=6, max_new_tokens=200,
                     api_name="/fragility_experiment")
    deadline = time.monotonic() + 300
    while not any(out[4] and out[4]["rows"] for out in job.outputs()):  # until the first partial result
        assert not job.done() and time.monotonic() < deadline, "no partial result"
        time.sleep(0.05)
    partial = next(out for out in job.outputs() if out[4] and out[4]["rows"])
    assert partial[4]["rows"] % 6 == 0 and not partial[4]["done"] and "of 180 rows finished" in partial[0]
    own.predict(api_name="/stop_fragility")
    status, _chart, _table, _prompts, raw, files = job.result()
    assert raw["stopped"] and raw["done"] and 0 < raw["rows"] < 180 and raw["rows"] % 6 == 0
    assert status.startswith("⏹ Stopped after") and len(files) == 2


def test_a_fragility_experiment_travels_by_link_and_to_the_wall(client):
    inputs = {"language": "en", "task_kinds": ["number"], "n_problems": 2, "k_variants": 3, "k_examples": 2,
              "perturbations": ["order", "labels"], "max_new_tokens": 3, "seed": 4}
    status, chart, table, prompts, raw, _ = client.predict(**inputs, api_name="/fragility_experiment")
    chart = chart.get("value", chart)
    outputs = {"status": {"type": "markdown", "value": status},
               "chart": {"type": "chart", "columns": chart["columns"], "data": chart["data"]},
               "prompts": {"type": "html", "value": prompts}, "raw": {"type": "json", "value": raw}}
    shared = client.predict("fragility_experiment", inputs, outputs, api_name="/share_experiment")
    opened = client.predict(shared["id"], api_name="/open_experiment")
    assert opened["api"] == "/fragility_experiment" and opened["tab"] == "techniques"
    assert opened["inputs"] == inputs and opened["outputs"]["chart"]["data"] == chart["data"]
    again = client.predict(**opened["inputs"], api_name=opened["api"])  # greedy: the same prompts and answers
    assert again[4]["variants"] == raw["variants"]
    room = client.predict("Fragilité", api_name="/wall_open_room")
    client.predict(room["room"], "Inès", shared["id"], api_name="/wall_post")
    card = client.predict(room["room"], api_name="/wall")["entries"][0]
    assert card["title"] == "[fragility] K=3 · k=2 · number × 2"
    parts = {p["label"]: p for p in card["card"]["parts"]}
    assert parts["tech.frag_title"]["text"] == status  # the status, with the spread named
    assert [row[0] for row in parts["tech.frag_chart"]["rows"]] == ["V1 · reference", "V2 · example order",
                                                                   "V3 · label wording"]


# ============================================================================ ZeroGPU
def test_on_zerogpu_the_experiment_is_one_gpu_call_and_stops(space):  # noqa: F811 - the fixture imported above
    """Each ``@spaces.GPU`` function has its own worker; its first call counts its duration from the fork (the
    weights' copy to the GPU, instant here), every call keeps MARGIN_S. So the long run to stop comes first,
    and the runs checked to the end are small: the duration's fixed part leaves them several times what
    the tiny model takes on a loaded CPU (the estimates are for a 7B model on a GPU)."""
    client, stub, _ = space
    mark = len(stub.calls)
    job = client.submit(language="en", n_problems=30, k_variants=6, max_new_tokens=1200,
                        api_name="/fragility_experiment")
    wait_for_progress(job, "/fragility_experiment")
    client.predict(api_name="/stop_fragility")
    status, *_rest, raw, _files = job.result()
    one_gpu_call(stub, mark)  # released: the worker's call ended
    assert status.startswith("⏹") and raw["stopped"] and raw["rows"] < 180
    mark = len(stub.calls)
    status, _chart, _table, _prompts, raw, files = run_api(client, k_variants=4, n_problems=2, max_new_tokens=1)
    one_gpu_call(stub, mark)
    assert raw["done"] and raw["rows"] == 8 and len({v["prompt"] for v in raw["variants"]}) == 4 and len(files) == 2
    client.predict(technique="zero_shot", max_new_tokens=4, api_name="/run_technique")  # the technique worker's first call
    mark = len(stub.calls)
    _md, vote_md, _plot, _calls, ama = client.predict(technique="ask_me_anything", language="en", problem="arith-04",
                                                      ama_chains=1, max_new_tokens=4, api_name="/run_technique")
    one_gpu_call(stub, mark)
    assert ama["finished"] and ama["n_calls"] == 2 and ama["batches"] == 2 and "| Chain |" in vote_md
