"""What "Give the model a source" costs before any GPU work, and what it adds to the prompt.

    python bench/retrieval.py                               # the example sources, then 20,000 and 100,000 characters
    python bench/retrieval.py --chars 100000 --repeats 10   # only a 100,000-character source (the limit)

For each source, on this machine's CPU (retrieval runs in the request's process, before the GPU call):

* ``cold``: the first question on a source never seen — cut into passages, indexed (BM25, bm25s),
  searched: what the first click with a new source waits for;
* ``warm``: another question on the same source (the index is kept): every later click;
* the ratio cold / warm (both measured, medians over ``--repeats``).

Then the tokens the passages add to the instruct model's prompt (the chat turn with the extracts,
minus the question alone), for k = 1, 3 and 8, averaged over the example questions: the prefill the
source costs on the GPU. Counted with the Mistral v1 tokenizer (the real vocabulary, offline).
The large sources are the three example sources repeated, each copy numbered.
"""
from __future__ import annotations

import argparse
import statistics
import sys

from common import timed  # also puts the project on sys.path


def big_source(chars: int) -> str:
    from engine.retrieval import load_presets

    texts = [p.text("en") for p in load_presets()]
    parts, size, copy = [], 0, 0
    while size < chars:
        copy += 1
        text = f"Copy {copy}.\n\n" + texts[copy % len(texts)]
        parts.append(text)
        size += len(text) + 2
    return "\n\n".join(parts)[:chars]


def time_source(text: str, questions: list[str], repeats: int) -> tuple[int, float, float]:
    """(passages, cold ms, warm ms): medians over ``repeats``."""
    from engine.retrieval import index as index_mod

    cold, warm = [], []
    for r in range(repeats):
        index_mod._cache.clear()
        cold.append(timed(lambda: index_mod.index_for(text, "en").search(questions[r % len(questions)], 3)))
        for q in questions:
            warm.append(timed(lambda: index_mod.index_for(text, "en").search(q, 3)))
    return len(index_mod.index_for(text, "en").chunks), statistics.median(cold) * 1e3, statistics.median(warm) * 1e3


def added_tokens(ks: list[int]) -> dict[int, float]:
    """Mean tokens the k best passages add to the instruct prompt, over the example questions (EN and FR)."""
    from engine.retrieval import load_presets, make_plan
    from engine.models.tiny import tiny_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_path("tiny/mistral-instruct")))
    out = {}
    for k in ks:
        added = []
        for p in load_presets():
            for lang in ("en", "fr"):
                for question, _ in p.questions[lang]:
                    plan = make_plan(p.text(lang), question, "both", "instruct", k, lang)
                    chat = tok.apply_chat_template([{"role": "user", "content": plan.chat(question)}], tokenize=False)
                    alone = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False)
                    added.append(len(tok(chat)["input_ids"]) - len(tok(alone)["input_ids"]))
        out[k] = statistics.mean(added)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--chars", type=int, nargs="*", default=[20_000, 100_000],
                        help="sizes of the larger sources, in characters (default: 20000 100000)")
    parser.add_argument("--no-presets", action="store_true", help="skip the three example sources")
    parser.add_argument("--repeats", type=int, default=5, help="cold runs per source (default 5)")
    parser.add_argument("--k", type=int, nargs="*", default=[1, 3, 8], help="passages per prompt to count tokens for")
    args = parser.parse_args(argv)

    from engine.retrieval import load_presets

    questions = [q for p in load_presets() for q, _ in p.questions["en"]]
    sources = [] if args.no_presets else [(f"example: {p.id}", p.text("en")) for p in load_presets()]
    sources += [(f"{n:,} characters", big_source(n)) for n in args.chars]
    print("| source | characters | passages | cold: cut + index + search (ms) | warm: search (ms) "
          "| ratio cold / warm |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, text in sources:
        n, cold, warm = time_source(text, questions, max(1, args.repeats))
        print(f"| {name} | {len(text):,} | {n:,} | {cold:.2f} | {warm:.3f} | {cold / warm:.0f}× |")
    tokens = added_tokens(args.k)
    print("\ntokens added to the instruct prompt by the passages (mean over the example questions, Mistral v1): "
          + ", ".join(f"k = {k}: {v:.0f}" for k, v in tokens.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
