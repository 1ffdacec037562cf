"""A class at once, some of it hostile, then many short visits: does anyone wait too long, does
memory stay flat?

    python bench/load_soak.py [--rounds 3] [--compares 30] [--tokens 64] [--tokenize 10] [--chars 100000]
                              [--benchmarks 5] [--sweeps 2] [--images 3] [--hostile 6] [--soak 2000]
                              [--url http://127.0.0.1:7860/ --pid PID]

Without ``--url`` it starts ``python app.py --profile tiny`` itself (random tiny models: the
times are the app's serving overhead and its queueing, not a real model's speed). Each round
sends, all at once from separate sessions: Base vs Instruct comparisons, 100,000-character
tokenizations, technique benchmarks, image sweeps and single images, and hostile requests
(NaN temperature, a 1,000,000-character prompt, an oversized sweep, a server path as model).
Then the soak: ``--soak`` calls from new sessions (About, Stop, a tokenization). Printed: errors
(hostile requests must be refused, the others must complete), p50/p95 of the first output and
of the end per kind of request, the longest wait, and the app's RSS before, after each round and
after the soak (its ratio to the RSS after the first round: the baseline is measured).
"""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import httpx
import psutil

from api_client import Answer, call
from serve import start_app, stop_process

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc] + proc.children(recursive=True)) / 1e6


def has_token(outputs: list) -> bool:
    """A Base vs Instruct update in which a pane shows its first token."""
    raw = outputs[-1] or {}
    return any((raw.get(side) or {}).get("tokens", 0) > 0 for side in ("base", "instruct"))


def compare_args(prompt: str, tokens: int, temperature: float = 0.7, seed: int = 1) -> list:
    # no history, no source
    return [prompt, "", "", "", False, False, tokens, temperature, 0.95, 50, 1.0, False, seed, None, "", "off",
            "instruct", 3]


