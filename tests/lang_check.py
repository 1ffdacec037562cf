"""Which visible words on a page belong to the other UI language (used by tests/test_languages.py).

Each language's word list is made from the UI string tables themselves: the words that appear in
the English strings and never in the French ones are English-only (and the reverse), plus the
texts Gradio writes itself. A page in French must show none of the English-only words outside
content (model outputs, the user's text, code, token pieces), model names and units.
"""
from __future__ import annotations

import re

from ui.i18n import tables

WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿœŒ]+(?:['’][A-Za-zÀ-ÖØ-öø-ÿœŒ]+)?")
SPACES = re.compile(r"[ \t\u00a0]+")
CODEISH = re.compile(r"[_/\\=@<>\[\]{}#$]|\w\.\w|\d")

# Texts Gradio draws itself, and English found in engine output before it was translated.
EXTRA = {
    "en": {"warning", "error", "processing", "queue", "step", "steps", "outliers", "synthetic", "length",
           "stopped", "seed", "loading", "weights", "tokenizer", "ready", "components", "pipeline", "perplexity",
           "generate", "compiling", "settings", "greedy", "penalty", "repetition", "characters", "tokens/s",
           "agreement", "difference", "gaussian", "precision", "memory", "measured", "skipped", "failed", "the",
           "and", "with", "from", "of"},
    "fr": {"avertissement", "erreur", "traitement", "étape", "étapes", "graine", "aberrantes", "synthétique",
           "arrêt", "chargement", "poids", "mémoire", "mesurées", "gauche", "droite", "le", "les", "des", "une",
           "avec", "pour", "dans"},
}
# Words both languages legitimately show: technical terms, names, units.
ALLOW = {
    "ai", "api", "app", "base", "bf", "bits", "byte", "bytes", "cache", "chat", "clip", "cpu", "csv", "cuda", "dev",
    "emoji", "flux", "fp", "gguf", "gpu", "gradio", "hub", "hugging", "face", "id", "ids", "instruct", "json", "kv",
    "llm", "markdown", "mistral", "nf", "png", "prompt", "prompts", "qwen", "schnell", "sdxl", "snr", "token",
    "tokens", "top", "turbo", "vs", "zero", "shot", "few", "tiny", "template", "templates", "tekken", "tiktoken",
    "sentencepiece", "bpe", "int", "absmax", "blockwise", "batch", "mode", "benchmark", "pro", "instruction",
    "instructions", "tok", "db", "ms", "e", "x", "image", "images", "description", "guidance", "info", "ok", "total",
    "format", "formats", "minimum", "maximum", "max", "min", "test", "seconds", "sampling", "streaming", "contexte",
    "quanto", "hqq", "bitsandbytes", "safetensors", "transformers", "diffusers", "t", "o", "b", "k", "v", "p", "s",
}


def _words(lang: str) -> set[str]:
    out: set[str] = set()
    for value in tables()[lang].values():
        value = re.sub(r"`[^`]*`", " ", value)
        value = re.sub(r"\{[^}]*\}", " ", value)
        out |= {w.lower() for w in WORD.findall(value)}
    return out


def foreign_words(lang: str) -> set[str]:
    """Words that must not appear on a page in ``lang`` (the other language's own words)."""
    other = "en" if lang == "fr" else "fr"
    mine, theirs = _words(lang), _words(other)
    return ((theirs - mine) | EXTRA[other]) - ALLOW - EXTRA[lang] - {w for w in mine}


def _model_names() -> list[str]:
    from engine.images.imagegen import DEFAULTS

    return sorted({d.title for d in DEFAULTS.values()}, key=len, reverse=True)


MODEL_NAMES = _model_names()

# A number on its own, e.g. "0.28", "20,004", "2,22" (punctuation around it stripped)
NUMBER = re.compile(r"^[(\[«×~≈]*(\d[\d.,]*\d)[)\]»%:;,.]*$")
# 0.28, 20,004 (not 1,330 nor 0,011: French decimals with three digits)
ENGLISH_NUMBER = re.compile(r"^\d+\.\d+$|^[1-9]\d{1,2}(,\d{3})+(\.\d+)?$|^[1-9](,\d{3}){2,}(\.\d+)?$")
FRENCH_DECIMAL = re.compile(r"^\d+,(\d{1,2}|\d{4,})$")  # 2,22 (not 20,004: a thousands group)


def wrong_number(token: str, lang: str) -> bool:
    """True for a number written the other language's way ("0.28" or "20,004" in French)."""
    match = NUMBER.match(token)
    if not match:
        return False
    digits = match.group(1)
    return bool(ENGLISH_NUMBER.match(digits)) if lang == "fr" else bool(FRENCH_DECIMAL.match(digits))


def find_foreign(texts: list[tuple[str, str]] | str, lang: str) -> list[str]:
    """Each offending word (or number written the other language's way) with its surrounding text."""
    if isinstance(texts, str):
        texts = [(texts, "all")]
    banned = foreign_words(lang)
    hits = []
    for text, mode in texts:
        for name in MODEL_NAMES:
            text = text.replace(name, " ")
        hits += _check_line(text, lang, banned, numbers=mode != "words", words=mode != "numbers")
    return hits


def _check_line(text: str, lang: str, banned: set[str], numbers: bool, words: bool = True) -> list[str]:
    hits = []
    for line in text.splitlines():
        for token in SPACES.split(line):  # not at a narrow no-break space: "32 301,9" is one number
            if numbers and wrong_number(token, lang):
                hits.append(f"number {token!r} in {line.strip()[:160]!r}")
                continue
            if not words or CODEISH.search(token):
                continue  # code, ids, paths, numbers with units glued
            for word in WORD.findall(token):
                if len(word) > 1 and word.lower() in banned:
                    hits.append(f"{word!r} in {line.strip()[:160]!r}")
    return hits


# Parts of the page that hold content, not interface: model outputs, the user's or a preset's text,
# token pieces, code (Gradio's footer is checked too: its "Runs" link was English on French pages).
CONTENT = (".gen-out, pre, code, .tokpieces, .tkg, .tech-prompt, .tech-output, .quant-card-output, "
           ".cm-editor, [data-content], .tech-badge, .token-tip .tt-alt, #lang-switch")
# Tables whose cells hold content (model outputs) next to numbers: only their numbers are checked.
NUMBERS_ONLY = "#quant-l-table tbody, #quant-l-table .virtual-body"

PLOTS = ".vega-embed, .js-plotly-plot, canvas"

VISIBLE_TEXT_JS = """([content, plots, numbersOnly]) => {
  const out = [];
  const skip = (el) => !el || el.closest(content) ||
    (el.checkVisibility && !el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}));
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.nodeValue.trim();
    if (!text || skip(n.parentElement)) continue;
    const tag = n.parentElement.tagName;
    if (tag === 'SCRIPT' || tag === 'STYLE' || tag === 'TEXTAREA' || tag === 'OPTION') continue;
    const mode = n.parentElement.closest(plots) ? 'words' : n.parentElement.closest(numbersOnly) ? 'numbers' : 'all';
    out.push([text, mode]);
  }
  document.querySelectorAll('input[placeholder], textarea[placeholder]').forEach((el) => {
    if (skip(el)) return;
    const text = el.getAttribute('placeholder') || '';
    if (text) out.push([text, 'all']);
  });
  return out;
}"""


def visible_text(page) -> list[tuple[str, str]]:
    """Every visible text of the page outside content, each with what to check in it: "all", "words"
    (plots: their tick numbers are Vega's) or "numbers" (cells next to model outputs)."""
    return [tuple(x) for x in page.evaluate(VISIBLE_TEXT_JS, [CONTENT, PLOTS, NUMBERS_ONLY])]
