"""One student clicks Generate ten times while five others each run one comparison.

    python bench/class_fairness.py [--students 5] [--clicks 10] [--tokens 48] [--gap 0.05]
                                   [--baseline REF] [--rounds 1]

For each code tree (this one, and with ``--baseline REF`` the code of git revision REF taken with
``git archive``, e.g. ``main`` before issue #23) it starts ``python app.py --profile tiny`` from
that tree (``GENAI_TINY_DIR``: the tiny checkpoints) and calls Base vs Instruct's ``/compare``
through the REST API, each student in a session of their own:

1. *alone*: each student's comparison, one after the other, nothing else running;
2. *everyone once*: the clicker and the students each send one comparison at once (what batching
   six comparisons costs on this machine: the floor of the next figure);
3. *ten clicks*: the clicker sends ``--clicks`` comparisons from one session (``gradio_client``,
   as a script would; the page itself sends one, its button being busy), ``--gap`` seconds apart,
   then the students each send theirs.

Printed per tree: each student's completion time in 3 ÷ alone (goal: ≤ 1.5×), the same in 2,
how many of the clicker's comparisons ran (the others were refused with a message), and the
tokens the engine generated during 3 (About's counter). The baseline is run, never computed.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_client import Answer, call, named_args  # noqa: E402
from serve import baseline_tree, start_app, stop_process  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def compare_args(url: str, prompt: str, tokens: int) -> list:
    """A greedy comparison, in the argument order of the app at ``url`` (this tree's and the
    baseline's signatures differ)."""
    return named_args(url, "compare", prompt=prompt, max_new_tokens=tokens, greedy=True, seed=1)


def tokens_generated(url: str) -> int:
    answer = call(url, "about", [], timeout=120)
    overview = answer.data[0] if isinstance(answer.data, list) else str(answer.data)
    return int(re.search(r"tokens generated: ([\d,]+)", overview).group(1).replace(",", ""))


def at_once(url: str, sends: list[tuple[float, str]], tokens: int, clicks: int = 0, gap: float = 0.0) -> tuple:
    """The students' comparisons, each (delay, prompt) from its own session and thread ``delay`` s
    after the start; with ``clicks``, one more session first sends that many, ``gap`` s apart, as a
    page's fast clicks or a script do (``gradio_client``: one session, several jobs). Returns the
    students' answers and, per click, its last outputs or the message it was refused with."""
    from gradio_client import Client

    answers: list[Answer | None] = [None] * len(sends)

    def one(i: int, delay: float, prompt: str) -> None:
        time.sleep(delay)
        answers[i] = call(url, "compare", compare_args(url, prompt, tokens), session_hash=uuid.uuid4().hex[:11],
                          timeout=1200)

    clicker = Client(url, verbose=False) if clicks else None  # connected before anyone starts
    threads = [threading.Thread(target=one, args=(i, *s)) for i, s in enumerate(sends)]
    jobs = []
    for th in threads:
        th.start()
    for i in range(clicks):
        jobs.append(clicker.submit(*compare_args(url, f"Je clique ({i + 1}) !", tokens), api_name="/compare"))
        time.sleep(gap)
    outcomes = []
    for job in jobs:
        try:
            outcomes.append(job.result(timeout=1200))
        except Exception as exc:  # noqa: BLE001 - a refused click: its message
            outcomes.append(str(exc))
    for th in threads:
        th.join()
    return answers, outcomes


def scenario(url: str, args: argparse.Namespace) -> dict:
    students = [f"Élève {i} : pourquoi le ciel est-il bleu ?" for i in range(args.students)]
    call(url, "compare", compare_args(url, "Bonjour", 4), timeout=600)  # the models are loaded before any timing
    alone = [call(url, "compare", compare_args(url, p, args.tokens), timeout=1200).done_s for p in students]
    once, _ = at_once(url, [(0.05, p) for p in students], args.tokens, clicks=1)
    before = tokens_generated(url)
    spam, clicks = at_once(url, [(args.clicks * args.gap, p) for p in students], args.tokens, clicks=args.clicks,
                           gap=args.gap)  # the students send theirs right after the last click
    during = tokens_generated(url) - before
    return {"alone": alone, "once": [a.done_s for a in once], "with_clicks": [a.done_s for a in spam],
            "clicks_ran": sum(not isinstance(c, str) for c in clicks),
            "refused": sorted({c for c in clicks if isinstance(c, str)})[:1],
            "students_ok": all(a.ok for a in spam + once), "tokens": during}


def measure(root: Path, args: argparse.Namespace) -> list[dict]:
    proc, url = start_app(root=root)
    try:
        return [scenario(url, args) for _ in range(args.rounds)]
    finally:
        stop_process(proc)


def report(name: str, rounds: list[dict], args: argparse.Namespace) -> list[str]:
    lines = [f"### {name}", "", "| student | alone | everyone once (÷ alone) | with the ten clicks (÷ alone) |",
             "| --- | --- | --- | --- |"]
    ratios, floors, extra = [], [], []
    for k, r in enumerate(rounds):
        for i, (a, o, w) in enumerate(zip(r["alone"], r["once"], r["with_clicks"])):
            ratios.append(w / a)
            floors.append(o / a)
            extra.append(w / o)
            lines.append(f"| {i + 1}{f' (round {k + 1})' if len(rounds) > 1 else ''} | {a:.2f} s | {o:.2f} s "
                         f"({o / a:.2f}×) | {w:.2f} s ({w / a:.2f}×) |")
    goal = "met" if max(ratios) <= 1.5 else "missed"
    lines += ["", f"- completion ÷ alone with the ten clicks: mean {statistics.mean(ratios):.2f}×, worst "
                  f"{max(ratios):.2f}× (goal ≤ 1.5×: {goal}); everyone once: mean {statistics.mean(floors):.2f}×",
              f"- what the extra clicks cost the others (with the ten clicks ÷ everyone once): mean "
              f"{statistics.mean(extra):.2f}×, worst {max(extra):.2f}×",
              f"- the clicker's comparisons that ran: {', '.join(str(r['clicks_ran']) for r in rounds)} of {args.clicks}"
              + (f" (the others: \"{rounds[0]['refused'][0]}\")" if rounds[0]["refused"] else ""),
              "- tokens the engine generated during the ten clicks: " + ", ".join(f"{r['tokens']:,}" for r in rounds),
              f"- every student's comparison completed: {all(r['students_ok'] for r in rounds)}", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--students", type=int, default=5, help="students with one comparison each (default: 5)")
    parser.add_argument("--clicks", type=int, default=10, help="clicks of the one student (default: 10)")
    parser.add_argument("--tokens", type=int, default=48, help="max new tokens per pane (default: 48, the tiny tab's)")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between two clicks (default: 0.05)")
    parser.add_argument("--rounds", type=int, default=1, help="times the three phases run per tree (default: 1)")
    parser.add_argument("--baseline", metavar="REF", help="also run the code of git revision REF (e.g. main)")
    args = parser.parse_args(argv)
    if not os.environ.get("GENAI_TINY_DIR"):
        raise SystemExit("set GENAI_TINY_DIR (the tiny checkpoints; built there on first use)")
    print(f"class fairness: {args.students} students, one student clicking {args.clicks} times, {args.tokens} tokens "
          f"per pane; load average {os.getloadavg()[0]:.1f}\n")
    lines = report("this tree", measure(ROOT, args), args)
    if args.baseline:
        lines += report(f"baseline: {args.baseline}", measure(baseline_tree(args.baseline), args), args)
    print("\n".join(lines))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
