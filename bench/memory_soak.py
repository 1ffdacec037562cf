"""A day of a class in a few minutes: does the server's memory stay flat?

    python bench/memory_soak.py [--sessions 1000] [--tokens 50] [--parallel 20] [--checkpoints 10]
                                [--baseline REF]

One process serves ``--sessions`` sessions, ``--parallel`` at a time, each running one Base vs
Instruct comparison of ``--tokens`` tokens per pane through the app's own path for a session's
click (``engine.gpu_tasks.call(compare, job, (session, "compare"))``: the stop board, the
one-run rule, the fair turns, the model leases, the decode engine): 1,000 sessions × 2 panes × 50
tokens = 100,000 decoded tokens. The tiny profile's models (``GENAI_TINY_DIR``).

Printed at each checkpoint: sessions served, tokens decoded, the process's RSS (after a garbage
collection) and the size of every per-step or per-session structure the engine keeps. The first
checkpoint is the warm-up; the verdict is the RSS growth from it to the end (goal: flat, i.e. no
more than what the allocator's noise gives, a few MB). ``--baseline REF`` runs the same soak on
git revision REF (taken with ``git archive``) in a child process.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from serve import baseline_tree

ROOT = Path(__file__).resolve().parent.parent


def sizes(manager) -> dict:
    """The structures that could grow with tokens or sessions."""
    from engine.models import leases
    from engine.generation import engine
    from engine.runtime.stopping import BOARD

    eng = engine()
    out = {"engine token window": len(eng._tok_window), "engine waiting": len(eng._waiting),
           "engine batches": len(eng._batches), "stop board keys": len(BOARD._running),
           "leases": sum(sum(c.values()) for c in leases._holds.values()),
           "model cache reservations": len(manager._reserved)}
    out["turns: owners remembered"] = eng.turns.owners()
    return out


def soak(root: Path, args: argparse.Namespace) -> list[dict]:
    sys.path.insert(0, str(root))
    import psutil

    from engine import generation, gpu_tasks
    from engine.models.catalog import load_catalog
    from engine.generation import SamplingParams
    from engine.models.hardware import detect
    from engine.serving.manager import ModelManager

    manager = ModelManager(load_catalog("tiny", env={}), detect())
    gpu_tasks.bind(manager)
    generation.set_memory(manager)
    base, instruct = manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm")
    params = SamplingParams(max_new_tokens=args.tokens, temperature=0.8, seed=1)  # sampled: every answer is full length
    process = psutil.Process()
    tokens = [0]

    def session(i: int) -> None:
        job = gpu_tasks.CompareJob(base, instruct, f"Élève {i} : raconte-moi une histoire.", params)
        for panes in gpu_tasks.call(gpu_tasks.compare, job, (f"session-{i:05d}", "compare")):
            last = panes
        tokens[0] += sum(p.update.n_tokens for p in last)

    rows = []
    per = args.sessions // args.checkpoints
    started = time.perf_counter()
    with ThreadPoolExecutor(args.parallel) as pool:
        for k in range(args.checkpoints):
            list(pool.map(session, range(k * per, (k + 1) * per)))
            gc.collect()
            rows.append({"sessions": (k + 1) * per, "tokens": tokens[0], "rss_mb": process.memory_info().rss / 2**20,
                         "seconds": time.perf_counter() - started, **sizes(manager)})
    generation.engine().close()
    return rows


def report(name: str, rows: list[dict]) -> list[str]:
    keys = [k for k in rows[0] if k not in ("sessions", "tokens", "rss_mb", "seconds")]
    lines = [f"### {name}", "", "| sessions | tokens | RSS MB | s | " + " | ".join(keys) + " |",
             "| --- |" + " --- |" * (3 + len(keys))]
    for r in rows:
        lines.append(f"| {r['sessions']:,} | {r['tokens']:,} | {r['rss_mb']:.1f} | {r['seconds']:.0f} | "
                     + " | ".join(f"{r[k]:,}" for k in keys) + " |")
    warm, end = rows[0]["rss_mb"], rows[-1]["rss_mb"]
    lines += ["", f"RSS after warm-up {warm:.1f} MB → end {end:.1f} MB: {end - warm:+.1f} MB "
                  f"({end / warm:.3f}× over {rows[-1]['sessions'] - rows[0]['sessions']:,} more sessions, "
                  f"{rows[-1]['tokens'] - rows[0]['tokens']:,} more tokens)", ""]
    return lines


def run_child(root: Path, args: argparse.Namespace) -> list[dict]:
    cmd = [sys.executable, __file__, "--child", str(root), "--sessions", str(args.sessions), "--tokens",
           str(args.tokens), "--parallel", str(args.parallel), "--checkpoints", str(args.checkpoints)]
    done = subprocess.run(cmd, cwd=root, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the soak of {root} crashed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--sessions", type=int, default=1000, help="sessions, one comparison each (default: 1000)")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per pane (default: 50)")
    parser.add_argument("--parallel", type=int, default=20, help="sessions at once (default: 20)")
    parser.add_argument("--checkpoints", type=int, default=10, help="RSS readings; the first is the warm-up (default: 10)")
    parser.add_argument("--baseline", metavar="REF", help="also soak the code of git revision REF (e.g. main)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(soak(args.child, args)))
        return
    if not os.environ.get("GENAI_TINY_DIR"):
        raise SystemExit("set GENAI_TINY_DIR (the tiny checkpoints; built there on first use)")
    print(f"memory soak: {args.sessions:,} sessions × 2 panes × {args.tokens} tokens, {args.parallel} at a time; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    lines = report("this tree", run_child(ROOT, args))
    if args.baseline:
        lines += report(f"baseline: {args.baseline}", run_child(baseline_tree(args.baseline), args))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
