"""Streaming an answer: the server's time per update at token 50 and at token 2,000.

    python bench/streaming.py [--tokens 50 2000] [--window 40] [--baseline REF]

A Base vs Instruct comparison streams one update per new token. What the server does for each,
measured here in one process on the tiny profile's model (``GENAI_TINY_DIR``), with the token ids
of a long French text (what the model writes does not matter, only how long the answer is):

* **decode loop**, per token and row: what the engine adds to a request for its new token (its
  token info with the top-5 alternatives, when "show probabilities" is on);
* **update**, per update: both panes' ``Request.update()`` and the tab's rendering of the two
  panes (``tabs.base_vs_instruct._outputs``), without and with the probabilities.

Each figure is the median over ``--window`` tokens from each ``--tokens`` length on, the answer
having streamed up to there as in the app (an update after every token); the lengths take turns,
token by token, so that a change in the machine's load hits them alike. Printed: milliseconds at
each length and the ratio last ÷ first (goal: within 1.5×).

``--baseline REF`` runs the same measurement, in a child process, on the code of git revision REF
(e.g. ``main`` before issue #23), taken with ``git archive`` into a temporary folder: a baseline
that is run, not computed.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from serve import baseline_tree

ROOT = Path(__file__).resolve().parent.parent
TEXT = ("Il était une fois, dans un village au bord de la mer, une jeune fille qui rêvait de construire un "
        "phare. Chaque soir, elle regardait les bateaux rentrer au port et comptait les lumières. « Un jour, "
        "disait-elle, aucun marin ne se perdra plus dans la nuit. » Les années passèrent ; elle apprit la "
        "maçonnerie, l'optique et les marées, 12 € par leçon, et l'été 1912 le phare s'alluma enfin. ")


def measure(root: Path, lengths: list[int], window: int) -> dict:
    """The figures for the code under ``root`` (imported from there)."""
    sys.path.insert(0, str(root))
    import torch

    from engine.models.catalog import load_catalog
    from engine.chat.compare import PaneState
    from engine.generation import Request, SamplingParams
    from engine.generation.batch import ModelBatch
    from engine.models.hardware import detect
    from engine.serving.manager import ModelManager
    from tabs.base_vs_instruct import _outputs

    manager = ModelManager(load_catalog("tiny", env={}), detect())
    handles = [manager.llm(manager.catalog.spec(role)) for role in ("base_llm", "instruct_llm")]
    tok = handles[1].tokenizer
    ids: list[int] = []
    while len(ids) < max(lengths) + window + 1:
        ids += tok(TEXT, add_special_tokens=False)["input_ids"]
    vocab = len(tok)
    probs = torch.softmax(torch.randn(vocab, generator=torch.Generator().manual_seed(0)), dim=-1)
    params = SamplingParams(max_new_tokens=len(ids), greedy=True)
    batch = type("TwoRowBatch", (), {"__len__": lambda self: 2})()  # what ModelBatch._record reads of its batch
    meta = {"prompt": "Il était une fois", "sampling": {}}

    keeps_renders = "rendered" in inspect.signature(_outputs).parameters  # this tree's tab renders only what is new

    def stream(show_probs: bool, length: int) -> dict:
        """Both panes' requests, streamed to ``length`` tokens as the app does (an update after each)."""
        top = 5 if show_probs else 0
        state = {"reqs": [Request(h, [1, 2, 3], params, seed=0, top_probs=top) for h in handles],
                 "panes": tuple(PaneState(role, h.spec.id, handles[0].prepare_raw("Il était une fois"))
                                for role, h in zip(("base", "instruct"), handles)),
                 "rendered": None, "pos": 0, "probs": show_probs}
        if keeps_renders:  # what the tab's handler keeps for one run
            from ui.token_probs import Rendered

            state["rendered"] = (Rendered(), Rendered())
        while state["pos"] < length:
            step(state)
        return state

    def step(state: dict) -> tuple[float, float]:
        """One more token for both panes, then one update: (decode loop per row, update) seconds."""
        token = ids[state["pos"]]
        t0 = time.perf_counter()
        for r in state["reqs"]:
            r.display_probs = probs if state["probs"] else None
            ModelBatch._record(batch, [r], [token])
        t1 = time.perf_counter()
        for pane, r in zip(state["panes"], state["reqs"]):
            pane.update = r.update()
        extra = {"rendered": state["rendered"]} if keeps_renders else {}
        _outputs(state["panes"], state["probs"], "fr", meta, params, **extra)
        t2 = time.perf_counter()
        state["pos"] += 1
        return (t1 - t0) / len(state["reqs"]), t2 - t1

    def run(show_probs: bool) -> dict[int, tuple[float, float]]:
        streams = {n: stream(show_probs, n) for n in lengths}
        times: dict[int, list[tuple[float, float]]] = {n: [] for n in lengths}
        for _ in range(window):  # the lengths in turn: a change of the machine's load hits them alike
            for n in lengths:
                times[n].append(step(streams[n]))
        return {n: (statistics.median(t[0] for t in ts) * 1e3, statistics.median(t[1] for t in ts) * 1e3)
                for n, ts in times.items()}

    return {"text": run(False), "probs": run(True)}


def table(name: str, figures: dict, lengths: list[int]) -> list[str]:
    first, last = lengths[0], lengths[-1]
    lines = [f"### {name}", "",
             "| per update (ms) | " + " | ".join(f"token {n:,}" for n in lengths) + f" | ratio {last:,} ÷ {first:,} |",
             "| --- |" + " --- |" * (len(lengths) + 1)]
    rows = [("update, text only (both panes: update + rendering)", "text", 1),
            ("update, with probabilities", "probs", 1),
            ("decode loop, per token and row (token info)", "probs", 0)]
    for label, kind, col in rows:
        values = [figures[kind][str(n)][col] for n in lengths]
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values)
                     + f" | {values[-1] / values[0]:.2f}× |")
    return lines + [""]


def child(root: Path, args: argparse.Namespace) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, __file__, "--child", str(root), "--window", str(args.window), "--tokens",
           *map(str, args.tokens)]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the measurement of {root} crashed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[50, 2000],
                        help="answer lengths at which an update is timed (default: 50 2000)")
    parser.add_argument("--window", type=int, default=40, help="tokens measured at each length (default: 40)")
    parser.add_argument("--baseline", metavar="REF", help="also measure git revision REF (e.g. main)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        figures = measure(args.child, args.tokens, args.window)
        print(json.dumps({k: {str(n): v for n, v in f.items()} for k, f in figures.items()}))
        return
    lengths = sorted(args.tokens)
    print(f"streaming: the server's time per update, median of {args.window} tokens at each length, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    lines = table("this tree", child(ROOT, args), lengths)
    if args.baseline:
        old = baseline_tree(args.baseline)
        lines += table(f"baseline: {args.baseline}", child(old, args), lengths)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