def jobs(args: argparse.Namespace, round_no: int) -> list[tuple[str, str, list, bool]]:
    """(kind, endpoint, data, hostile) of one round."""
    out: list[tuple[str, str, list, bool]] = []
    for i in range(args.compares):
        out.append(("compare", "compare", compare_args(f"Élève {i} : raconte une histoire", args.tokens, seed=i), False))
    text = ("Le tokeniseur découpe le texte en morceaux. " * (args.chars // 43 + 1))[: args.chars]
    for _ in range(args.tokenize):
        out.append(("tokenize", "tokenize", [text, ["mistral-v1", "tekken"], "", False, False], False))
    for i in range(args.benchmarks):
        out.append(("benchmark", "benchmark_techniques",
                    [["zero_shot", "few_shot"], "fr", ["number"], 2, 2, False, 0, 2, 0.8, 1, 2, 2, "", 8, i, 3], False))
    for i in range(args.sweeps):
        out.append(("sweep", "image_grid_sweep", ["un phare", "sdxl_turbo", "seed", "1, 2, 3", "style",
                                                  "aquarelle, néon, fusain", 42, ""], False))
    for i in range(args.images):
        out.append(("image", "generate_images", ["un phare", "", "", ["sdxl_turbo"], i, True, "sdxl_turbo", 1, 0.0, 64],
                    False))
    hostile = [
        ("compare", compare_args("NaN", args.tokens, temperature=float("nan"))),
        ("compare", compare_args("x" * 1_000_000, args.tokens)),
        ("image_grid_sweep", ["p", "sdxl_base", "seed", ",".join(map(str, range(20))), "guidance",
                              ",".join(map(str, range(20))), 42, ""]),
        ("compare", ["p", "", "/etc", "", False, False, 4, 0.7, 0.95, 50, 1.0, False, 1, None, "", "off",
                     "instruct", 3]),
        ("tokenize", ["a" * 2_000_000, ["tekken"], "", False, False]),
        ("compare", compare_args("seed", args.tokens, seed=2**70)),
    ]
    for i in range(args.hostile):
        endpoint, data = hostile[i % len(hostile)]
        out.append(("hostile", endpoint, data, True))
    return out


def run_round(url: str, args: argparse.Namespace, round_no: int) -> list[tuple[str, bool, Answer]]:
    results: list[tuple[str, bool, Answer]] = []
    lock = threading.Lock()

    def one(kind: str, endpoint: str, data: list, hostile: bool) -> None:
        answer = call(url, endpoint, data, timeout=args.timeout,
                      first_token=has_token if endpoint == "compare" and not hostile else None)
        with lock:
            results.append((kind, hostile, answer))

    threads = [threading.Thread(target=one, args=job) for job in jobs(args, round_no)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def soak(url: str, n: int, timeout: float) -> int:
    """``n`` calls, each from a new session: the class's visits that leave state behind."""
    errors = 0
    text = "Bonjour la classe ! " * 5000
    with httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0)) as client:
        for i in range(n):
            endpoint, data = (("about", []), ("stop_technique", []), ("tokenize", [text, ["mistral-v1"], "", False, False]),
                              ("memory_plan", ["mistral-7b", 4096, 1]))[i % 4]
            if not call(url, endpoint, data, timeout=timeout, client=client).ok:
                errors += 1
    return errors


def report(results: list[tuple[str, bool, Answer]], round_no: int, rss: float, rss_base: float) -> int:
    errors = 0
    for kind, hostile, a in results:
        refused = a.status == 422 or (a.event == "error" and a.messages)
        if hostile and not refused:
            errors += 1
        if not hostile and not a.ok:
            errors += 1
    print(f"round {round_no}: {len(results)} requests, errors {errors}, RSS {rss:.0f} MB "
          f"({rss / rss_base:.2f}× after round 1)")
    print(f"  {'kind':<10} {'n':>3} | {'first output p50/p95':>22} | {'done p50/p95':>17} | {'max done':>8}"
          "   (compare: first output = first token)")
    for kind in ("compare", "tokenize", "benchmark", "sweep", "image", "hostile"):
        rows = [a for k, _, a in results if k == kind]
        if not rows:
            continue
        first = [(a.first_token_s if kind == "compare" else a.first_output_s) for a in rows]
        first = [f for f in first if f is not None]
        done = [a.done_s for a in rows if a.done_s is not None]
        print(f"  {kind:<10} {len(rows):>3} | {pct(first, .5):9.2f} / {pct(first, .95):7.2f} s | "
              f"{pct(done, .5):6.2f} / {pct(done, .95):6.2f} s | {max(done, default=float('nan')):7.2f} s")
    for kind, hostile, a in results:
        if not hostile and not a.ok:
            print(f"  failed {kind}: {a.status} {a.event} {a.text()[:200]}")
    return errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=None, help="a running app (default: start one with --profile tiny)")
    parser.add_argument("--pid", type=int, default=None, help="the running app's process id (for its RSS)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compares", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--tokenize", type=int, default=10)
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--benchmarks", type=int, default=5)
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--hostile", type=int, default=6)
    parser.add_argument("--soak", type=int, default=2000, help="calls from new sessions after the rounds")
    parser.add_argument("--sessions", type=int, default=None, help="GENAI_LIMIT_SESSIONS for the app it starts")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    proc = None
    url, pid = args.url, args.pid
    if url is None:
        env = {"GENAI_LIMIT_SESSIONS": str(args.sessions)} if args.sessions else {}
        proc, url = start_app(env=env)
        pid = proc.pid
    try:
        call(url, "compare", compare_args("warm-up", 4))  # load the tiny models once
        rss_start = rss_mb(pid) if pid else float("nan")
        print(f"app RSS after warm-up: {rss_start:.0f} MB")
        total_errors, rss_base = 0, None
        for r in range(1, args.rounds + 1):
            results = run_round(url, args, r)
            rss = rss_mb(pid) if pid else float("nan")
            rss_base = rss_base or rss
            total_errors += report(results, r, rss, rss_base)
        if args.soak:
            started = time.perf_counter()
            soak_errors = soak(url, args.soak, args.timeout)
            rss = rss_mb(pid) if pid else float("nan")
            total_errors += soak_errors
            print(f"soak: {args.soak} calls from new sessions in {time.perf_counter() - started:.1f} s, errors "
                  f"{soak_errors}, RSS {rss:.0f} MB ({rss / (rss_base or rss):.2f}× after round 1)")
        print(f"total errors: {total_errors}")
    finally:
        if proc is not None:
            stop_process(proc)


if __name__ == "__main__":
    main()
